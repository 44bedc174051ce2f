// Argument checks shared by every backend, so that both return the same
// InvalidArgument for the same bad call (the conformance suite checks it).
#ifndef FLEET_SRC_INTERNAL_VALIDATE_HPP_
#define FLEET_SRC_INTERNAL_VALIDATE_HPP_

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "fleet/types.hpp"
#include "internal/status.hpp"

namespace fleet::internal {

absl::Status validate_instance_info(const InstanceInfo& info);
absl::Status validate_metrics(const std::map<std::string, double>& metrics);
absl::Status validate_spec(const AggregationSpec& spec);
absl::Status validate_lease_ttl(std::chrono::milliseconds ttl);
absl::Status validate_timeout(std::chrono::milliseconds timeout);
absl::Status validate_lease(const Lease& lease);
// validate_lease, then FailedPrecondition unless `session_id` owns it.
absl::Status check_lease(const Lease& lease, std::string_view session_id);
// Aborted: the grant expired or was released (what release/renew return).
absl::Status lease_no_longer_held(const Lease& lease);
// InvalidArgument: no grant of the name ever had this fence (`last`: the
// highest fence granted for it, 0 if none).
absl::Status lease_never_granted(const Lease& lease, std::uint64_t last);
absl::Status validate_map_key(std::string_view map, std::string_view key);
absl::Status validate_entry(std::string_view map, std::string_view key,
                            std::string_view value, std::chrono::milliseconds ttl);
absl::Status validate_prefix(std::string_view prefix);
// Map name, count and size limits, and every operation's key/value/ttl.
absl::Status validate_map_ops(std::string_view map, const std::vector<MapOp>& ops);

template <typename F>
absl::Status validate_callback(const std::function<F>& callback) {
  if (!callback) return absl::InvalidArgumentError("callback must not be empty");
  return absl::OkStatus();
}

}  // namespace fleet::internal

#endif  // FLEET_SRC_INTERNAL_VALIDATE_HPP_
