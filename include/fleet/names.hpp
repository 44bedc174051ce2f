// Validation rules and size limits for everything a caller names.
//
// Names — instance ids, node ids, metric names, counter, lock, election,
// map and channel names — are identifiers: 1 to kMaxNameBytes bytes with no
// control characters (bytes 0x00-0x1F and 0x7F). Spaces, braces and UTF-8
// are allowed. Map keys are data, not identifiers: any bytes, including
// newlines and NUL, 1 to kMaxKeyBytes long. Values and message payloads are
// any bytes up to kMaxValueBytes. Every Coordinator method checks its
// arguments with these functions and returns InvalidArgument naming the
// offending argument, before it touches the backend.
#ifndef FLEET_NAMES_HPP_
#define FLEET_NAMES_HPP_

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace fleet {

inline constexpr std::size_t kMaxNameBytes = 200;
inline constexpr std::size_t kMaxKeyBytes = 1024;
inline constexpr std::size_t kMaxValueBytes = 1024 * 1024;

// `what` names the argument in the error ("lock name", "node id").
absl::Status validate_name(std::string_view what, std::string_view name);
absl::Status validate_key(std::string_view what, std::string_view key);
absl::Status validate_value(std::string_view what, std::string_view value);

}  // namespace fleet

#endif  // FLEET_NAMES_HPP_
