// RedisSession: construction, heartbeat and connection state, membership,
// node state and counters; the factory functions of redis_coordinator.hpp.
#include "redis/redis_session.hpp"

#include <algorithm>
#include <cstdlib>
#include <random>

#include "fleet/local_coordinator.hpp"
#include "fleet/names.hpp"
#include "fmt/format.h"
#include "internal/slots.hpp"
#include "internal/validate.hpp"
#include "redis/codec.hpp"

namespace fleet::internal {
namespace {

std::string random_session_id() {
  std::random_device rd;
  std::uniform_int_distribution<unsigned long long> dist;
  const unsigned long long hi = dist(rd), lo = dist(rd);
  return fmt::format("r-{:016x}{:016x}", hi, lo);
}

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
                         std::pair{"reconnect_backoff_max", o.reconnect_backoff_max}}) {
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
  if (o.pool_size < 1 || o.pool_size > 64) {
    return absl::InvalidArgumentError(
        fmt::format("RedisOptions::pool_size must be 1 to 64 (got {})", o.pool_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisEndpoint> resolve_endpoint(const RedisOptions& o) {
  auto ep = parse_redis_url(o.url);
  if (!ep.ok()) return ep.status();
  resolve_password(&*ep, o.password);
  return ep;
}

}  // namespace

// ---- lifecycle ------------------------------------------------------------------

RedisSession::RedisSession(const RedisOptions& options, RedisEndpoint endpoint)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : real_clock()),
      logger_(options.log_sink, options.log_level, "fleet.redis"),
      keys_(options.namespace_name),
      sid_(random_session_id()),
      pool_(ConnectionPool::Options{endpoint,
                                    {options.connect_timeout, options.command_timeout},
                                    options.pool_size,
                                    options.reconnect_backoff_min,
                                    options.reconnect_backoff_max},
            clock_, &logger_),
      events_(std::make_shared<Events>(
          Subscriber::Options{endpoint,
                              {options.connect_timeout, options.command_timeout},
                              options.reconnect_backoff_min,
                              options.reconnect_backoff_max},
          clock_, &logger_, [this] { state_cv_.notify_all(); })) {}

absl::StatusOr<std::unique_ptr<Coordinator>> RedisSession::open(
    const RedisOptions& options, RedisEndpoint endpoint) {
  std::unique_ptr<RedisSession> s(new RedisSession(options, std::move(endpoint)));
  FLEET_RETURN_IF_ERROR(s->start());
  return std::unique_ptr<Coordinator>(std::move(s));
}

absl::Status RedisSession::start() {
  FLEET_RETURN_IF_ERROR(
      pool_.with_connection([&](RedisConnection& c) { return scripts_.load(c); }));
  FLEET_RETURN_IF_ERROR(events_->subscriber.start());
  auto hb = heartbeat();
  if (!hb.ok()) return hb.status();
  last_heartbeat_ok_ = clock_->now();
  heartbeat_thread_ = std::thread([this] { heartbeat_loop(); });
  logger_.log(LogLevel::kDebug, "session {} started on {}", sid_,
              pool_.endpoint().redacted());
  return absl::OkStatus();
}

RedisSession::~RedisSession() {
  {
    std::lock_guard<std::mutex> lock(lane_mu_);
    lane_.reset();  // pending decisions get Cancelled
  }
  {
    std::lock_guard<std::mutex> lock(state_mu_);
    stop_ = true;
  }
  state_cv_.notify_all();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  decltype(Events::state_watchers) watchers;
  {
    std::lock_guard<std::mutex> lock(events_->watchers_mu);
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
}

absl::StatusOr<Reply> RedisSession::run(Script script, const Argv& keys,
                                        const Argv& args) {
  return scripts_.run([this](const Argv& argv) { return pool_.command(argv); }, script,
                      keys, args);
}

absl::StatusOr<Reply> RedisSession::command(const Argv& argv) {
  auto reply = pool_.command(argv);
  if (reply.ok() && reply->is_error()) return status_from_error(reply->str);
  return reply;
}

// ---- heartbeat and connection state -------------------------------------------------

absl::StatusOr<bool> RedisSession::heartbeat() {
  const std::string ttl = std::to_string(options_.session_ttl.count());
  auto r = run(Script::kHeartbeat, {keys_.sessions, keys_.heartbeats, keys_.views_gen},
               {sid_, ttl});
  if (!r.ok()) return r.status();
  return r->integer == 1;
}

void RedisSession::set_state_locked(ConnectionState state) {
  if (state == state_) return;
  state_ = state;
  logger_.log(
      state == ConnectionState::kConnected || state == ConnectionState::kReconnected
          ? LogLevel::kInfo
          : LogLevel::kWarning,
      "session {}: connection state {}", sid_, to_string(state));
  std::lock_guard<std::mutex> lock(events_->watchers_mu);
  for (auto& [slot, cb] : events_->state_watchers) {
    events_->dispatcher.post(slot, [cb = cb, state] { cb(state); });
  }
}

// One heartbeat (and one sweep) per interval. While Redis is unreachable:
// SUSPENDED at the first failure, LOST once a whole session TTL has passed
// without a successful heartbeat (our membership and owned state have
// expired: modules must drop what they own), then on recovery — once the
// pub/sub connection has resubscribed too — RECONNECTED, with membership
// re-established.
void RedisSession::heartbeat_loop() {
  const std::string limit = "100";
  std::unique_lock<std::mutex> lock(state_mu_);
  Clock::TimePoint next = clock_->now() + options_.heartbeat_interval;
  while (!stop_) {
    if (clock_->now() < next) {
      clock_->wait_until(lock, state_cv_, next);
      continue;
    }
    lock.unlock();
    auto hb = heartbeat();
    lock.lock();
    if (stop_) break;
    const auto now = clock_->now();
    if (!hb.ok()) {
      if (state_ == ConnectionState::kConnected ||
          state_ == ConnectionState::kReconnected) {
        set_state_locked(ConnectionState::kSuspended);
      }
      if (state_ == ConnectionState::kSuspended &&
          now - last_heartbeat_ok_ >= options_.session_ttl) {
        set_state_locked(ConnectionState::kLost);
      }
      next = now + options_.reconnect_backoff_min;
      continue;
    }
    last_heartbeat_ok_ = now;
    const bool recovering =
        state_ == ConnectionState::kSuspended || state_ == ConnectionState::kLost;
    if (!*hb || recovering) {
      // The session had expired (or Redis lost it in a restart): others
      // saw us die. Report LOST before anything else, then rejoin.
      if (!*hb) set_state_locked(ConnectionState::kLost);
      if (joined_) {
        absl::Status st = join_locked(*joined_);
        if (!st.ok())
          logger_.warn("session {}: re-joining failed: {}", sid_,
                       std::string(st.message()));
      }
      if (!events_->subscriber.healthy()) {
        next = now + options_.reconnect_backoff_min;  // wait for pub/sub to resubscribe
        continue;
      }
      set_state_locked(ConnectionState::kReconnected);
    }
    lock.unlock();
    auto swept =
        run(Script::kSweep,
            {keys_.sessions, keys_.heartbeats, keys_.members, keys_.member_session,
             keys_.session_member, keys_.node_index, keys_.owned_index, keys_.leases,
             keys_.entry_ttl, keys_.map_revisions, keys_.views_gen},
            {keys_.prefix, keys_.member_channel, limit});
    lock.lock();
    if (!swept.ok()) {
      logger_.log(LogLevel::kDebug, "sweep failed: {}",
                  std::string(swept.status().message()));
    }
    next = clock_->now() + options_.heartbeat_interval;
  }
}

ConnectionState RedisSession::connection_state() const {
  std::lock_guard<std::mutex> lock(state_mu_);
  return state_;
}

absl::StatusOr<Subscription> RedisSession::watch_connection(
    std::function<void(ConnectionState)> callback) {
  FLEET_RETURN_IF_ERROR(validate_callback(callback));
  std::function<void(const ConnectionState&)> cb = [callback](const ConnectionState& s) {
    callback(s);
  };
  auto slot = events_->dispatcher.new_slot();
  {
    // Under state_mu_: no state change can be posted before the current one.
    std::lock_guard<std::mutex> lock(state_mu_);
    std::lock_guard<std::mutex> wlock(events_->watchers_mu);
    events_->state_watchers.emplace_back(slot, cb);
    events_->dispatcher.post(slot, [cb, s = state_] { cb(s); });
  }
  std::weak_ptr<Events> weak = events_;
  return Subscription([weak, slot] {
    auto events = weak.lock();
    if (!events) return;
    events->dispatcher.cancel(slot);
    std::lock_guard<std::mutex> lock(events->watchers_mu);
    auto& w = events->state_watchers;
    w.erase(std::remove_if(w.begin(), w.end(),
                           [&](const auto& e) { return e.first == slot; }),
            w.end());
  });
}

// ---- membership -------------------------------------------------------------------

absl::Status RedisSession::join_locked(const InstanceInfo& info) {
  const std::string record = encode_member(info, sid_);
  const std::string ttl = std::to_string(options_.session_ttl.count());
  auto r = run(Script::kJoin,
               {keys_.sessions, keys_.heartbeats, keys_.members, keys_.member_session,
                keys_.session_member, keys_.views_gen},
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
  std::lock_guard<std::mutex> lock(state_mu_);
  if (stamped.started_at == Clock::WallTime{}) {
    stamped.started_at =
        joined_ && joined_->id == info.id ? joined_->started_at : clock_->wall_now();
  }
  FLEET_RETURN_IF_ERROR(join_locked(stamped));
  joined_ = stamped;
  return absl::OkStatus();
}

absl::Status RedisSession::leave() {
  std::lock_guard<std::mutex> lock(state_mu_);
  auto r = run(Script::kLeave,
               {keys_.members, keys_.member_session, keys_.session_member,
                keys_.node_index, keys_.owned_index, keys_.views_gen},
               {keys_.prefix, sid_, keys_.member_channel});
  if (!r.ok()) return r.status();
  joined_.reset();
  return absl::OkStatus();
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
    if (!m || !parse_i64(r->elements[i + 1].str, &hb)) {
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

// ---- node state
// ------------------------------------------------------------------------

absl::Status RedisSession::publish_node_state(
    std::string_view node_id, const std::map<std::string, double>& metrics) {
  FLEET_RETURN_IF_ERROR(validate_name("node id", node_id));
  FLEET_RETURN_IF_ERROR(validate_metrics(metrics));
  const std::string encoded = encode_metrics(metrics);
  FLEET_RETURN_IF_ERROR(validate_value("node state", encoded));
  auto r =
      run(Script::kNodeState, {keys_.node(node_id), keys_.node_index, keys_.views_gen},
          {sid_, node_id, encoded, "1"});
  return r.status();
}

absl::Status RedisSession::remove_node_state(std::string_view node_id) {
  FLEET_RETURN_IF_ERROR(validate_name("node id", node_id));
  auto r =
      run(Script::kNodeState, {keys_.node(node_id), keys_.node_index, keys_.views_gen},
          {sid_, node_id, "", "0"});
  return r.status();
}

namespace {

// Parses aggregate.lua's payload: "<skipped>\n" then one line per node,
// "<node>\t<reporters>(\t<metric>\t<value>\t<count>)*".
bool parse_aggregates(std::string_view payload, std::int64_t* skipped,
                      std::vector<NodeAggregate>* out) {
  auto nl = payload.find('\n');
  if (nl == std::string_view::npos || !parse_i64(payload.substr(0, nl), skipped))
    return false;
  payload.remove_prefix(nl + 1);
  while (!payload.empty()) {
    nl = payload.find('\n');
    std::string_view line = payload.substr(0, nl);
    payload.remove_prefix(nl == std::string_view::npos ? payload.size() : nl + 1);
    std::vector<std::string_view> f;
    for (std::size_t pos = 0;;) {
      const auto tab = line.find('\t', pos);
      f.push_back(line.substr(pos, tab == std::string_view::npos ? tab : tab - pos));
      if (tab == std::string_view::npos) break;
      pos = tab + 1;
    }
    std::uint64_t reporters = 0;
    if (f.size() < 2 || (f.size() - 2) % 3 != 0 || !parse_u64(f[1], &reporters))
      return false;
    NodeAggregate agg;
    agg.node_id = std::string(f[0]);
    agg.reporters = static_cast<std::uint32_t>(reporters);
    for (std::size_t i = 2; i < f.size(); i += 3) {
      AggregatedMetric m;
      std::uint64_t count = 0;
      const std::string text(f[i + 1]);
      char* end = nullptr;
      m.value = std::strtod(text.c_str(), &end);
      if (end != text.c_str() + text.size() || !parse_u64(f[i + 2], &count)) return false;
      m.reporters = static_cast<std::uint32_t>(count);
      agg.metrics.emplace(std::string(f[i]), m);
    }
    out->push_back(std::move(agg));
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<NodeAggregate>> RedisSession::run_aggregate(
    std::string_view node_id, const AggregationSpec& spec) {
  const std::string ops = encode_ops(spec);
  const std::string_view default_op = to_string(spec.default_aggregation);
  const std::string cache_key = std::string(default_op) + "\n" + ops;
  std::string stamp;
  if (node_id.empty()) {
    std::lock_guard<std::mutex> lock(aggregate_mu_);
    if (auto it = aggregates_.find(cache_key); it != aggregates_.end())
      stamp = it->second.first;
  }
  auto r = run(Script::kAggregate,
               {keys_.sessions, keys_.node_index, keys_.views_gen, keys_.aggregate_cache},
               {keys_.prefix, ops, default_op, node_id, stamp});
  if (!r.ok()) return r.status();
  if (r->str == "=") {
    std::lock_guard<std::mutex> lock(aggregate_mu_);
    if (auto it = aggregates_.find(cache_key); it != aggregates_.end())
      return it->second.second;
    return absl::InternalError("aggregate: Redis confirmed a result this session lacks");
  }
  // "<gen>\n<valid until>\n<payload>"
  const std::string_view reply = r->str;
  const auto a = reply.find('\n');
  const auto b = a == std::string_view::npos ? a : reply.find('\n', a + 1);
  std::int64_t skipped = 0;
  std::vector<NodeAggregate> out;
  if (b == std::string_view::npos ||
      !parse_aggregates(reply.substr(b + 1), &skipped, &out)) {
    return absl::InternalError("aggregate: unexpected reply from Redis");
  }
  if (skipped > 0)
    logger_.warn("aggregate: skipped {} malformed node views or values", skipped);
  std::sort(out.begin(), out.end(),
            [](const auto& x, const auto& y) { return x.node_id < y.node_id; });
  if (node_id.empty()) {
    std::lock_guard<std::mutex> lock(aggregate_mu_);
    if (aggregates_.size() >= 16) aggregates_.clear();  // a few specs in practice
    aggregates_[cache_key] = {std::string(reply.substr(0, b)), out};
  }
  return out;
}

absl::StatusOr<std::vector<NodeAggregate>> RedisSession::aggregate_all(
    const AggregationSpec& spec) {
  FLEET_RETURN_IF_ERROR(validate_spec(spec));
  return run_aggregate("", spec);
}

absl::StatusOr<std::optional<NodeAggregate>> RedisSession::aggregate(
    std::string_view node_id, const AggregationSpec& spec) {
  FLEET_RETURN_IF_ERROR(validate_name("node id", node_id));
  FLEET_RETURN_IF_ERROR(validate_spec(spec));
  auto one = run_aggregate(node_id, spec);
  if (!one.ok()) return one.status();
  if (one->empty()) return std::optional<NodeAggregate>();
  return std::optional<NodeAggregate>(std::move(one->front()));
}

// ---- counters
// -------------------------------------------------------------------------------

absl::StatusOr<std::int64_t> RedisSession::counter_add(std::string_view name,
                                                       std::int64_t delta) {
  FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
  const std::string d = std::to_string(delta);
  auto r = command({"HINCRBY", keys_.counters, name, d});
  if (!r.ok()) return r.status();
  return static_cast<std::int64_t>(r->integer);
}

absl::StatusOr<std::int64_t> RedisSession::counter_get(std::string_view name) {
  FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
  auto r = command({"HGET", keys_.counters, name});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return 0;
  std::int64_t v = 0;
  if (!parse_i64(r->str, &v)) {
    return absl::DataLossError(
        fmt::format("counter '{}' holds a malformed value in {}", name, keys_.counters));
  }
  return v;
}

absl::StatusOr<std::int64_t> RedisSession::owned_counter_add(std::string_view name,
                                                             std::int64_t delta) {
  FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
  const std::string d = std::to_string(delta);
  auto r = run(Script::kOwnedCounter,
               {keys_.owned(name), keys_.owned_index, keys_.sessions}, {sid_, name, d});
  if (!r.ok()) return r.status();
  return static_cast<std::int64_t>(r->integer);
}

absl::StatusOr<std::int64_t> RedisSession::owned_counter_get(std::string_view name) {
  FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
  auto r = run(Script::kOwnedCounter,
               {keys_.owned(name), keys_.owned_index, keys_.sessions}, {sid_, name, ""});
  if (!r.ok()) return r.status();
  return static_cast<std::int64_t>(r->integer);
}

// ---- slot pools ----------------------------------------------------------------

absl::StatusOr<std::shared_ptr<const SlotCall>> RedisSession::slot_call(
    std::string_view pool, const SlotRequest& request) {
  {
    std::lock_guard<std::mutex> lock(calls_mu_);
    auto it = calls_.find(pool);
    if (it != calls_.end() && it->second->matches(pool, request)) return it->second;
  }
  FLEET_RETURN_IF_ERROR(validate_slot_request(pool, request));
  auto call = std::make_shared<const SlotCall>(keys_.slots(pool),
                                               keys_.session_slots(sid_), pool, request);
  std::lock_guard<std::mutex> lock(calls_mu_);
  if (calls_.size() >= 64) calls_.clear();  // a few pools in practice
  calls_.insert_or_assign(std::string(pool), call);
  return call;
}

absl::StatusOr<std::optional<SlotGrant>> RedisSession::acquire_slot(
    std::string_view pool, const SlotRequest& request) {
  auto call = slot_call(pool, request);
  if (!call.ok()) return call.status();
  std::string rotate;
  append_double(request.rotate, &rotate);
  const SlotCall& c = **call;
  return std::move(
      decode_slot_reply(
          c, 1, run(Script::kSlotAcquire, c.keys(keys_.sessions), c.args(sid_, rotate)))
          .front());
}

absl::Status RedisSession::acquire_slot_async(std::string_view pool,
                                              const SlotRequest& request,
                                              SlotCallback done) {
  if (!done) return absl::InvalidArgumentError("acquire_slot_async needs a callback");
  // One router's requests between two changes of its view are the same
  // call: found in calls_, checked once, encoded once, merged by pointer.
  auto call = slot_call(pool, request);
  if (!call.ok()) {
    done(call.status());
    return absl::OkStatus();
  }
  slot_lane().submit(*std::move(call), request.rotate, std::move(done));
  return absl::OkStatus();
}

SlotLane& RedisSession::slot_lane() {
  std::lock_guard<std::mutex> lock(lane_mu_);
  if (!lane_) {
    const Script script = Script::kSlotAcquire;
    lane_ = std::make_unique<SlotLane>(
        SlotLane::Options{pool_.endpoint(),
                          {options_.connect_timeout, options_.command_timeout},
                          options_.reconnect_backoff_min,
                          options_.reconnect_backoff_max,
                          keys_.sessions,
                          sid_,
                          scripts_.sha(script),
                          scripts_.body(script)},
        clock_, &logger_);
  }
  return *lane_;
}

absl::Status RedisSession::release_slot(std::string_view pool, std::string_view target) {
  FLEET_RETURN_IF_ERROR(validate_name("pool name", pool));
  FLEET_RETURN_IF_ERROR(validate_name("slot target", target));
  auto r = run(Script::kSlotRelease, {keys_.slots(pool), keys_.session_slots(sid_)},
               {pool, target});
  if (!r.ok()) return r.status();
  if (r->integer == 1) return absl::OkStatus();
  return absl::FailedPreconditionError(
      fmt::format("this session holds no slot on '{}' in pool '{}'", target, pool));
}

absl::StatusOr<std::map<std::string, std::int64_t>> RedisSession::slot_usage(
    std::string_view pool) {
  FLEET_RETURN_IF_ERROR(validate_name("pool name", pool));
  const std::string key = keys_.slots(pool);
  auto r = command({"HGETALL", key});
  if (!r.ok()) return r.status();
  std::map<std::string, std::int64_t> out;
  for (std::size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    std::int64_t n = 0;
    if (!parse_i64(r->elements[i + 1].str, &n)) {
      logger_.log(LogLevel::kWarning, "skipping malformed slot count of '{}' in {}",
                  r->elements[i].str, key);
      continue;
    }
    if (n > 0) out[r->elements[i].str] = n;
  }
  return out;
}

}  // namespace fleet::internal

// ---- factories
// -----------------------------------------------------------------------------

namespace fleet {

absl::StatusOr<std::unique_ptr<Coordinator>> RedisCoordinator::connect(
    const RedisOptions& options) {
  FLEET_RETURN_IF_ERROR(internal::validate_options(options));
  auto endpoint = internal::resolve_endpoint(options);
  if (!endpoint.ok()) return endpoint.status();
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
