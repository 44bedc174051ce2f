// Assertions on absl::Status / StatusOr that name the exact code.
#ifndef FLEET_TESTS_SUPPORT_STATUS_HPP_
#define FLEET_TESTS_SUPPORT_STATUS_HPP_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "catch.hpp"

namespace fleet::testing {

inline const absl::Status& status_of(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& status_of(const absl::StatusOr<T>& s) {
  return s.status();
}

// REQUIREs the call succeeded and returns its value.
template <typename T>
T unwrap(absl::StatusOr<T> s) {
  REQUIRE(s.status() == absl::OkStatus());
  return *std::move(s);
}

}  // namespace fleet::testing

#define FLEET_REQUIRE_OK(expr) \
  REQUIRE(::fleet::testing::status_of(expr) == ::absl::OkStatus())
#define FLEET_REQUIRE_CODE(expr, expected_code) \
  REQUIRE(::fleet::testing::status_of(expr).code() == ::absl::StatusCode::expected_code)

#endif  // FLEET_TESTS_SUPPORT_STATUS_HPP_
