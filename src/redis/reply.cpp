#include "redis/reply.hpp"

#include "fmt/format.h"

namespace fleet::internal {
namespace {

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

}  // namespace

bool redirect_target(std::string_view error, HostPort* to) {
  if (!starts_with(error, "MOVED ") && !starts_with(error, "ASK ")) return false;
  const auto slot = error.find(' ');
  const auto sp = slot == std::string_view::npos ? slot : error.find(' ', slot + 1);
  return sp != std::string_view::npos && parse_host_port_text(error.substr(sp + 1), to);
}

absl::Status status_from_error(std::string_view e) {
  if (starts_with(e, "WRONGPASS") || starts_with(e, "NOAUTH") ||
      e.find("invalid password") != std::string_view::npos ||
      e.find("invalid username-password") != std::string_view::npos ||
      e.find("without any password configured") != std::string_view::npos) {
    return absl::UnauthenticatedError(
        fmt::format("Redis rejected the credentials: {}", e));
  }
  if (starts_with(e, "NOPERM")) {
    return absl::PermissionDeniedError(fmt::format("Redis ACL denied fleet: {}", e));
  }
  if (starts_with(e, "WRONGTYPE") || e.find("WRONGTYPE") != std::string_view::npos) {
    return absl::DataLossError(
        fmt::format("malformed data in Redis (a fleet key holds the wrong type): {}", e));
  }
  if (e.find("is not an integer") != std::string_view::npos ||
      e.find("not a valid float") != std::string_view::npos) {
    return absl::DataLossError(fmt::format("malformed number in a fleet key: {}", e));
  }
  if (e.find("would overflow") != std::string_view::npos) {
    return absl::OutOfRangeError(fmt::format("counter overflow: {}", e));
  }
  if (starts_with(e, "LOADING") || starts_with(e, "BUSY") || starts_with(e, "READONLY") ||
      starts_with(e, "MASTERDOWN") || starts_with(e, "TRYAGAIN") ||
      starts_with(e, "CLUSTERDOWN")) {
    return absl::UnavailableError(fmt::format("Redis is not ready: {}", e));
  }
  if (starts_with(e, "MOVED") || starts_with(e, "ASK ")) {
    return absl::UnavailableError(
        fmt::format("the namespace's Redis Cluster slot is moving: {}", e));
  }
  if (starts_with(e, "OOM")) {
    return absl::ResourceExhaustedError(fmt::format("Redis is out of memory: {}", e));
  }
  return absl::InternalError(fmt::format("Redis error: {}", e));
}

}  // namespace fleet::internal
