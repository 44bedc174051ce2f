// Redis Cluster: which master serves a namespace's hash slot now.
//
// Every key and channel of a namespace carries the hash tag {namespace},
// so a namespace lives in one slot, on one shard; many namespaces spread
// over the cluster. The directory (directory.hpp) asks the cluster's nodes
// (CLUSTER SLOTS, on a connection it keeps), first the seeds of the URL,
// then every node they named. A MOVED reply tells it at once
// (MasterDirectory::redirected); its watcher thread asks again every
// second, so a failover or a finished slot migration is noticed even
// without traffic.
#ifndef FLEET_SRC_REDIS_CLUSTER_HPP_
#define FLEET_SRC_REDIS_CLUSTER_HPP_

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "redis/directory.hpp"

namespace fleet::internal {

class RedisConnection;

inline constexpr int kClusterSlots = 16384;

// The hash slot of a key (CRC16/XMODEM of its hash tag, or of the whole
// key when it has none, mod 16384), as Redis Cluster computes it.
int key_slot(std::string_view key);

class ClusterDirectory final : public MasterDirectory {
 public:
  struct Options {
    std::vector<HostPort> seeds;
    int slot = 0;
    // The nodes' credentials (the data's: a cluster's nodes are its servers).
    std::string user;
    std::optional<std::string> password;
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds command_timeout{1000};
  };

  explicit ClusterDirectory(Options options);
  ~ClusterDirectory() override;  // stop_watch()

  bool cluster() const override { return true; }

 private:
  absl::StatusOr<Answer> ask() override;
  void watch_loop() override;
  std::string subject() const override;

  // One node's answer: the slot's master (and its replicas counted), or
  // an error. Adds every node it names to nodes_.
  absl::StatusOr<Answer> ask_node(RedisConnection& conn, const HostPort& node);

  const Options options_;
  // Guarded by the base's one-question-at-a-time lock (ask() only).
  std::vector<HostPort> nodes_;  // the seeds, then nodes they named
  std::unique_ptr<RedisConnection> probe_;
  HostPort probe_addr_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_CLUSTER_HPP_
