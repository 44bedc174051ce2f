#include "fleet/names.hpp"

#include <string>

#include "fmt/format.h"
#include "internal/status.hpp"

namespace fleet {
namespace {

absl::Status check_size(std::string_view what, std::string_view s, std::size_t max,
                        bool allow_empty) {
  if (s.empty() && !allow_empty) {
    return absl::InvalidArgumentError(fmt::format("{} must not be empty", what));
  }
  if (s.size() > max) {
    return absl::InvalidArgumentError(
        fmt::format("{} is {} bytes long; the limit is {}", what, s.size(), max));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status validate_name(std::string_view what, std::string_view name) {
  FLEET_RETURN_IF_ERROR(check_size(what, name, kMaxNameBytes, false));
  for (std::size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          fmt::format("{} has a control character (0x{:02x}) at byte {}", what, c, i));
    }
  }
  return absl::OkStatus();
}

absl::Status validate_key(std::string_view what, std::string_view key) {
  return check_size(what, key, kMaxKeyBytes, false);
}

absl::Status validate_value(std::string_view what, std::string_view value) {
  return check_size(what, value, kMaxValueBytes, true);
}

}  // namespace fleet
