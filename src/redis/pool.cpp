#include "redis/pool.hpp"

#include <algorithm>

#include "fmt/format.h"
#include "internal/sleep.hpp"
#include "internal/status.hpp"

namespace fleet::internal {

// ---- ConnectionPool ---------------------------------------------------------------

ConnectionPool::ConnectionPool(Options options, Clock* clock, const Logger* logger)
    : options_(std::move(options)),
      clock_(clock),
      logger_(logger),
      reconnect_(options_.backoff_min, options_.backoff_max) {
  entries_.resize(static_cast<std::size_t>(options_.size));
}

absl::Status ConnectionPool::open_one() {
  auto lease = acquire();
  if (!lease.ok()) return lease.status();
  release(**lease);
  return absl::OkStatus();
}

ConnectionPool::PoolEntry* ConnectionPool::idle_entry_locked() {
  PoolEntry* idle_broken = nullptr;
  bool any_healthy = false;
  for (auto& s : entries_) {
    if (s.busy) {
      any_healthy = any_healthy || s.healthy;
    } else if (s.conn && !s.conn->broken()) {
      return &s;
    } else if (idle_broken == nullptr) {
      idle_broken = &s;
    }
  }
  // A broken one may not be reopened yet while a healthy one is busy: wait
  // for that one (it drives the queue) rather than fail the call.
  if (idle_broken != nullptr && any_healthy &&
      !reconnect_.ready(options_.endpoint, clock_->now()).ok()) {
    return nullptr;
  }
  return idle_broken;
}

void ConnectionPool::wake_next_locked() {
  cv_.notify_one();
  if (queue_.empty()) return;
  Request* r = queue_.front();  // alive: it is queued, so its caller waits
  MutexLock own(r->mu);
  r->wake = true;
  r->cv.notify_one();
}

namespace {

// Redis Cluster: MOVED means the command did not run, and the connection
// that got it is broken and the directory knows the new address: send it
// again (a few times: a entry can move twice). ASK and TRYAGAIN also mean
// it did not run.
constexpr int kRedirections = 40;

bool error_starts(const absl::StatusOr<Reply>& r, std::string_view prefix) {
  return r.ok() && r->is_error() && r->str.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

absl::StatusOr<Reply> ConnectionPool::command(const Argv& argv, const Argv& then,
                                              absl::StatusOr<Reply>* then_reply) {
  return redirected(argv, &then, then_reply);
}

absl::StatusOr<Reply> ConnectionPool::command(const Argv& argv) {
  return redirected(argv, nullptr, nullptr);
}

absl::StatusOr<Reply> ConnectionPool::redirected(const Argv& argv, const Argv* then,
                                                 absl::StatusOr<Reply>* then_reply) {
  std::optional<Clock::TimePoint> deadline;  // from the first TRYAGAIN or ASK
  auto pause = std::chrono::milliseconds(1);
  for (int attempt = 0;; ++attempt) {
    Request me;
    me.argv = &argv;
    me.then = then;
    me.then_result = then_reply;
    auto r = run(me);
    if (attempt < kRedirections && error_starts(r, "ASK ")) {
      // "ASK <entry> <host>:<port>": this key has moved already; the entry
      // has not. Only this command goes there.
      if (HostPort to; redirect_target(r->str, &to)) r = ask(to, argv, then, then_reply);
    }
    if (attempt >= kRedirections) return r;
    // (Without a directory — a redis:// URL naming one cluster node —
    // nothing knows where the entry went.)
    if (error_starts(r, "MOVED ")) {
      if (options_.endpoint.directory) continue;
      return r;
    }
    if (!error_starts(r, "TRYAGAIN") && !error_starts(r, "ASK ")) return r;
    if (!deadline) deadline = clock_->now() + options_.timeouts.command;
    if (clock_->now() + pause >= *deadline) return r;
    sleep_until(clock_, clock_->now() + pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

absl::StatusOr<Reply> ConnectionPool::ask(const HostPort& to, const Argv& argv,
                                          const Argv* then,
                                          absl::StatusOr<Reply>* then_reply) {
  MutexLock lock(ask_mu_);
  if (!ask_conn_ || ask_conn_->broken() || ask_addr_ != to) {
    ask_conn_.reset();
    RedisEndpoint ep = options_.endpoint;
    ep.host = to.host;
    ep.port = to.port;
    ep.directory.reset();  // this node, whatever the entry map says
    ep.seeds.clear();
    ep.master_name.clear();
    auto conn = RedisConnection::open(ep, options_.timeouts, options_.on_ask_connect);
    if (!conn.ok()) return conn.status();
    ask_conn_ = *std::move(conn);
    ask_addr_ = to;
  }
  RedisConnection& c = *ask_conn_;
  FLEET_RETURN_IF_ERROR(c.append({"ASKING"}));
  FLEET_RETURN_IF_ERROR(c.append(argv));
  if (then != nullptr) FLEET_RETURN_IF_ERROR(c.append(*then));
  FLEET_RETURN_IF_ERROR(c.flush());
  auto asking = c.read();
  if (!asking.ok()) return asking.status();
  auto r = c.read();
  if (then != nullptr)
    *then_reply = r.ok() ? c.read() : absl::StatusOr<Reply>(r.status());
  return r;
}

absl::StatusOr<Reply> ConnectionPool::run(Request& me) {
  MutexLock lock(mu_);
  queue_.push_back(&me);
  for (;;) {
    PoolEntry* entry = me.taken ? nullptr : idle_entry_locked();
    if (entry == nullptr) {
      // Sleep on our own mutex, not the pool's: a driver hands over each
      // reply without the pool lock, and we wake without contending for it.
      lock.unlock();
      {
        MutexLock own(me.mu);
        while (!me.done && !me.wake) me.cv.wait(own.native());
        if (me.done) return std::move(me.result);
        me.wake = false;  // a connection is free: try to drive
      }
      lock.lock();
      continue;
    }
    entry->busy = true;
    if (!entry->conn || entry->conn->broken()) {
      absl::Status st = reopen_locked(*entry);
      if (!st.ok()) {
        entry->busy = false;
        if (!me.taken) {
          queue_.erase(std::find(queue_.begin(), queue_.end(), &me));
          wake_next_locked();
          return st;
        }
        wake_next_locked();
        continue;  // another driver took us meanwhile
      }
      if (me.taken) {  // taken while reopen_locked() had the lock released
        entry->busy = false;
        wake_next_locked();
        continue;
      }
    }
    absl::StatusOr<Reply> mine = drive_locked(*entry, me);
    entry->healthy = !entry->conn->broken();
    entry->busy = false;
    wake_next_locked();
    return mine;
  }
}

void ConnectionPool::complete(Request* r, absl::StatusOr<Reply> result) {
  r->result = std::move(result);
  // Notify under the request's mutex: once it is released, the waiter may
  // return and destroy the request.
  MutexLock own(r->mu);
  r->done = true;
  r->cv.notify_one();
}

absl::StatusOr<Reply> ConnectionPool::drive_locked(PoolEntry& entry, Request& me) {
  std::vector<Request*> batch;
  batch.reserve(kMaxBatch);
  std::optional<absl::StatusOr<Reply>> mine;
  while (!mine) {
    batch.clear();
    while (!queue_.empty() && batch.size() < kMaxBatch) {
      batch.push_back(queue_.front());
      batch.back()->taken = true;
      queue_.pop_front();
    }
    if (batch.empty()) {
      // Cannot happen: `me` is queued until a driver takes it, and a driver
      // hands back every request it takes.
      return absl::InternalError("pipelined request lost");
    }
    mu_.unlock();
    RedisConnection& conn = *entry.conn;
    absl::Status st;
    for (Request* r : batch) {
      if (st = conn.append(*r->argv); !st.ok()) break;
      if (r->then != nullptr) {
        if (st = conn.append(*r->then); !st.ok()) break;
      }
    }
    if (st.ok()) st = conn.flush();
    // Each reply goes to its caller as soon as it is read.
    for (Request* r : batch) {
      absl::StatusOr<Reply> reply = st.ok() ? conn.read() : absl::StatusOr<Reply>(st);
      if (!reply.ok()) st = reply.status();  // the rest get this error too
      if (r->then != nullptr) {
        *r->then_result = st.ok() ? conn.read() : absl::StatusOr<Reply>(st);
        if (!r->then_result->ok()) st = r->then_result->status();
      }
      if (r == &me) {
        mine = std::move(reply);
      } else {
        complete(r, std::move(reply));
      }
    }
    mu_.lock();
  }
  return *std::move(mine);
}

absl::StatusOr<ConnectionPool::PoolEntry*> ConnectionPool::acquire() {
  MutexLock lock(mu_);
  PoolEntry* entry = nullptr;
  // Every entry busy: each frees within a command timeout.
  while ((entry = idle_entry_locked()) == nullptr) cv_.wait(lock.native());
  entry->busy = true;
  if (entry->conn && !entry->conn->broken()) return entry;
  absl::Status st = reopen_locked(*entry);
  if (!st.ok()) {
    entry->busy = false;
    wake_next_locked();
    return st;
  }
  return entry;
}

absl::Status ConnectionPool::reopen_locked(PoolEntry& entry) {
  FLEET_RETURN_IF_ERROR(reconnect_.ready(options_.endpoint, clock_->now()));
  entry.conn.reset();
  entry.healthy = false;
  mu_.unlock();
  auto conn =
      RedisConnection::open(options_.endpoint, options_.timeouts, options_.on_connect);
  mu_.lock();
  reconnect_.record(conn.status(), options_.endpoint, clock_, logger_);
  if (!conn.ok()) return conn.status();
  entry.conn = *std::move(conn);
  entry.healthy = true;
  return absl::OkStatus();
}

void ConnectionPool::retry_now() {
  MutexLock lock(mu_);
  reconnect_.reset();
  // Idle connections opened before the outage are likely dead (a restarted
  // Redis closed them): open fresh ones rather than fail a caller's command
  // on each.
  for (auto& entry : entries_) {
    if (entry.busy) continue;
    entry.conn.reset();
    entry.healthy = false;
  }
}

void ConnectionPool::release(PoolEntry& entry) {
  MutexLock lock(mu_);
  entry.healthy = entry.conn && !entry.conn->broken();
  entry.busy = false;
  wake_next_locked();
}

}  // namespace fleet::internal
