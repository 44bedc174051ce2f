// One hiredis connection (synchronous API, identical in hiredis 0.14 and
// 1.x), and the pool of them that commands and scripts run on. hiredis
// types do not leave this file pair: replies are copied into Reply.
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
#include "redis/url.hpp"

struct redisContext;

namespace fleet::internal {

struct Reply {
  enum class Type { kString, kArray, kInteger, kNil, kStatus, kError };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus, kError
  long long integer = 0;
  std::vector<Reply> elements;

  bool is_error() const { return type == Type::kError; }
  bool is_nil() const { return type == Type::kNil; }
};

// Maps a Redis error reply to the status a fleet caller should see.
absl::Status status_from_error(std::string_view error);

using Argv = std::vector<std::string_view>;

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

// A fixed number of connections. command() pipelines: callers queue their
// commands, and a caller that finds a connection free becomes its driver,
// sending everything queued (up to kMaxBatch) in one write and handing each
// reply to its caller; the others sleep until their reply is in. When every
// connection is busy, the commands that arrive meanwhile share the next
// round trip instead of waiting for a connection apiece. with_connection() takes a
// connection for one caller alone (script loading, sequences that must not interleave).
// A broken connection is reopened on its next use (see Reconnect).
class ConnectionPool {
 public:
  struct Options {
    RedisEndpoint endpoint;
    RedisConnection::Timeouts timeouts;
    int size = 4;
    std::chrono::milliseconds backoff_min{50};
    std::chrono::milliseconds backoff_max{2000};
    ConnectHook on_connect;
    // Redis Cluster: runs on a connection opened to follow an ASK
    // redirection (the session loads its scripts there).
    ConnectHook on_ask_connect;
  };

  ConnectionPool(Options options, Clock* clock, const Logger* logger);

  // Redis is reachable again after an outage (another connection got
  // through): idle connections are reopened on their next use, without
  // waiting out the backoff.
  void retry_now();

  // Runs fn(RedisConnection&) on a healthy pooled connection.
  template <typename F>
  auto with_connection(F&& fn) -> decltype(fn(std::declval<RedisConnection&>())) {
    auto lease = acquire();
    if (!lease.ok()) return lease.status();
    Slot& slot = **lease;
    auto result = fn(*slot.conn);
    release(slot);
    return result;
  }

  // One command, pipelined with other threads' (see above). A Redis error
  // reply is a Reply of type kError; a status means no reply came.
  absl::StatusOr<Reply> command(const Argv& argv);
  // The same, with `then` sent right after it on the same connection (WAIT
  // after a write); its reply goes to *then_reply.
  absl::StatusOr<Reply> command(const Argv& argv, const Argv& then,
                                absl::StatusOr<Reply>* then_reply);

  static constexpr std::size_t kMaxBatch = 64;

  // Opens a connection now (used at start-up to report errors early).
  absl::Status open_one();

  const RedisEndpoint& endpoint() const { return options_.endpoint; }

 private:
  struct Slot {
    std::unique_ptr<RedisConnection> conn;
    bool busy = false;
    // Whether conn was usable when last released (under mu_): a busy
    // connection's own flag belongs to its driver.
    bool healthy = false;
  };

  struct Request {
    const Argv* argv;
    const Argv* then = nullptr;  // sent right after argv, on the same connection
    absl::StatusOr<Reply>* then_result = nullptr;
    absl::StatusOr<Reply> result{absl::UnknownError("no reply")};
    bool taken = false;  // in a driver's batch (guarded by the pool's mu_)
    std::mutex mu;       // guards done and wake
    std::condition_variable cv;
    bool done = false;  // result is in
    bool wake = false;  // a connection is free: come and drive
  };

  absl::StatusOr<Reply> run(Request& me);
  // One command with Redis Cluster's redirections handled: MOVED (sent
  // again: the directory knows the new node), ASK (sent once to the node
  // named, after ASKING), TRYAGAIN (a multi-key command while its slot is
  // half moved: sent again after a short pause, within a command timeout).
  absl::StatusOr<Reply> redirected(const Argv& argv, const Argv* then,
                                   absl::StatusOr<Reply>* then_reply);
  // ASKING then the command (and `then`) on a connection to `to`.
  absl::StatusOr<Reply> ask(const HostPort& to, const Argv& argv, const Argv* then,
                            absl::StatusOr<Reply>* then_reply);
  absl::StatusOr<Slot*> acquire();
  void release(Slot& slot);
  // A slot that is not busy (healthy first), or nullptr.
  Slot* idle_slot_locked();
  // Sends queued requests on `slot` until `me` has its reply; returns it.
  absl::StatusOr<Reply> drive_locked(Slot& slot, Request& me,
                                     std::unique_lock<std::mutex>& lock);
  // Hands `result` to a waiting caller.
  static void complete(Request* r, absl::StatusOr<Reply> result);
  // A slot was freed: wake one exclusive waiter and the oldest queued request.
  void wake_next_locked();
  absl::Status reopen_locked(Slot& slot, std::unique_lock<std::mutex>& lock);

  const Options options_;
  Clock* const clock_;
  const Logger* const logger_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Slot> slots_;
  std::deque<Request*> queue_;  // requests not yet in a batch, oldest first
  Reconnect reconnect_;
  // Redis Cluster: the connection that follows ASK redirections.
  std::mutex ask_mu_;
  std::unique_ptr<RedisConnection> ask_conn_;
  HostPort ask_addr_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_CONNECTION_HPP_
