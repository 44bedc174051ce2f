// Redis Sentinel: where the master of a monitored group is now.
//
// The directory (directory.hpp) asks the sentinels (SENTINEL
// get-master-addr-by-name), first the one that answered last, as the
// Sentinel client guidelines say, and counts the master's healthy replicas
// (SENTINEL REPLICAS) on the same connection. Its watcher thread follows
// +switch-master on a sentinel's pub/sub, and asks again whenever it
// (re)subscribes and every 5 s.
#ifndef FLEET_SRC_REDIS_SENTINEL_HPP_
#define FLEET_SRC_REDIS_SENTINEL_HPP_

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "internal/mutex.hpp"
#include "redis/directory.hpp"

namespace fleet::internal {

class RedisConnection;

class SentinelDirectory final : public MasterDirectory {
 public:
  struct Options {
    std::vector<HostPort> sentinels;
    std::string master_name;
    // The sentinels' own credentials (not the master's).
    std::string user;
    std::optional<std::string> password;
    std::chrono::milliseconds connect_timeout{1000};
    std::chrono::milliseconds command_timeout{1000};
  };

  explicit SentinelDirectory(Options options);
  ~SentinelDirectory() override;  // stop_watch()

  bool cluster() const override { return false; }

 private:
  absl::StatusOr<Answer> ask() override;
  void watch_loop() override;
  std::string subject() const override;

  absl::StatusOr<std::unique_ptr<RedisConnection>> open_sentinel(const HostPort& s) const;
  // The healthy replicas of `master` (-1 when the sentinel does not say).
  int count_replicas(RedisConnection& conn, const HostPort& master);

  const Options options_;
  mutable Mutex order_mu_;
  std::vector<HostPort> order_ ABSL_GUARDED_BY(order_mu_);  // the last to answer first
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_SENTINEL_HPP_
