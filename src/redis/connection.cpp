#include "redis/connection.hpp"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "fmt/format.h"
#include "internal/validate.hpp"
#include "redis/sigpipe.hpp"
#include "redis/tls.hpp"

namespace fleet::internal {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      out.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i)
        out.elements.push_back(convert(r->element[i]));
      break;
    default:  // REDIS_REPLY_NIL, and RESP3 types we never ask for
      out.type = Reply::Type::kNil;
      break;
  }
  return out;
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// "MOVED <slot> <host>:<port>" / "ASK <slot> <host>:<port>": the node named.
bool redirect_target(std::string_view error, HostPort* to) {
  const auto slot = error.find(' ');
  const auto sp = slot == std::string_view::npos ? slot : error.find(' ', slot + 1);
  return sp != std::string_view::npos && parse_host_port_text(error.substr(sp + 1), to);
}

}  // namespace

absl::Status status_from_error(std::string_view e) {
  if (starts_with(e, "WRONGPASS") || starts_with(e, "NOAUTH") ||
      e.find("invalid password") != std::string_view::npos ||
      e.find("invalid username-password") != std::string_view::npos ||
      e.find("without any password configured") != std::string_view::npos) {
    return absl::UnauthenticatedError(
        fmt::format("Redis rejected the credentials: {}", e));
  }
  if (starts_with(e, "NOPERM")) {
    return absl::PermissionDeniedError(fmt::format("Redis ACL denied fleet: {}", e));
  }
  if (starts_with(e, "WRONGTYPE") || e.find("WRONGTYPE") != std::string_view::npos) {
    return absl::DataLossError(
        fmt::format("malformed data in Redis (a fleet key holds the wrong type): {}", e));
  }
  if (e.find("is not an integer") != std::string_view::npos ||
      e.find("not a valid float") != std::string_view::npos) {
    return absl::DataLossError(fmt::format("malformed number in a fleet key: {}", e));
  }
  if (e.find("would overflow") != std::string_view::npos) {
    return absl::OutOfRangeError(fmt::format("counter overflow: {}", e));
  }
  if (starts_with(e, "LOADING") || starts_with(e, "BUSY") || starts_with(e, "READONLY") ||
      starts_with(e, "MASTERDOWN") || starts_with(e, "TRYAGAIN") ||
      starts_with(e, "CLUSTERDOWN")) {
    return absl::UnavailableError(fmt::format("Redis is not ready: {}", e));
  }
  if (starts_with(e, "MOVED") || starts_with(e, "ASK ")) {
    return absl::UnavailableError(
        fmt::format("the namespace's Redis Cluster slot is moving: {}", e));
  }
  if (starts_with(e, "OOM")) {
    return absl::ResourceExhaustedError(fmt::format("Redis is out of memory: {}", e));
  }
  return absl::InternalError(fmt::format("Redis error: {}", e));
}

// ---- RedisConnection ------------------------------------------------------------

absl::StatusOr<std::unique_ptr<RedisConnection>> RedisConnection::open(
    const RedisEndpoint& ep, Timeouts timeouts, const ConnectHook& hook) {
  // The handshake, AUTH and the hook write; a failed handshake does not
  // pass through io_error().
  const ScopedSigpipeBlock no_sigpipe(ScopedSigpipeBlock::Check::kAlways);
  const timeval ctv = to_timeval(timeouts.connect);
  // Sentinel, Cluster: the master's address now. The epoch is read first:
  // if the master moves while we connect, the connection is stale at once.
  std::string host = ep.host;
  int port = ep.port;
  const std::uint64_t epoch = ep.directory ? ep.directory->epoch() : 0;
  if (ep.directory) {
    auto master = ep.directory->master();
    if (!master.ok()) return master.status();
    host = master->host;
    port = master->port;
  }
  redisContext* ctx = ep.unix_path.empty()
                          ? redisConnectWithTimeout(host.c_str(), port, ctv)
                          : redisConnectUnixWithTimeout(ep.unix_path.c_str(), ctv);
  if (ctx == nullptr)
    return absl::ResourceExhaustedError("cannot allocate a Redis context");
  if (ctx->err != 0) {
    std::string why = ctx->errstr;
    redisFree(ctx);
    if (ep.directory) {
      ep.directory->suspect();
      return absl::UnavailableError(fmt::format(
          "cannot connect to {} ({}): {}", ep.directory->describe(), ep.redacted(), why));
    }
    return absl::UnavailableError(
        fmt::format("cannot connect to Redis at {}: {}", ep.redacted(), why));
  }
  std::unique_ptr<RedisConnection> conn(new RedisConnection(ctx, ep.tls));
  conn->directory_ = ep.directory;
  conn->epoch_ = epoch;
  bool cert_missing = false;
  if (ep.tls) {
    if (ep.tls_context == nullptr) {
      return absl::InternalError("rediss:// endpoint without a TLS context");
    }
    // The connect timeout bounds the handshake too: a stalled server must
    // not hold it for ever.
    if (redisSetTimeout(ctx, ctv) != REDIS_OK) return conn->io_error("setting a timeout");
    auto asked = ep.tls_context->handshake(ctx, ep.redacted());
    if (!asked.ok()) return asked.status();
    cert_missing = *asked;
  }
  absl::Status st = conn->prepare(ep, timeouts, hook);
  if (cert_missing && st.code() == absl::StatusCode::kUnavailable) {
    // TLS 1.3: a server that requires the certificate refuses after the
    // handshake, with an alert or, when our first command crossed it, a
    // reset that hides the alert.
    return missing_client_certificate(ep.redacted(), std::string(st.message()));
  }
  if (!st.ok()) return st;
  return conn;
}

absl::Status RedisConnection::prepare(const RedisEndpoint& ep, Timeouts timeouts,
                                      const ConnectHook& hook) {
  if (redisSetTimeout(ctx_, to_timeval(timeouts.command)) != REDIS_OK) {
    return io_error("setting the command timeout");
  }
  redisEnableKeepAlive(ctx_);
  if (ep.password) {
    Argv auth = {"AUTH"};
    if (!ep.user.empty()) auth.push_back(ep.user);
    auth.push_back(*ep.password);
    auto reply = command(auth);
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      absl::Status st = status_from_error(reply->str);
      if (st.code() == absl::StatusCode::kInternal) {
        st = absl::UnauthenticatedError(
            fmt::format("Redis rejected the credentials: {}", reply->str));
      }
      return st;
    }
  }
  if (ep.db != 0) {
    const std::string db = std::to_string(ep.db);
    auto reply = command({"SELECT", db});
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      absl::Status st = status_from_error(reply->str);
      if (st.code() == absl::StatusCode::kInternal) {
        return absl::InvalidArgumentError(
            fmt::format("cannot select database {}: {}", ep.db, reply->str));
      }
      return st;
    }
  }
  // Fail early (and clearly) when a password is required but missing.
  auto ping = command({"PING"});
  if (!ping.ok()) return ping.status();
  if (ping->is_error()) {
    absl::Status st = status_from_error(ping->str);
    if (st.code() == absl::StatusCode::kUnauthenticated) {
      return absl::UnauthenticatedError(
          "Redis requires a password: put it in the URL or in FLEET_REDIS_PASSWORD");
    }
    return st;
  }
  if (ep.directory) {
    // The address came from the sentinels or the cluster; during a failover
    // it can be a replica (the old master, demoted), which must not be used.
    auto role = command({"ROLE"});
    if (!role.ok()) return role.status();
    const bool master = role->type == Reply::Type::kArray && !role->elements.empty() &&
                        role->elements[0].str == "master";
    if (!master) {
      ep.directory->suspect();
      return absl::UnavailableError(fmt::format(
          "the server named for {} is not a master (role '{}'); a failover is in "
          "progress",
          ep.directory->describe(),
          role->type == Reply::Type::kArray && !role->elements.empty()
              ? role->elements[0].str
              : role->str));
    }
  }
  if (hook) FLEET_RETURN_IF_ERROR(hook(*this));
  return absl::OkStatus();
}

void RedisConnection::note(const Reply& reply) {
  if (reply.type != Reply::Type::kError) return;
  if (reply.str.compare(0, 6, "MOVED ") == 0) {
    // "MOVED <slot> <host>:<port>": the slot is served there now. (A
    // redis:// session pinned to one cluster node reconnects there, and
    // keeps getting MOVED: Unavailable.)
    broken_ = true;
    if (directory_ == nullptr) return;
    HostPort to;
    if (redirect_target(reply.str, &to)) {
      directory_->redirected(to);
    } else {
      directory_->suspect();
    }
  } else if (directory_ != nullptr && reply.str.compare(0, 8, "READONLY") == 0) {
    broken_ = true;
    directory_->suspect();
  }
}

RedisConnection::~RedisConnection() { redisFree(ctx_); }

int RedisConnection::fd() const { return ctx_->fd; }

absl::Status RedisConnection::io_error(std::string_view during) {
  broken_ = true;
  if (directory_ != nullptr) directory_->suspect();
  ScopedSigpipeBlock::note_failure();
  if (tls_) {
    // A TLS failure leaves its reason in OpenSSL's queue; errno may be stale.
    if (std::string tls_why = TlsContext::take_error(); !tls_why.empty()) {
      if (tls_why.find("certificate") != std::string::npos) {
        // TLS 1.3: the server checks the client's certificate after the
        // client's side of the handshake is done, so the refusal comes here.
        return absl::UnauthenticatedError(fmt::format(
            "Redis refused this client's TLS certificate, or its absence (set "
            "RedisTlsOptions::cert_file and key_file): {}",
            tls_why));
      }
      return absl::UnavailableError(
          fmt::format("Redis connection failed ({}): TLS: {}", during, tls_why));
    }
  }
  const std::string why = ctx_->errstr;
  const bool timed_out =
      (ctx_->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) ||
      why.find("temporarily unavailable") != std::string::npos ||
      why.find("imeout") != std::string::npos;
  if (timed_out) {
    return absl::DeadlineExceededError(fmt::format(
        "Redis did not answer in time ({}); the command may have run", during));
  }
  return absl::UnavailableError(
      fmt::format("Redis connection failed ({}): {}", during, why));
}

absl::StatusOr<Reply> RedisConnection::command(const Argv& argv) {
  if (broken_) return absl::UnavailableError("Redis connection is broken");
  auto st = append(argv);
  if (!st.ok()) return st;
  return read();
}

namespace {

// Writes n in decimal at p; returns the end.
char* put_decimal(std::size_t n, char* p) {
  char digits[20];
  int i = 0;
  do {
    digits[i++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  while (i > 0) *p++ = digits[--i];
  return p;
}

// The command in RESP: *<argc>\r\n then $<len>\r\n<bytes>\r\n per argument.
// hiredis's own argv formatter costs about 17k instructions for a 30-argument
// script call (a format string parsed per argument, the buffer regrown);
// this one writes into a buffer sized once.
void format_command(const Argv& argv, std::string* out) {
  std::size_t size = 24;
  for (auto a : argv) size += a.size() + 24;
  out->resize(size);
  char* p = out->data();
  *p++ = '*';
  p = put_decimal(argv.size(), p);
  *p++ = '\r';
  *p++ = '\n';
  for (auto a : argv) {
    *p++ = '$';
    p = put_decimal(a.size(), p);
    *p++ = '\r';
    *p++ = '\n';
    if (!a.empty()) std::memcpy(p, a.data(), a.size());
    p += a.size();
    *p++ = '\r';
    *p++ = '\n';
  }
  out->resize(static_cast<std::size_t>(p - out->data()));
}

}  // namespace

absl::Status RedisConnection::append(const Argv& argv) {
  if (broken_) return absl::UnavailableError("Redis connection is broken");
  thread_local std::string resp;
  format_command(argv, &resp);
  if (redisAppendFormattedCommand(ctx_, resp.data(), resp.size()) != REDIS_OK) {
    return io_error("queueing a command");
  }
  unflushed_ = true;
  return absl::OkStatus();
}

absl::Status RedisConnection::flush() {
  const ScopedSigpipeBlock no_sigpipe;
  if (tls_) TlsContext::clear_errors();
  int done = 0;
  while (!done) {
    if (redisBufferWrite(ctx_, &done) != REDIS_OK) return io_error("sending");
  }
  unflushed_ = false;
  return absl::OkStatus();
}

absl::StatusOr<Reply> RedisConnection::read() {
  if (broken_) return absl::UnavailableError("Redis connection is broken");
  // redisGetReply writes what is queued first; on TLS a read may write
  // (alerts, key updates). A plain read after a flush writes nothing.
  std::optional<ScopedSigpipeBlock> no_sigpipe;
  if (unflushed_ || tls_) no_sigpipe.emplace();
  if (tls_) TlsContext::clear_errors();
  unflushed_ = false;
  void* raw = nullptr;
  // redisGetReply flushes pending output, then blocks (up to the command
  // timeout) until a whole reply is parsed.
  if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
    return io_error("waiting for a reply");
  }
  Reply out = convert(static_cast<redisReply*>(raw));
  freeReplyObject(raw);
  note(out);
  return out;
}

absl::StatusOr<std::optional<Reply>> RedisConnection::buffered() {
  void* raw = nullptr;
  if (redisGetReplyFromReader(ctx_, &raw) != REDIS_OK) return io_error("parsing a reply");
  if (raw == nullptr) return std::optional<Reply>();
  Reply out = convert(static_cast<redisReply*>(raw));
  freeReplyObject(raw);
  note(out);
  return std::optional<Reply>(std::move(out));
}

absl::Status RedisConnection::fill() {
  // Only TLS writes here (alerts, key updates).
  std::optional<ScopedSigpipeBlock> no_sigpipe;
  if (tls_) no_sigpipe.emplace();
  if (tls_) TlsContext::clear_errors();
  if (redisBufferRead(ctx_) != REDIS_OK) return io_error("reading");
  return absl::OkStatus();
}

// ---- Reconnect --------------------------------------------------------------------

absl::Status Reconnect::ready(const RedisEndpoint& ep, Clock::TimePoint now) const {
  if (now >= next_attempt_) return absl::OkStatus();
  return absl::UnavailableError(fmt::format(
      "Redis at {} is unreachable; next attempt in {} ms", ep.redacted(),
      std::chrono::duration_cast<std::chrono::milliseconds>(next_attempt_ - now)
          .count()));
}

void Reconnect::record(const absl::Status& outcome, const RedisEndpoint& ep, Clock* clock,
                       const Logger* logger) {
  if (outcome.ok()) {
    if (down_logged_) {
      down_logged_ = false;
      logger->info("reconnected to Redis at {}", ep.redacted());
    }
    backoff_ = std::chrono::milliseconds(0);
    return;
  }
  if (outcome.code() != absl::StatusCode::kUnavailable &&
      outcome.code() != absl::StatusCode::kDeadlineExceeded) {
    return;  // not a question of waiting (bad credentials, say)
  }
  backoff_ = backoff_.count() == 0 ? min_ : std::min(backoff_ * 2, max_);
  // Full jitter in [backoff/2, backoff]: instances restarting together do
  // not reconnect in lockstep.
  std::uniform_int_distribution<long long> jitter(backoff_.count() / 2, backoff_.count());
  next_attempt_ = clock->now() + std::chrono::milliseconds(jitter(rng_));
  if (!down_logged_) {
    down_logged_ = true;
    logger->warn("{}", std::string(outcome.message()));
  }
}

// ---- ConnectionPool ---------------------------------------------------------------

ConnectionPool::ConnectionPool(Options options, Clock* clock, const Logger* logger)
    : options_(std::move(options)),
      clock_(clock),
      logger_(logger),
      reconnect_(options_.backoff_min, options_.backoff_max) {
  slots_.resize(static_cast<std::size_t>(options_.size));
}

absl::Status ConnectionPool::open_one() {
  auto lease = acquire();
  if (!lease.ok()) return lease.status();
  release(**lease);
  return absl::OkStatus();
}

ConnectionPool::Slot* ConnectionPool::idle_slot_locked() {
  Slot* idle_broken = nullptr;
  bool any_healthy = false;
  for (auto& s : slots_) {
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
  std::lock_guard<std::mutex> own(r->mu);
  r->wake = true;
  r->cv.notify_one();
}

namespace {

// Redis Cluster: MOVED means the command did not run, and the connection
// that got it is broken and the directory knows the new address: send it
// again (a few times: a slot can move twice). ASK and TRYAGAIN also mean
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
      // "ASK <slot> <host>:<port>": this key has moved already; the slot
      // has not. Only this command goes there.
      if (HostPort to; redirect_target(r->str, &to)) r = ask(to, argv, then, then_reply);
    }
    if (attempt >= kRedirections) return r;
    // (Without a directory — a redis:// URL naming one cluster node —
    // nothing knows where the slot went.)
    if (error_starts(r, "MOVED ")) {
      if (options_.endpoint.directory) continue;
      return r;
    }
    if (!error_starts(r, "TRYAGAIN") && !error_starts(r, "ASK ")) return r;
    if (!deadline) deadline = clock_->now() + options_.timeouts.command;
    if (clock_->now() + pause >= *deadline) return r;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

absl::StatusOr<Reply> ConnectionPool::ask(const HostPort& to, const Argv& argv,
                                          const Argv* then,
                                          absl::StatusOr<Reply>* then_reply) {
  std::lock_guard<std::mutex> lock(ask_mu_);
  if (!ask_conn_ || ask_conn_->broken() || ask_addr_ != to) {
    ask_conn_.reset();
    RedisEndpoint ep = options_.endpoint;
    ep.host = to.host;
    ep.port = to.port;
    ep.directory.reset();  // this node, whatever the slot map says
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
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(&me);
  for (;;) {
    Slot* slot = me.taken ? nullptr : idle_slot_locked();
    if (slot == nullptr) {
      // Sleep on our own mutex, not the pool's: a driver hands over each
      // reply without the pool lock, and we wake without contending for it.
      lock.unlock();
      {
        std::unique_lock<std::mutex> own(me.mu);
        me.cv.wait(own, [&] { return me.done || me.wake; });
        if (me.done) return std::move(me.result);
        me.wake = false;  // a connection is free: try to drive
      }
      lock.lock();
      continue;
    }
    slot->busy = true;
    if (!slot->conn || slot->conn->broken()) {
      absl::Status st = reopen_locked(*slot, lock);
      if (!st.ok()) {
        slot->busy = false;
        if (!me.taken) {
          queue_.erase(std::find(queue_.begin(), queue_.end(), &me));
          wake_next_locked();
          return st;
        }
        wake_next_locked();
        continue;  // another driver took us meanwhile
      }
      if (me.taken) {  // taken while reopen_locked() had the lock released
        slot->busy = false;
        wake_next_locked();
        continue;
      }
    }
    absl::StatusOr<Reply> mine = drive_locked(*slot, me, lock);
    slot->healthy = !slot->conn->broken();
    slot->busy = false;
    wake_next_locked();
    return mine;
  }
}

void ConnectionPool::complete(Request* r, absl::StatusOr<Reply> result) {
  r->result = std::move(result);
  // Notify under the request's mutex: once it is released, the waiter may
  // return and destroy the request.
  std::lock_guard<std::mutex> own(r->mu);
  r->done = true;
  r->cv.notify_one();
}

absl::StatusOr<Reply> ConnectionPool::drive_locked(Slot& slot, Request& me,
                                                   std::unique_lock<std::mutex>& lock) {
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
    lock.unlock();
    RedisConnection& conn = *slot.conn;
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
    lock.lock();
  }
  return *std::move(mine);
}

absl::StatusOr<ConnectionPool::Slot*> ConnectionPool::acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  Slot* slot = nullptr;
  // Every slot busy: each frees within a command timeout.
  while ((slot = idle_slot_locked()) == nullptr) cv_.wait(lock);
  slot->busy = true;
  if (slot->conn && !slot->conn->broken()) return slot;
  absl::Status st = reopen_locked(*slot, lock);
  if (!st.ok()) {
    slot->busy = false;
    wake_next_locked();
    return st;
  }
  return slot;
}

absl::Status ConnectionPool::reopen_locked(Slot& slot,
                                           std::unique_lock<std::mutex>& lock) {
  FLEET_RETURN_IF_ERROR(reconnect_.ready(options_.endpoint, clock_->now()));
  slot.conn.reset();
  slot.healthy = false;
  lock.unlock();
  auto conn =
      RedisConnection::open(options_.endpoint, options_.timeouts, options_.on_connect);
  lock.lock();
  reconnect_.record(conn.status(), options_.endpoint, clock_, logger_);
  if (!conn.ok()) return conn.status();
  slot.conn = *std::move(conn);
  slot.healthy = true;
  return absl::OkStatus();
}

void ConnectionPool::retry_now() {
  std::lock_guard<std::mutex> lock(mu_);
  reconnect_.reset();
  // Idle connections opened before the outage are likely dead (a restarted
  // Redis closed them): open fresh ones rather than fail a caller's command
  // on each.
  for (auto& slot : slots_) {
    if (slot.busy) continue;
    slot.conn.reset();
    slot.healthy = false;
  }
}

void ConnectionPool::release(Slot& slot) {
  std::lock_guard<std::mutex> lock(mu_);
  slot.healthy = slot.conn && !slot.conn->broken();
  slot.busy = false;
  wake_next_locked();
}

}  // namespace fleet::internal
