// Read-only inspection of a fleet namespace in Redis, for fleetctl. Uses
// the index structures and SCAN (never KEYS); liveness by Redis TIME.
#ifndef FLEET_SRC_REDIS_INSPECT_HPP_
#define FLEET_SRC_REDIS_INSPECT_HPP_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fleet/types.hpp"
#include "redis/connection.hpp"
#include "redis/keys.hpp"

namespace fleet::internal {

struct InstanceRow {
  Member member;
  std::int64_t heartbeat_age_ms = 0;
};

struct NodeRow {
  std::string node;
  int reporters = 0;
  // metric -> {sum, min, max}; avg = sum / count
  struct Stat {
    double sum = 0, min = 0, max = 0;
    int count = 0;
  };
  std::map<std::string, Stat> metrics;
};

struct CounterRow {
  std::string name;
  bool owned = false;
  std::int64_t value = 0;
  int contributors = 0;  // owned: live sessions with a contribution
};

struct LeaseRow {
  std::string name;
  std::string owner;
  std::string value;  // leaders only
  std::uint64_t fence = 0;
  std::int64_t ttl_ms = 0;
};

struct MapRow {
  std::string name;
  std::int64_t entries = 0;
  std::uint64_t revision = 0;
};

class Inspector {
 public:
  Inspector(RedisConnection& conn, std::string_view ns) : conn_(conn), keys_(ns) {}

  absl::StatusOr<std::vector<InstanceRow>> instances();
  absl::StatusOr<std::vector<NodeRow>> nodes();
  absl::StatusOr<std::vector<CounterRow>> counters();
  absl::StatusOr<std::vector<LeaseRow>> leases(LeaseKind kind);
  absl::StatusOr<std::vector<MapRow>> maps();
  // A map's live entries (HSCAN, paged; entries whose TTL passed and
  // malformed ones are left out), in no particular order.
  absl::StatusOr<std::vector<MapEntry>> map_entries(std::string_view map);

 private:
  absl::StatusOr<Reply> call(const Argv& argv);
  absl::StatusOr<std::int64_t> now_ms();
  absl::StatusOr<bool> alive(const std::string& sid, std::int64_t now);

  RedisConnection& conn_;
  const Keys keys_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_INSPECT_HPP_
