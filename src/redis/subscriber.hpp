// The pub/sub side of the Redis backend: one dedicated connection and the
// thread that owns it. Handlers run on that thread and must be quick (they
// decode and hand over to the Dispatcher). After a reconnect every channel
// is subscribed again; healthy() tells whether all are confirmed.
#ifndef FLEET_SRC_REDIS_SUBSCRIBER_HPP_
#define FLEET_SRC_REDIS_SUBSCRIBER_HPP_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "fleet/clock.hpp"
#include "internal/logger.hpp"
#include "internal/mutex.hpp"
#include "redis/connection.hpp"

namespace fleet::internal {

class Subscriber {
 public:
  using Handler = std::function<void(const std::string& payload)>;

  struct Options {
    RedisEndpoint endpoint;
    RedisConnection::Timeouts timeouts;
    std::chrono::milliseconds backoff_min;
    std::chrono::milliseconds backoff_max;
  };

  // `on_healthy` runs on the subscriber thread each time every channel is
  // confirmed again after a reconnect.
  Subscriber(Options options, Clock* clock, const Logger* logger,
             std::function<void()> on_healthy);
  ~Subscriber();  // stop()

  // Stops and joins the thread; idempotent. Handlers never run afterwards.
  void stop();

  // Connects and starts the thread. Unavailable if Redis cannot be reached.
  absl::Status start();

  // Registers `handler` for `channel` and returns once Redis confirmed the
  // subscription (so nothing published afterwards is missed). Unavailable
  // or DeadlineExceeded (and nothing registered) if it could not be.
  absl::StatusOr<std::uint64_t> add(const std::string& channel, Handler handler);
  void remove(std::uint64_t id);

  bool healthy() const;
  // How many times the connection was lost after being up (messages
  // published meanwhile were missed). on_healthy is also called at a loss.
  std::uint64_t drops() const;

  // Redis answered on another connection: reconnect now, not after the
  // rest of the backoff.
  void retry_now();

 private:
  void run();
  void wake();
  bool connect_and_resubscribe();
  void handle(const Reply& reply);
  bool all_confirmed_locked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  Clock* const clock_;
  const Logger* const logger_;
  const std::function<void()> on_healthy_;

  mutable Mutex mu_;
  std::condition_variable cv_;  // confirmations, backoff waits, stop
  std::map<std::string, std::map<std::uint64_t, Handler>> handlers_ ABSL_GUARDED_BY(mu_);
  std::map<std::uint64_t, std::string> channel_of_ ABSL_GUARDED_BY(mu_);
  // (subscribe?, channel)
  std::deque<std::pair<bool, std::string>> pending_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> confirmed_ ABSL_GUARDED_BY(mu_);
  std::uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool was_healthy_ ABSL_GUARDED_BY(mu_) = true;
  bool retry_now_ ABSL_GUARDED_BY(mu_) = false;
  // Wakes the thread when the master moves (set in start(), read in stop()).
  std::uint64_t directory_listener_ = 0;
  std::uint64_t drops_ ABSL_GUARDED_BY(mu_) = 0;

  std::unique_ptr<RedisConnection> conn_;  // only the thread touches it after start()
  int wake_fds_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_SUBSCRIBER_HPP_
