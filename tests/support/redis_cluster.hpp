// A Redis Cluster for tests, all on loopback ports: masters sharing the
// 16384 slots evenly, optionally replicas of the first master, each a real
// redis-server (cluster-enabled) stopped by its PID.
#ifndef FLEET_TESTS_SUPPORT_REDIS_CLUSTER_HPP_
#define FLEET_TESTS_SUPPORT_REDIS_CLUSTER_HPP_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "redis_server.hpp"

namespace fleet::testing {

class RedisCluster {
 public:
  // Waits until every node sees the cluster as "ok" and knows every other.
  static absl::StatusOr<std::unique_ptr<RedisCluster>> start(int masters = 3,
                                                             int replicas_of_first = 0);

  // redis+cluster://127.0.0.1:p0,127.0.0.1:p1 (two seeds).
  std::string url() const;
  // Nodes: the masters first (in slot order), then the replicas.
  RedisServer& node(std::size_t i) { return *nodes_.at(i); }
  std::size_t size() const { return nodes_.size(); }
  const std::string& node_id(std::size_t i) const { return ids_.at(i); }
  // CLUSTER KEYSLOT, asked of a node.
  absl::StatusOr<int> key_slot(const std::string& key) const;
  // The index of the node serving `slot` now, as node 0 (or the first node
  // that answers) sees it.
  absl::StatusOr<std::size_t> owner_of(int slot) const;

  // Moves `slot` to node `to` the way redis-cli --cluster reshard does:
  // IMPORTING / MIGRATING, MIGRATE of `batch` keys at a time (calling
  // `between` after each batch), then SETSLOT NODE on every master.
  absl::Status migrate_slot(int slot, std::size_t to, int batch = 10,
                            const std::function<void()>& between = {});
  // CLUSTER FAILOVER on replica `i`; waits until it is a master and every
  // node agrees.
  absl::Status failover(std::size_t replica,
                        std::chrono::milliseconds timeout = std::chrono::seconds(20));

 private:
  RedisCluster() = default;
  absl::Status await_consistent(std::chrono::milliseconds timeout) const;
  std::vector<std::unique_ptr<RedisServer>> nodes_;
  std::vector<std::string> ids_;
  std::size_t masters_ = 0;
};

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_REDIS_CLUSTER_HPP_
