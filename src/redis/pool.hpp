// The pool of connections that a session's commands and scripts run on.
#ifndef FLEET_SRC_REDIS_POOL_HPP_
#define FLEET_SRC_REDIS_POOL_HPP_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "fleet/clock.hpp"
#include "internal/logger.hpp"
#include "internal/mutex.hpp"
#include "redis/connection.hpp"

namespace fleet::internal {

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
    PoolEntry& entry = **lease;
    auto result = fn(*entry.conn);
    release(entry);
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
  struct PoolEntry {
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
    // Written by the driver before it sets `done`, read by the caller after.
    absl::StatusOr<Reply> result{absl::UnknownError("no reply")};
    bool taken = false;  // in a driver's batch (guarded by the pool's mu_)
    Mutex mu;
    std::condition_variable cv;
    bool done ABSL_GUARDED_BY(mu) = false;  // result is in
    bool wake ABSL_GUARDED_BY(mu) = false;  // a connection is free: come and drive
  };

  absl::StatusOr<Reply> run(Request& me) ABSL_LOCKS_EXCLUDED(mu_);
  // One command with Redis Cluster's redirections handled: MOVED (sent
  // again: the directory knows the new node), ASK (sent once to the node
  // named, after ASKING), TRYAGAIN (a multi-key command while its slot is
  // half moved: sent again after a short pause, within a command timeout).
  absl::StatusOr<Reply> redirected(const Argv& argv, const Argv* then,
                                   absl::StatusOr<Reply>* then_reply);
  // ASKING then the command (and `then`) on a connection to `to`.
  absl::StatusOr<Reply> ask(const HostPort& to, const Argv& argv, const Argv* then,
                            absl::StatusOr<Reply>* then_reply);
  absl::StatusOr<PoolEntry*> acquire() ABSL_LOCKS_EXCLUDED(mu_);
  void release(PoolEntry& entry) ABSL_LOCKS_EXCLUDED(mu_);
  // An entry that is not busy (healthy first), or nullptr.
  PoolEntry* idle_entry_locked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends queued requests on `entry` until `me` has its reply; returns it.
  // Releases mu_ while it talks to Redis (the entry is busy: its own).
  absl::StatusOr<Reply> drive_locked(PoolEntry& entry, Request& me)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands `result` to a waiting caller.
  static void complete(Request* r, absl::StatusOr<Reply> result);
  // An entry was freed: wake one exclusive waiter and the oldest queued request.
  void wake_next_locked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Releases mu_ while it connects (the entry is busy: its own).
  absl::Status reopen_locked(PoolEntry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  Clock* const clock_;
  const Logger* const logger_;
  Mutex mu_;
  std::condition_variable cv_;
  // A busy entry's connection belongs to whoever made it busy; the flags
  // and the vector are mu_'s.
  std::vector<PoolEntry> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<Request*> queue_ ABSL_GUARDED_BY(mu_);  // not yet in a batch, oldest first
  Reconnect reconnect_ ABSL_GUARDED_BY(mu_);
  // Redis Cluster: the connection that follows ASK redirections.
  Mutex ask_mu_;
  std::unique_ptr<RedisConnection> ask_conn_ ABSL_GUARDED_BY(ask_mu_);
  HostPort ask_addr_ ABSL_GUARDED_BY(ask_mu_);
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_POOL_HPP_
