// Where the Redis server that holds a namespace is now, when that can
// change: Redis Sentinel (the master of a monitored group) or Redis Cluster
// (the master that serves the namespace's hash slot).
//
// A redis+sentinel:// or redis+cluster:// endpoint carries a directory.
// Every connection to "Redis" asks it for the address (RedisConnection::
// open), then checks with ROLE that the server it reached is a master. The
// directory answers from what it knows, or asks (ask(): the sentinels, or
// the cluster's nodes). Its watcher thread follows changes (sentinel.hpp,
// cluster.hpp say how).
//
// The epoch grows each time the address changes. A connection remembers
// the epoch it was opened in and counts as broken once it is stale, so
// every connection (pool, pub/sub, slot lane, agent) moves to the new
// server on its next use; listeners (the pub/sub thread) are woken.
#ifndef FLEET_SRC_REDIS_DIRECTORY_HPP_
#define FLEET_SRC_REDIS_DIRECTORY_HPP_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/statusor.h"
#include "fleet/clock.hpp"
#include "internal/logger.hpp"
#include "internal/mutex.hpp"

namespace fleet::internal {

struct HostPort {
  std::string host;
  int port = 0;
  std::string str() const;
  bool operator==(const HostPort& o) const { return host == o.host && port == o.port; }
  bool operator!=(const HostPort& o) const { return !(*this == o); }
  bool operator<(const HostPort& o) const {
    return host != o.host ? host < o.host : port < o.port;
  }
};

// "host:port" (port 1..65535): false when malformed.
bool parse_host_port_text(std::string_view text, HostPort* out);

class MasterDirectory {
 public:
  virtual ~MasterDirectory();  // derived classes call stop_watch() first
  MasterDirectory(const MasterDirectory&) = delete;
  MasterDirectory& operator=(const MasterDirectory&) = delete;

  // The address to use. Unavailable when nobody answers; NotFound when
  // the sentinels do not monitor the master named; InvalidArgument when a
  // "cluster" node is not one.
  absl::StatusOr<HostPort> master();
  // A connection failed, or reached a replica: the next master() asks.
  void suspect();
  // Redis Cluster said MOVED: the slot is served at `to` now.
  void redirected(const HostPort& to);
  // Grows whenever the address changes.
  std::uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }
  // How many replicas of the master were seen healthy when last asked; -1
  // before the first answer.
  int healthy_replicas() const { return replicas_.load(std::memory_order_acquire); }

  // Follows changes from then on, on a thread of its own, logging to
  // `logger` (copied; its sink must outlive the directory or stop_watch()).
  // Idempotent.
  void start_watch(Clock* clock, const Logger& logger);
  void stop_watch();

  // Runs `fn` (on the thread that saw the change) each time the epoch grows.
  std::uint64_t add_listener(std::function<void()> fn);
  void remove_listener(std::uint64_t id);

  // "master 'name' at h:p", "slot 1234 at h:p" (or "... (not located yet)").
  std::string describe() const;
  // Whether this is a cluster (sharded pub/sub, MOVED).
  virtual bool cluster() const = 0;

 protected:
  MasterDirectory() = default;

  // Where the master is now, and how many healthy replicas it has (-1:
  // not known).
  struct Answer {
    HostPort master;
    int replicas = -1;
  };
  virtual absl::StatusOr<Answer> ask() = 0;
  // The watcher thread's body; returns when stopping() is true.
  virtual void watch_loop() = 0;
  // What the address is of: "master 'fleet'", "slot 1234".
  virtual std::string subject() const = 0;

  void set_replicas(int n);
  // Records `addr`; bumps the epoch (and tells the listeners) when it
  // differs from the one known.
  void learn(const HostPort& addr, std::string_view how);
  // ask() and learn() under the one-question-at-a-time lock.
  void ask_and_learn(std::string_view how);
  // learn() the address, then the replica count: a call that reads the
  // new count already finds its old connections stale (the epoch grew
  // first), so it never asks the old master for the new master's count.
  void learn_answer(const Answer& a, std::string_view how);
  bool stopping() const;
  // Sleeps up to `d` (on the watch clock), or until stop_watch().
  void pause(std::chrono::milliseconds d);
  Clock* clock() const { return clock_; }
  int wake_fd() const { return wake_fds_[0]; }
  template <typename... Args>
  void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) const {
    std::optional<Logger> logger;
    {
      MutexLock lock(mu_);
      logger = logger_;
    }
    if (logger) logger->log(level, format, std::forward<Args>(args)...);
  }

 private:
  std::atomic<std::uint64_t> epoch_{0};
  std::atomic<int> replicas_{-1};

  mutable Mutex mu_;
  std::optional<HostPort> master_ ABSL_GUARDED_BY(mu_);  // known address
  bool stale_ ABSL_GUARDED_BY(mu_) = true;               // ask before trusting master_
  std::optional<Logger> logger_ ABSL_GUARDED_BY(mu_);
  std::map<std::uint64_t, std::function<void()>> listeners_ ABSL_GUARDED_BY(mu_);
  std::uint64_t next_listener_ ABSL_GUARDED_BY(mu_) = 1;

  Mutex ask_mu_;  // one round of questions at a time

  // The watcher.
  Clock* clock_ = nullptr;
  std::condition_variable cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watcher_;
  int wake_fds_[2] = {-1, -1};  // stop_watch() interrupts the watcher's poll
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_DIRECTORY_HPP_
