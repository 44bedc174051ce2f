#include "internal/validate.hpp"

#include <cmath>

#include "fleet/names.hpp"
#include "fmt/format.h"

namespace fleet::internal {

absl::Status validate_instance_info(const InstanceInfo& info) {
  FLEET_RETURN_IF_ERROR(validate_name("instance id", info.id));
  FLEET_RETURN_IF_ERROR(validate_value("hostname", info.hostname));
  FLEET_RETURN_IF_ERROR(validate_value("version", info.version));
  std::size_t total = 0;
  for (const auto& [k, v] : info.metadata) {
    FLEET_RETURN_IF_ERROR(validate_key("metadata key", k));
    total += k.size() + v.size();
  }
  if (total > kMaxValueBytes) {
    return absl::InvalidArgumentError(fmt::format(
        "instance metadata is {} bytes; the limit is {}", total, kMaxValueBytes));
  }
  return absl::OkStatus();
}

absl::Status validate_metrics(const std::map<std::string, double>& metrics) {
  for (const auto& [name, value] : metrics) {
    FLEET_RETURN_IF_ERROR(validate_name("metric name", name));
    if (!std::isfinite(value)) {
      return absl::InvalidArgumentError(
          fmt::format("metric '{}' is not a finite number", name));
    }
  }
  return absl::OkStatus();
}

absl::Status validate_spec(const AggregationSpec& spec) {
  for (const auto& [name, op] : spec.metrics) {
    FLEET_RETURN_IF_ERROR(validate_name("metric name", name));
  }
  return absl::OkStatus();
}

absl::Status validate_lease_ttl(std::chrono::milliseconds ttl) {
  if (ttl.count() <= 0) {
    return absl::InvalidArgumentError(
        fmt::format("lease ttl must be positive (got {} ms)", ttl.count()));
  }
  return absl::OkStatus();
}

absl::Status validate_timeout(std::chrono::milliseconds timeout) {
  if (timeout.count() < 0) {
    return absl::InvalidArgumentError(
        fmt::format("timeout must not be negative (got {} ms)", timeout.count()));
  }
  return absl::OkStatus();
}

absl::Status validate_lease(const Lease& lease) {
  FLEET_RETURN_IF_ERROR(validate_name(
      lease.kind == LeaseKind::kLock ? "lock name" : "election name", lease.name));
  FLEET_RETURN_IF_ERROR(validate_lease_ttl(lease.ttl));
  if (lease.owner.empty() || lease.fence == 0) {
    return absl::InvalidArgumentError("lease was not granted by a Coordinator");
  }
  return absl::OkStatus();
}

absl::Status check_lease(const Lease& lease, std::string_view session_id) {
  FLEET_RETURN_IF_ERROR(validate_lease(lease));
  if (lease.owner != session_id) {
    return absl::FailedPreconditionError(
        fmt::format("{} '{}' (fence {}) belongs to another session",
                    to_string(lease.kind), lease.name, lease.fence));
  }
  return absl::OkStatus();
}

absl::Status lease_no_longer_held(const Lease& lease) {
  return absl::AbortedError(
      fmt::format("{} '{}' (fence {}) is no longer held: it expired or was released",
                  to_string(lease.kind), lease.name, lease.fence));
}

absl::Status lease_never_granted(const Lease& lease, std::uint64_t last) {
  return absl::InvalidArgumentError(fmt::format(
      "{} '{}' (fence {}) was never granted: {}", to_string(lease.kind), lease.name,
      lease.fence,
      last == 0 ? std::string("nothing was ever granted under that name")
                : fmt::format("the highest fence granted under that name is {}", last)));
}

absl::Status validate_map_key(std::string_view map, std::string_view key) {
  FLEET_RETURN_IF_ERROR(validate_name("map name", map));
  return validate_key("map key", key);
}

absl::Status validate_entry(std::string_view map, std::string_view key,
                            std::string_view value, std::chrono::milliseconds ttl) {
  FLEET_RETURN_IF_ERROR(validate_map_key(map, key));
  FLEET_RETURN_IF_ERROR(validate_value("map value", value));
  if (ttl.count() < 0) {
    return absl::InvalidArgumentError(
        fmt::format("entry ttl must not be negative (got {} ms)", ttl.count()));
  }
  return absl::OkStatus();
}

absl::Status validate_map_ops(std::string_view map, const std::vector<MapOp>& ops) {
  FLEET_RETURN_IF_ERROR(validate_name("map name", map));
  if (ops.size() > kMaxMapBatchOps) {
    return absl::InvalidArgumentError(fmt::format(
        "a map batch holds {} operations; the limit is {}", ops.size(), kMaxMapBatchOps));
  }
  std::size_t total = 0;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const MapOp& op = ops[i];
    absl::Status s = validate_entry(map, op.key, op.value, op.ttl);
    if (s.ok() && (op.type == MapOpType::kCompareAndSet ||
                   op.type == MapOpType::kCompareAndDelete)) {
      s = validate_value("expected value", op.expected);
    }
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          fmt::format("map batch operation {}: {}", i, std::string(s.message())));
    }
    total += op.key.size() + op.value.size() + op.expected.size();
  }
  if (total > kMaxMapBatchBytes) {
    return absl::InvalidArgumentError(fmt::format(
        "a map batch holds {} bytes; the limit is {}", total, kMaxMapBatchBytes));
  }
  return absl::OkStatus();
}

absl::Status validate_prefix(std::string_view prefix) {
  if (prefix.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(fmt::format(
        "key prefix is {} bytes long; the limit is {}", prefix.size(), kMaxKeyBytes));
  }
  return absl::OkStatus();
}

}  // namespace fleet::internal
