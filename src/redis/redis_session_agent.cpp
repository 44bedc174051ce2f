// RedisSession's agent: on a connection of its own it heartbeats, sweeps
// expired sessions, drives the connection state, and after any fault makes
// Redis hold this session's record again (re-join, then sync.lua: see
// ledger.hpp).
#include <algorithm>

#include "fmt/format.h"
#include "internal/validate.hpp"
#include "redis/codec.hpp"
#include "redis/redis_session.hpp"
#include "redis/sigpipe.hpp"

namespace fleet::internal {

// ---- the agent: heartbeat, connection state, recovery -----------------------------

absl::StatusOr<RedisSession::Heartbeat> RedisSession::heartbeat() {
  const std::string ttl = std::to_string(options_.session_ttl.count());
  const std::string grace = std::to_string(grace_.count());
  const std::string fresh = random_session_id();
  std::string known;
  {
    MutexLock lock(incarnation_mu_);
    known = incarnation_;
  }
  auto r =
      agent_run(Script::kHeartbeat,
                {keys_.sessions, keys_.heartbeats, keys_.views_gen, keys_.incarnation},
                {sid_, ttl, known, fresh, grace});
  if (!r.ok()) return r.status();
  const auto& e = r->elements;
  if (r->type != Reply::Type::kArray || e.size() != 3) {
    return absl::InternalError("heartbeat: unexpected reply from Redis");
  }
  note_incarnation(e[1].str);
  if (e[2].integer > 0) {
    const auto until = clock_->now() + std::chrono::milliseconds(e[2].integer);
    no_grants_until_.store(until.time_since_epoch().count());
  }
  return Heartbeat{e[0].integer == 1};
}

void RedisSession::refresh_replicas() {
  if (options_.replica_acks || role_refused_ || pool_.endpoint().directory) return;
  auto role = agent_command({"ROLE"});
  if (!role.ok()) return;
  if (role->is_error()) {
    role_refused_ = true;
    logger_.warn(
        "session {}: Redis refused ROLE ({}); no replica acknowledgements are asked "
        "for unless RedisOptions::replica_acks is set",
        sid_, role->str);
    replicas_seen_.store(0);
    return;
  }
  // master: ["master", offset, [[ip, port, offset], ...]]
  int n = 0;
  if (role->type == Reply::Type::kArray && role->elements.size() >= 3 &&
      role->elements[0].str == "master") {
    n = static_cast<int>(role->elements[2].elements.size());
  }
  const int before = replicas_seen_.exchange(n);
  if ((before > 0) != (n > 0)) {
    logger_.info(
        "session {}: the master has {} connected replica(s): lock grants, renewals and "
        "claims {} wait for one to confirm",
        sid_, n, n > 0 ? "now" : "no longer");
  }
}

void RedisSession::wake_agent() {
  {
    MutexLock lock(agent_mu_);
    agent_wanted_ = true;
  }
  agent_cv_.notify_all();
}

void RedisSession::set_state_locked(ConnectionState state) {
  if (state_ == state) return;
  state_ = state;
  state_now_.store(state);
  logger_.log(
      state == ConnectionState::kConnected || state == ConnectionState::kReconnected
          ? LogLevel::kInfo
          : LogLevel::kWarning,
      "session {}: connection state {}", sid_, to_string(state));
  MutexLock lock(events_->watchers_mu);
  for (auto& [slot, cb] : events_->state_watchers) {
    events_->dispatcher.post(slot, [cb = cb, state] { cb(state); });
  }
}

// One tick per heartbeat interval, and at once when a sync is wanted (a
// write came back stale, or its outcome is unknown).
void RedisSession::agent_loop() {
  block_sigpipe_for_this_thread();  // redis/sigpipe.hpp
  Clock::TimePoint next = clock_->now() + options_.heartbeat_interval;
  bool failing = false;
  for (;;) {
    {
      MutexLock lock(agent_mu_);
      while (!stop_ && !agent_wanted_ && clock_->now() < next) {
        clock_->wait_until(lock.native(), agent_cv_, next);
      }
      if (stop_) return;
      agent_wanted_ = false;
    }
    next = agent_tick(&failing);
  }
}

// While Redis is unreachable: SUSPENDED at the first failed heartbeat, LOST
// once a whole session TTL has passed without one. When a heartbeat gets
// through again: the other connections retry at once; if the session had
// expired (or Redis lost it) LOST, then re-join; sync the record if it may
// differ from Redis; RECONNECTED once that is done and pub/sub has
// resubscribed.
Clock::TimePoint RedisSession::agent_tick(bool* failing) {
  auto hb = heartbeat();
  if (hb.ok()) refresh_replicas();
  MutexLock lock(state_mu_);
  const auto now = clock_->now();
  const auto soon = now + options_.reconnect_backoff_min;
  if (!hb.ok()) {
    *failing = true;
    pubsub_suspended_ = false;  // a real suspension: recovered the full way
    if (state_ == ConnectionState::kConnected ||
        state_ == ConnectionState::kReconnected) {
      set_state_locked(ConnectionState::kSuspended);
    }
    if (state_ == ConnectionState::kSuspended &&
        now - last_heartbeat_ok_ >= options_.session_ttl) {
      set_state_locked(ConnectionState::kLost);
    }
    return soon;
  }
  last_heartbeat_ok_ = now;
  if (*failing) {
    *failing = false;
    pool_.retry_now();
    {
      MutexLock lane_lock(lane_mu_);
      if (lane_) lane_->retry_now();
    }
    events_->subscriber.retry_now();
  }
  const bool recovering = (state_ == ConnectionState::kSuspended && !pubsub_suspended_) ||
                          state_ == ConnectionState::kLost;
  if (!hb->was_alive) {
    // Others saw this session die (or Redis lost it): report LOST before
    // anything else, then re-establish it.
    set_state_locked(ConnectionState::kLost);
    ledger_.want_sync();
  }
  if ((!hb->was_alive || recovering) && joined_) {
    absl::Status st =
        join_locked(*joined_, [this](const Argv& argv) { return agent_command(argv); });
    if (!st.ok()) {
      logger_.warn("session {}: re-joining as '{}' failed: {}", sid_, joined_->id,
                   std::string(st.message()));
    }
  }
  if (ledger_.sync_wanted() && !sync_locked()) return soon;
  if (!hb->was_alive || recovering) {
    if (!events_->subscriber.healthy()) return soon;  // wait for pub/sub to resubscribe
    // A pub/sub drop of the same fault is covered by this RECONNECTED.
    seen_pubsub_drops_ = events_->subscriber.drops();
    set_state_locked(ConnectionState::kReconnected);
  }
  // Only the pub/sub connection dropped: messages and watch events were
  // missed. SUSPENDED until it has resubscribed, then RECONNECTED, so that
  // whoever caches what the events tell re-reads it.
  const std::uint64_t drops = events_->subscriber.drops();
  if (drops != seen_pubsub_drops_) {
    if (state_ == ConnectionState::kConnected ||
        state_ == ConnectionState::kReconnected) {
      set_state_locked(ConnectionState::kSuspended);
      pubsub_suspended_ = true;
    }
    if (!events_->subscriber.healthy()) return soon;
    seen_pubsub_drops_ = drops;
    if (pubsub_suspended_ && state_ == ConnectionState::kSuspended) {
      set_state_locked(ConnectionState::kReconnected);
    }
    pubsub_suspended_ = false;
  }
  lock.unlock();
  sweep();
  return clock_->now() + options_.heartbeat_interval;
}

bool RedisSession::sync_locked() {
  SessionLedger::Snapshot snap = ledger_.begin_sync();
  const std::string epoch = std::to_string(snap.epoch);
  const std::string member = joined_ ? joined_->id : std::string();
  std::deque<std::string> numbers;  // owns the texts args points into (stable)
  Argv args = {keys_.prefix, sid_, epoch, member, keys_.member_channel};
  numbers.push_back(std::to_string(snap.record.views.size()));
  args.push_back(numbers.back());
  for (const auto& [node, view] : snap.record.views) {
    args.push_back(node);
    args.push_back(view);
  }
  numbers.push_back(std::to_string(snap.record.owned.size()));
  args.push_back(numbers.back());
  for (const auto& [name, value] : snap.record.owned) {
    args.push_back(name);
    numbers.push_back(std::to_string(value));
    args.push_back(numbers.back());
  }
  std::size_t holdings = 0;
  for (const auto& [pool, targets] : snap.record.slots) holdings += targets.size();
  numbers.push_back(std::to_string(holdings));
  args.push_back(numbers.back());
  for (const auto& [pool, targets] : snap.record.slots) {
    for (const auto& [target, n] : targets) {
      args.push_back(pool);
      args.push_back(target);
      numbers.push_back(std::to_string(n));
      args.push_back(numbers.back());
    }
  }
  auto r = agent_run(Script::kSync,
                     {keys_.sessions, keys_.epochs, keys_.node_index, keys_.owned_index,
                      keys_.views_gen, keys_.members, keys_.member_session,
                      keys_.session_member, keys_.session_slots(sid_)},
                     args);
  const bool ok = r.ok() && r->type == Reply::Type::kArray && r->elements.size() == 5 &&
                  r->elements[0].integer == 1;
  ledger_.end_sync(ok);
  if (!ok) {
    // Unreachable again, or expired in between: the next tick retries. Any
    // other error (malformed data in our keys) is worth a warning.
    const bool transient = r.ok() || outcome_unknown(r.status());
    logger_.log(transient ? LogLevel::kDebug : LogLevel::kWarning,
                "session {}: could not set Redis back to this session's record: {}", sid_,
                r.ok() ? std::string("session not alive") : r.status().ToString());
    return false;
  }
  const auto& e = r->elements;
  if (e[1].integer + e[2].integer + e[3].integer + e[4].integer > 0) {
    logger_.info(
        "session {}: Redis set back to what this session holds: {} membership dropped, "
        "{} node views, {} owned contributions, {} slots",
        sid_, e[1].integer, e[2].integer, e[3].integer, e[4].integer);
  }
  return true;
}

void RedisSession::sweep() {
  auto swept =
      agent_run(Script::kSweep,
                {keys_.sessions, keys_.heartbeats, keys_.members, keys_.member_session,
                 keys_.session_member, keys_.node_index, keys_.owned_index, keys_.leases,
                 keys_.entry_ttl, keys_.map_revisions, keys_.views_gen, keys_.epochs},
                {keys_.prefix, keys_.member_channel, "100"});
  if (!swept.ok()) {
    logger_.log(LogLevel::kDebug, "sweep failed: {}",
                std::string(swept.status().message()));
  }
}

ConnectionState RedisSession::connection_state() const { return state_now_.load(); }

absl::StatusOr<Subscription> RedisSession::watch_connection(
    std::function<void(ConnectionState)> callback) {
  FLEET_RETURN_IF_ERROR(validate_callback(callback));
  std::function<void(const ConnectionState&)> cb = [callback](const ConnectionState& s) {
    callback(s);
  };
  auto slot = events_->dispatcher.new_slot();
  {
    // Under state_mu_: no state change can be posted before the current one.
    MutexLock lock(state_mu_);
    MutexLock wlock(events_->watchers_mu);
    events_->state_watchers.emplace_back(slot, cb);
    events_->dispatcher.post(slot, [cb, s = state_] { cb(s); });
  }
  std::weak_ptr<Events> weak = events_;
  return Subscription([weak, slot] {
    auto events = weak.lock();
    if (!events) return;
    events->dispatcher.cancel(slot);
    MutexLock lock(events->watchers_mu);
    auto& w = events->state_watchers;
    w.erase(std::remove_if(w.begin(), w.end(),
                           [&](const auto& e) { return e.first == slot; }),
            w.end());
  });
}

}  // namespace fleet::internal
