// Redis Sentinel: where the master of a monitored group is now.
//
// A redis+sentinel:// endpoint carries a SentinelDirectory. Every connection
// to "Redis" asks it for the master's address (RedisConnection::open), then
// checks with ROLE that the server it reached is a master. The directory
// answers from what it knows, or asks the sentinels (SENTINEL
// get-master-addr-by-name), first the one that answered last, as the
// Sentinel client guidelines say. Its watcher thread follows +switch-master
// on a sentinel's pub/sub, and asks again whenever it (re)subscribes.
//
// The epoch grows each time the master's address changes. A connection
// remembers the epoch it was opened in and counts as broken once it is
// stale, so every connection (pool, pub/sub, slot lane, agent) moves to the
// new master on its next use; listeners (the pub/sub thread) are woken.
#ifndef FLEET_SRC_REDIS_SENTINEL_HPP_
#define FLEET_SRC_REDIS_SENTINEL_HPP_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "fleet/clock.hpp"
#include "internal/logger.hpp"

namespace fleet::internal {

class RedisConnection;

struct HostPort {
  std::string host;
  int port = 0;
  std::string str() const;
  bool operator==(const HostPort& o) const { return host == o.host && port == o.port; }
  bool operator!=(const HostPort& o) const { return !(*this == o); }
};

class SentinelDirectory {
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
  ~SentinelDirectory();  // stop_watch()
  SentinelDirectory(const SentinelDirectory&) = delete;
  SentinelDirectory& operator=(const SentinelDirectory&) = delete;

  // The master's address. Unavailable when no sentinel answers; NotFound
  // when the sentinels that answer do not monitor `master_name`.
  absl::StatusOr<HostPort> master();
  // A connection to the master failed, or reached a replica: the next
  // master() asks the sentinels again.
  void suspect();
  // Grows whenever the master's address changes.
  std::uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }
  // How many replicas of the master the sentinels saw healthy when last
  // asked (up, linked to the master; SENTINEL REPLICAS); -1 before the first
  // answer. Asked with the master's address, so at least every 5 s while
  // watching and after each +switch-master.
  int healthy_replicas() const { return replicas_.load(std::memory_order_acquire); }

  // Follows +switch-master from then on, on a thread of its own, logging to
  // `logger` (copied; its sink must outlive the directory or stop_watch()).
  // Idempotent.
  void start_watch(Clock* clock, const Logger& logger);
  void stop_watch();

  // Runs `fn` (on the thread that saw the change) each time the epoch grows.
  std::uint64_t add_listener(std::function<void()> fn);
  void remove_listener(std::uint64_t id);

  const std::string& master_name() const { return options_.master_name; }
  // "h1:p1,h2:p2" (no credentials).
  std::string sentinel_list() const;
  // What the sentinels said last: "master 'name' at h:p" (or "not known yet").
  std::string describe() const;

 private:
  absl::StatusOr<std::unique_ptr<RedisConnection>> open_sentinel(const HostPort& s) const;
  // Asks the sentinels, in order; on an answer moves that sentinel first
  // and, on the same connection, counts the healthy replicas.
  absl::StatusOr<HostPort> ask();
  void count_replicas(RedisConnection& conn);
  // Records `addr` as the master; bumps the epoch (and tells the
  // listeners) when it differs from the one known.
  void learn(const HostPort& addr, std::string_view how);
  void watch_loop();
  template <typename... Args>
  void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) const;

  const Options options_;
  std::atomic<std::uint64_t> epoch_{0};
  std::atomic<int> replicas_{-1};

  mutable std::mutex mu_;
  std::vector<HostPort> order_;     // sentinels, the last to answer first
  std::optional<HostPort> master_;  // known address
  bool stale_ = true;               // ask before trusting master_
  std::optional<Logger> logger_;
  std::map<std::uint64_t, std::function<void()>> listeners_;
  std::uint64_t next_listener_ = 1;

  std::mutex ask_mu_;  // one round of questions at a time

  // The watcher.
  Clock* clock_ = nullptr;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread watcher_;
  int wake_fds_[2] = {-1, -1};  // stop_watch() interrupts the watcher's poll
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_SENTINEL_HPP_
