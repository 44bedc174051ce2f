// A Redis Sentinel deployment for tests, all on loopback ports: a master,
// replicas (redis-server --replicaof) and sentinels (redis-server
// --sentinel), each a real process stopped by its PID.
#ifndef FLEET_TESTS_SUPPORT_SENTINEL_GROUP_HPP_
#define FLEET_TESTS_SUPPORT_SENTINEL_GROUP_HPP_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "redis_server.hpp"

namespace fleet::testing {

class SentinelGroup {
 public:
  static constexpr const char* kMasterName = "fleet";

  // Waits until every replica is in sync and every sentinel knows the
  // replicas and (with `await_peers`) the other sentinels, so that a
  // failover can be agreed: that takes a few seconds of hello messages,
  // which a group that never fails over (the conformance suite) skips.
  static absl::StatusOr<std::unique_ptr<SentinelGroup>> start(
      int replicas = 2, int sentinels = 3,
      std::chrono::milliseconds down_after = std::chrono::milliseconds(1000),
      bool await_peers = true);

  // redis+sentinel://127.0.0.1:p1,.../fleet/0
  std::string url() const;
  // Servers: index 0 started as the master, then the replicas.
  RedisServer& server(std::size_t i) { return *servers_.at(i); }
  std::size_t server_count() const { return servers_.size(); }
  RedisServer& sentinel(std::size_t i) { return *sentinels_.at(i); }
  // The server the sentinels name as master now.
  absl::StatusOr<std::size_t> master_index() const;

  // SENTINEL FAILOVER (no agreement needed), then waits until the sentinels
  // name another master and it answers ROLE as one. Returns its index.
  absl::StatusOr<std::size_t> failover(
      std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Waits until the sentinels name a master other than `old_index`.
  absl::StatusOr<std::size_t> await_new_master(std::size_t old_index,
                                               std::chrono::milliseconds timeout);
  // Waits until the master has a replica online (grants are confirmed again).
  absl::Status await_a_replica(std::chrono::milliseconds timeout);
  // Waits until every other server replicates the master and is in sync.
  absl::Status await_replicas(std::chrono::milliseconds timeout);

 private:
  SentinelGroup() = default;
  std::vector<std::unique_ptr<RedisServer>> servers_;
  std::vector<std::unique_ptr<RedisServer>> sentinels_;
};

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_SENTINEL_GROUP_HPP_
