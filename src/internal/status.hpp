// fleet's one error-propagation style inside the library: a call that
// returns absl::Status or absl::StatusOr hands a failure straight up.
//
//   FLEET_RETURN_IF_ERROR(c.put(map, key, value).status());
//   FLEET_ASSIGN_OR_RETURN(auto entries, c.scan(map));
//
// Public code tells an error whose outcome is unknown with
// fleet::outcome_unknown (include/fleet/status.hpp).
#ifndef FLEET_SRC_INTERNAL_STATUS_HPP_
#define FLEET_SRC_INTERNAL_STATUS_HPP_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fleet/status.hpp"

#define FLEET_RETURN_IF_ERROR(expr)                                           \
  do {                                                                        \
    if (::absl::Status fleet_st_ = (expr); !fleet_st_.ok()) return fleet_st_; \
  } while (0)

#define FLEET_STATUS_CONCAT_INNER_(a, b) a##b
#define FLEET_STATUS_CONCAT_(a, b) FLEET_STATUS_CONCAT_INNER_(a, b)

// `lhs` is a declaration (auto x) or an lvalue; `expr` an absl::StatusOr.
#define FLEET_ASSIGN_OR_RETURN(lhs, expr) \
  FLEET_ASSIGN_OR_RETURN_IMPL_(FLEET_STATUS_CONCAT_(fleet_or_, __LINE__), lhs, expr)
#define FLEET_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(*tmp)

#endif  // FLEET_SRC_INTERNAL_STATUS_HPP_
