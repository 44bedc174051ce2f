// One hiredis connection (synchronous API, identical in hiredis 0.14 and
// 1.x), and when a broken one may be opened again. hiredis types do not
// leave this file pair: replies are copied into Reply (reply.hpp).
#ifndef FLEET_SRC_REDIS_CONNECTION_HPP_
#define FLEET_SRC_REDIS_CONNECTION_HPP_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "fleet/clock.hpp"
#include "internal/logger.hpp"
#include "redis/directory.hpp"
#include "redis/reply.hpp"
#include "redis/url.hpp"

struct redisContext;

namespace fleet::internal {

class RedisConnection;
// Runs on every new connection before it is used (RedisSession checks that
// Redis still holds the data it knew). An error discards the connection.
using ConnectHook = std::function<absl::Status(RedisConnection&)>;

class RedisConnection {
 public:
  struct Timeouts {
    std::chrono::milliseconds connect;
    std::chrono::milliseconds command;
  };

  // Connects, authenticates, selects the database, then runs `hook` (if any).
  static absl::StatusOr<std::unique_ptr<RedisConnection>> open(
      const RedisEndpoint& ep, Timeouts timeouts, const ConnectHook& hook = {});
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // One round trip. A Redis error reply is a Reply of type kError, not an
  // error status; a status means the connection failed (and is now broken).
  absl::StatusOr<Reply> command(const Argv& argv);

  // Pipelining and pub/sub: queue, flush, read.
  absl::Status append(const Argv& argv);
  absl::Status flush();
  absl::StatusOr<Reply> read();  // blocks up to the command timeout
  // A reply already in the input buffer, if any; never blocks.
  absl::StatusOr<std::optional<Reply>> buffered();
  // Reads what the socket has into the input buffer (after poll() said so).
  absl::Status fill();

  int fd() const;
  // Failed, or (Sentinel, Cluster) opened before the master last moved.
  bool broken() const {
    return broken_ || (directory_ != nullptr && directory_->epoch() != epoch_);
  }

 private:
  RedisConnection(redisContext* ctx, bool tls) : ctx_(ctx), tls_(tls) {}
  absl::Status io_error(std::string_view during);
  // After the connect (and TLS handshake): timeouts, AUTH, SELECT, PING,
  // then the hook.
  absl::Status prepare(const RedisEndpoint& ep, Timeouts timeouts,
                       const ConnectHook& hook);
  // A reply came: a READONLY error means this server is no longer the
  // master (ask again where it is); MOVED says where the slot is now.
  void note(const Reply& reply);

  redisContext* ctx_;
  const bool tls_;  // errors may carry a reason in OpenSSL's queue
  bool broken_ = false;
  bool unflushed_ = false;  // append()ed, not written yet
  // Sentinel, Cluster: where the master is, and its epoch when this one
  // was opened.
  std::shared_ptr<MasterDirectory> directory_;
  std::uint64_t epoch_ = 0;
};

// When a broken connection may be opened again: not before the backoff
// (doubling from min to max, with jitter) since the last failed attempt, so
// that while Redis is down callers get Unavailable at once. Logs the first
// failure and the recovery. Not thread-safe: its owner locks.
class Reconnect {
 public:
  Reconnect(std::chrono::milliseconds min, std::chrono::milliseconds max)
      : min_(min), max_(max) {}
  // Whether an attempt is allowed now; Unavailable with the wait if not.
  absl::Status ready(const RedisEndpoint& ep, Clock::TimePoint now) const;
  // Records an attempt's outcome.
  void record(const absl::Status& outcome, const RedisEndpoint& ep, Clock* clock,
              const Logger* logger);
  // Redis answered on another connection: the next attempt may go at once.
  void reset() {
    next_attempt_ = Clock::TimePoint{};
    backoff_ = std::chrono::milliseconds(0);
  }

 private:
  const std::chrono::milliseconds min_, max_;
  Clock::TimePoint next_attempt_{};
  std::chrono::milliseconds backoff_{0};
  bool down_logged_ = false;
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_CONNECTION_HPP_
