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

}  // namespace

namespace {

// What a failed first exchange says about the peer, with its (redacted)
// address: it never answered, it answered with something that is not RESP,
// or it failed otherwise. Nothing ran yet: Unavailable, not "may have run".
absl::Status handshake_failed(const RedisEndpoint& ep, const std::string& host, int port,
                              const absl::Status& st, std::chrono::milliseconds timeout) {
  if (!absl::IsDeadlineExceeded(st) && !absl::IsUnavailable(st)) return st;
  const std::string where =
      ep.directory ? fmt::format("{}:{} ({})", host, port, ep.redacted()) : ep.redacted();
  const std::string why(st.message());
  if (absl::IsDeadlineExceeded(st)) {
    return absl::UnavailableError(fmt::format(
        "Redis at {} accepted the connection but did not answer within {} ms (stopped, "
        "overloaded, or not a Redis server)",
        where, timeout.count()));
  }
  if (why.find("Protocol error") != std::string::npos) {
    return absl::UnavailableError(fmt::format(
        "the server at {} answered with something that is not the Redis protocol (RESP): "
        "is this a Redis port? ({})",
        where, why));
  }
  return absl::UnavailableError(fmt::format("Redis at {}: {}", where, why));
}

}  // namespace

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
  if (!st.ok()) return handshake_failed(ep, host, port, st, timeouts.command);
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
  if (!outcome_unknown(outcome)) {
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

}  // namespace fleet::internal
