// RedisSession: construction, the incarnation check, membership; the
// factory functions of redis_coordinator.hpp. The agent is in
// redis_session_agent.cpp.
#include "redis/redis_session.hpp"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <random>

#include "fleet/local_coordinator.hpp"
#include "fleet/names.hpp"
#include "fmt/format.h"
#include "internal/slots.hpp"
#include "internal/validate.hpp"
#include "redis/codec.hpp"
#include "redis/sigpipe.hpp"

namespace fleet::internal {

std::string random_session_id() {
  std::random_device rd;
  std::uniform_int_distribution<unsigned long long> dist;
  const unsigned long long hi = dist(rd), lo = dist(rd);
  return fmt::format("r-{:016x}{:016x}", hi, lo);
}

namespace {

absl::Status validate_options(const RedisOptions& o) {
  FLEET_RETURN_IF_ERROR(validate_name("namespace", o.namespace_name));
  if (o.namespace_name.find_first_of("{}") != std::string::npos) {
    return absl::InvalidArgumentError(
        "namespace must not contain '{' or '}': it is a Redis Cluster hash tag");
  }
  for (auto [what, d] : {std::pair{"connect_timeout", o.connect_timeout},
                         std::pair{"command_timeout", o.command_timeout},
                         std::pair{"heartbeat_interval", o.heartbeat_interval},
                         std::pair{"session_ttl", o.session_ttl},
                         std::pair{"reconnect_backoff_min", o.reconnect_backoff_min},
                         std::pair{"reconnect_backoff_max", o.reconnect_backoff_max},
                         std::pair{"replica_ack_timeout", o.replica_ack_timeout}}) {
    if (d.count() <= 0) {
      return absl::InvalidArgumentError(
          fmt::format("RedisOptions::{} must be positive (got {} ms)", what, d.count()));
    }
  }
  if (o.session_ttl <= o.heartbeat_interval) {
    return absl::InvalidArgumentError(fmt::format(
        "RedisOptions::session_ttl ({} ms) must exceed heartbeat_interval ({} ms)",
        o.session_ttl.count(), o.heartbeat_interval.count()));
  }
  if (o.reconnect_backoff_max < o.reconnect_backoff_min) {
    return absl::InvalidArgumentError(
        "reconnect_backoff_max is below reconnect_backoff_min");
  }
  if (o.replica_acks && (*o.replica_acks < 0 || *o.replica_acks > 16)) {
    return absl::InvalidArgumentError(fmt::format(
        "RedisOptions::replica_acks must be 0 to 16 (got {})", *o.replica_acks));
  }
  if (o.pool_size < 1 || o.pool_size > 64) {
    return absl::InvalidArgumentError(
        fmt::format("RedisOptions::pool_size must be 1 to 64 (got {})", o.pool_size));
  }
  return absl::OkStatus();
}

}  // namespace

// ---- lifecycle ------------------------------------------------------------------

RedisSession::RedisSession(const RedisOptions& options, RedisEndpoint endpoint)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : real_clock()),
      logger_(options.log_sink, options.log_level, "fleet.redis"),
      keys_(options.namespace_name),
      sid_(random_session_id()),
      grace_(options.data_loss_grace.value_or(2 * options.heartbeat_interval)),
      ledger_(
          clock_, [this] { wake_agent(); },
          [this] {
            MutexLock lock(lane_mu_);
            if (lane_) lane_->resume();
          }),
      pool_(ConnectionPool::Options{
                endpoint,
                {options.connect_timeout, options.command_timeout},
                options.pool_size,
                options.reconnect_backoff_min,
                options.reconnect_backoff_max,
                [this](RedisConnection& c) { return check_incarnation(c); },
                [this](RedisConnection& c) { return scripts_.preload(c); }},
            clock_, &logger_),
      scripts_(endpoint.uses_cluster()),
      events_(std::make_shared<Events>(
          Subscriber::Options{endpoint,
                              {options.connect_timeout, options.command_timeout},
                              options.reconnect_backoff_min,
                              options.reconnect_backoff_max},
          clock_, &logger_, [this] { wake_agent(); })),
      // The agent retries at least once per heartbeat interval, so that it
      // notices Redis is back within one.
      agent_reconnect_(
          options.reconnect_backoff_min,
          std::min(options.reconnect_backoff_max,
                   std::max(options.heartbeat_interval, options.reconnect_backoff_min))) {
}

absl::StatusOr<std::unique_ptr<Coordinator>> RedisSession::open(
    const RedisOptions& options, RedisEndpoint endpoint) {
  std::unique_ptr<RedisSession> s(new RedisSession(options, std::move(endpoint)));
  FLEET_RETURN_IF_ERROR(s->start());
  return std::unique_ptr<Coordinator>(std::move(s));
}

absl::Status RedisSession::start() {
  if (auto& directory = pool_.endpoint().directory) {
    directory->start_watch(clock_, logger_);
    master_epoch_.store(directory->epoch());
  }
  auto conn = RedisConnection::open(
      pool_.endpoint(), {options_.connect_timeout, options_.command_timeout},
      [this](RedisConnection& c) { return check_incarnation(c); });
  if (!conn.ok()) return conn.status();
  agent_conn_ = *std::move(conn);
  FLEET_RETURN_IF_ERROR(scripts_.load(*agent_conn_));
  FLEET_RETURN_IF_ERROR(events_->subscriber.start());
  auto hb = heartbeat();
  if (!hb.ok()) return hb.status();
  refresh_replicas();
  {
    MutexLock lock(state_mu_);
    last_heartbeat_ok_ = clock_->now();
    if (!sync_locked()) {
      return absl::UnavailableError(
          "could not register the session's state in Redis; try again");
    }
  }
  agent_thread_ = std::thread([this] { agent_loop(); });
  logger_.log(LogLevel::kDebug, "session {} started on {}", sid_,
              pool_.endpoint().redacted());
  return absl::OkStatus();
}

RedisSession::~RedisSession() {
  {
    MutexLock lock(lane_mu_);
    lane_.reset();  // pending decisions get Cancelled
  }
  {
    MutexLock lock(agent_mu_);
    stop_ = true;
  }
  agent_cv_.notify_all();
  if (agent_thread_.joinable()) agent_thread_.join();
  decltype(Events::state_watchers) watchers;
  {
    MutexLock lock(events_->watchers_mu);
    watchers.swap(events_->state_watchers);
  }
  for (auto& [slot, cb] : watchers) events_->dispatcher.cancel(slot);
  // Crash semantics, as documented: no leave(); our state expires by TTL.
  // Stop both threads here, on this thread: a handler or callback may hold
  // Events for a moment (weak_ptr::lock), and if the last reference were
  // dropped there, Events' destructor would have to join its own thread.
  events_->subscriber.stop();
  events_->dispatcher.stop();
  // Subscription handles that outlive us find the weak_ptr empty.
  events_.reset();
  if (auto& directory = pool_.endpoint().directory) directory->stop_watch();
}

absl::StatusOr<Reply> RedisSession::run(Script script, const Argv& keys,
                                        const Argv& args) {
  return scripts_.run([this](const Argv& argv) { return pool_.command(argv); }, script,
                      keys, args);
}

absl::StatusOr<Reply> RedisSession::agent_command(const Argv& argv) {
  if (!agent_conn_ || agent_conn_->broken()) {
    FLEET_RETURN_IF_ERROR(agent_reconnect_.ready(pool_.endpoint(), clock_->now()));
    agent_conn_.reset();
    auto conn = RedisConnection::open(
        pool_.endpoint(), {options_.connect_timeout, options_.command_timeout},
        [this](RedisConnection& c) { return check_incarnation(c); });
    agent_reconnect_.record(conn.status(), pool_.endpoint(), clock_, &logger_);
    if (!conn.ok()) return conn.status();
    agent_conn_ = *std::move(conn);
  }
  return agent_conn_->command(argv);
}

absl::StatusOr<Reply> RedisSession::agent_run(Script script, const Argv& keys,
                                              const Argv& args) {
  return scripts_.run([this](const Argv& argv) { return agent_command(argv); }, script,
                      keys, args);
}

absl::StatusOr<Reply> RedisSession::command(const Argv& argv) {
  auto reply = pool_.command(argv);
  if (reply.ok() && reply->is_error()) return status_from_error(reply->str);
  return reply;
}

// ---- incarnation: did Redis lose its data? -------------------------------------------

// One round trip on every new connection, before anything else runs on it:
// the namespace's incarnation id, created if Redis has none. A connection
// that reaches a Redis that lost its data learns it here, so what this
// session reads next (a module's registry, say) is read knowing that.
absl::Status RedisSession::check_incarnation(RedisConnection& conn) {
  if (auto& directory = pool_.endpoint().directory) {
    // The first connection to a new master: writes acknowledged by the old
    // one may not have reached it (a failover), so the session sets its
    // record again. (After a slot migration this finds it there: no harm.)
    const std::uint64_t now = directory->epoch();
    std::uint64_t seen = master_epoch_.load();
    while (seen < now && !master_epoch_.compare_exchange_weak(seen, now)) {
    }
    if (seen < now) {
      logger_.warn(
          "session {}: now on {}; re-establishing this session's state there "
          "(writes the old master acknowledged may not have reached it)",
          sid_, directory->describe());
      ledger_.want_sync();
    }
  }
  const std::string fresh = random_session_id();
  FLEET_RETURN_IF_ERROR(conn.append({"HSETNX", keys_.incarnation, "id", fresh}));
  FLEET_RETURN_IF_ERROR(conn.append({"HGET", keys_.incarnation, "id"}));
  FLEET_RETURN_IF_ERROR(conn.flush());
  for (int i = 0; i < 2; ++i) {
    auto r = conn.read();
    if (!r.ok()) return r.status();
    if (r->is_error()) return status_from_error(r->str);
    if (i == 1 && r->type == Reply::Type::kString) note_incarnation(r->str);
  }
  return absl::OkStatus();
}

void RedisSession::note_incarnation(const std::string& id) {
  std::uint64_t n = 0;
  {
    // The count grows under the lock: another connection that sees the new
    // id (and returns early) must not run a command before it has grown.
    MutexLock lock(incarnation_mu_);
    if (incarnation_ == id) return;
    const bool first = incarnation_.empty();
    incarnation_ = id;
    if (first) return;
    n = ++data_losses_;
  }
  logger_.warn(
      "session {}: Redis at {} lost the data of namespace '{}' (data loss #{}); this "
      "session re-establishes its state",
      sid_, pool_.endpoint().redacted(), options_.namespace_name, n);
  ledger_.want_sync();
}

absl::Status RedisSession::check_grace() const {
  const auto until =
      Clock::TimePoint(Clock::TimePoint::duration(no_grants_until_.load()));
  const auto now = clock_->now();
  if (now >= until) return absl::OkStatus();
  return absl::UnavailableError(fmt::format(
      "Redis lost its data; no slots are granted for another {} ms, while every session "
      "takes back the slots it holds",
      std::chrono::ceil<std::chrono::milliseconds>(until - now).count()));
}

bool RedisSession::await_sync(std::uint64_t epoch) {
  return ledger_.await_sync(epoch, 2 * options_.command_timeout);
}

// ---- membership -------------------------------------------------------------------

absl::Status RedisSession::join_locked(const InstanceInfo& info,
                                       const Scripts::Send& send) {
  const std::string record = encode_member(info, sid_);
  const std::string ttl = std::to_string(options_.session_ttl.count());
  auto r = scripts_.run(send, Script::kJoin,
                        {keys_.sessions, keys_.heartbeats, keys_.members,
                         keys_.member_session, keys_.session_member, keys_.views_gen},
                        {sid_, info.id, record, ttl, keys_.member_channel});
  if (!r.ok()) return r.status();
  if (r->type != Reply::Type::kArray || r->elements.empty()) {
    return absl::InternalError("join: unexpected reply from Redis");
  }
  switch (r->elements[0].integer) {
    case -1:
      return absl::AlreadyExistsError(
          fmt::format("instance id '{}' is held by another live session", info.id));
    case -2:
      return absl::FailedPreconditionError(fmt::format(
          "this session already joined as '{}'; leave() before joining as '{}'",
          r->elements.size() > 1 ? r->elements[1].str : "?", info.id));
    default:
      return absl::OkStatus();
  }
}

absl::Status RedisSession::join(const InstanceInfo& info) {
  FLEET_RETURN_IF_ERROR(validate_instance_info(info));
  InstanceInfo stamped = info;
  MutexLock lock(state_mu_);
  if (stamped.started_at == Clock::WallTime{}) {
    stamped.started_at =
        joined_ && joined_->id == info.id ? joined_->started_at : clock_->wall_now();
  }
  absl::Status st =
      join_locked(stamped, [this](const Argv& argv) { return pool_.command(argv); });
  if (st.ok()) {
    joined_ = stamped;
    MutexLock id_lock(id_mu_);
    instance_id_ = stamped.id;
  } else if (outcome_unknown(st)) {
    // It may have landed: the sync ends a membership the record lacks.
    ledger_.want_sync();
  }
  return st;
}

std::string RedisSession::instance_id() const {
  // Not state_mu_: the agent holds that through a whole re-join and sync.
  MutexLock lock(id_mu_);
  return instance_id_;
}

// The record is emptied first: if Redis cannot be told now, the sync drops
// the rest as soon as it can.
absl::Status RedisSession::leave() {
  {
    MutexLock lock(state_mu_);
    joined_.reset();
    MutexLock id_lock(id_mu_);
    instance_id_.clear();
  }
  ledger_.clear();
  ledger_.begin_write();  // leave.lua only removes: it needs no epoch
  auto r =
      run(Script::kLeave,
          {keys_.members, keys_.member_session, keys_.session_member, keys_.node_index,
           keys_.owned_index, keys_.views_gen, keys_.session_slots(sid_)},
          {keys_.prefix, sid_, keys_.member_channel});
  ledger_.end_write(1, !r.ok());
  return r.status();
}

absl::StatusOr<std::vector<Member>> RedisSession::members() {
  auto r =
      run(Script::kMembers,
          {keys_.sessions, keys_.heartbeats, keys_.members, keys_.member_session}, {});
  if (!r.ok()) return r.status();
  std::vector<Member> out;
  for (std::size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    auto m = decode_member(r->elements[i].str);
    std::int64_t hb = 0;
    if (!m || !parse_int(r->elements[i + 1].str, &hb)) {
      logger_.warn("skipping a malformed member record in {}", keys_.members);
      continue;
    }
    m->last_heartbeat = Clock::WallTime(std::chrono::milliseconds(hb));
    out.push_back(std::move(*m));
  }
  std::sort(out.begin(), out.end(),
            [](const Member& a, const Member& b) { return a.info.id < b.info.id; });
  return out;
}

absl::StatusOr<Subscription> RedisSession::watch_members(
    std::function<void(const MemberEvent&)> callback) {
  FLEET_RETURN_IF_ERROR(validate_callback(callback));
  std::weak_ptr<Events> weak = events_;
  const Logger* logger = &logger_;
  return listen(keys_.member_channel, [weak, callback, logger](
                                          const auto& slot, const std::string& payload) {
    auto ev = decode_member_event(payload);
    if (!ev) {
      logger->warn("skipping a malformed membership event");
      return;
    }
    if (auto events = weak.lock()) {
      events->dispatcher.post(slot, [callback, e = std::move(*ev)] { callback(e); });
    }
  });
}

}  // namespace fleet::internal

// ---- factories
// -----------------------------------------------------------------------------

namespace fleet {

absl::StatusOr<std::unique_ptr<Coordinator>> RedisCoordinator::connect(
    const RedisOptions& options) {
  FLEET_RETURN_IF_ERROR(internal::validate_options(options));
  auto endpoint = internal::resolve_endpoint(
      options.url, options.password, options.tls, options.sentinel_password,
      options.connect_timeout, options.namespace_name);
  if (!endpoint.ok()) return endpoint.status();
  if (!endpoint->uses_sentinel() && !endpoint->uses_cluster()) {
    // A redis:// URL may name one node of a Redis Cluster: then the
    // session talks to that node alone, but publishes and subscribes the
    // cluster's way (sharded), as sessions given redis+cluster:// do. A
    // failure here is the one the session's start would report.
    auto probe = internal::RedisConnection::open(
        *endpoint, {options.connect_timeout, options.command_timeout});
    if (!probe.ok()) return probe.status();
    {
      auto info = (*probe)->command({"INFO", "cluster"});
      if (info.ok() && info->str.find("cluster_enabled:1") != std::string::npos) {
        endpoint->cluster = true;
        internal::Logger(options.log_sink, options.log_level, "fleet.redis")
            .warn(
                "{} is a Redis Cluster node: this session uses it alone (sharded "
                "pub/sub; a MOVED reply is Unavailable); use redis+cluster:// to follow "
                "the namespace's slot",
                endpoint->redacted());
      }
    }
  }
  return internal::RedisSession::open(options, *std::move(endpoint));
}

absl::StatusOr<std::unique_ptr<Coordinator>> create_coordinator(
    const RedisOptions& options) {
  auto redis = RedisCoordinator::connect(options);
  if (redis.ok() || !options.fallback_to_local ||
      redis.status().code() != absl::StatusCode::kUnavailable) {
    return redis;
  }
  internal::Logger logger(options.log_sink, options.log_level, "fleet");
  logger.warn(
      "Redis is unreachable ({}); falling back to the in-process backend: this instance "
      "now coordinates with nobody else",
      std::string(redis.status().message()));
  LocalOptions local;
  local.clock = options.clock;
  local.log_sink = options.log_sink;
  local.log_level = options.log_level;
  local.session_ttl = options.session_ttl;
  return LocalCoordinator::create(local);
}

}  // namespace fleet
