// LocalStoreImpl: sessions, expiry, subscriptions, membership, node state and
// counters. Locks, maps and messaging are in local_store_ops.cpp.
#include "local/local_store.hpp"

#include <algorithm>
#include <limits>

#include "fmt/format.h"
#include "internal/slots.hpp"
#include "internal/validate.hpp"

namespace fleet::internal {

LocalStoreImpl::LocalStoreImpl(const LocalOptions& options)
    : clock_(options.clock != nullptr ? options.clock : real_clock()),
      logger_(options.log_sink, options.log_level, "fleet.local"),
      session_ttl_(options.session_ttl) {
  sweeper_ = std::thread([this] { sweep_loop(); });
}

LocalStoreImpl::~LocalStoreImpl() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  sweep_cv_.notify_all();
  lock_cv_.notify_all();
  sweeper_.join();
}

// ---- expiry -------------------------------------------------------------------

void LocalStoreImpl::sweep_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    expire_due_locked();
    // With nothing scheduled, still wake now and then: harmless, and it keeps
    // the deadline far from the clock's overflow.
    TimePoint next = clock_->now() + std::chrono::hours(1);
    if (!expiries_.empty()) next = std::min(next, expiries_.top().at);
    clock_->wait_until(lock, sweep_cv_, next);
  }
}

void LocalStoreImpl::schedule_locked(Expiry e) {
  const bool earliest = expiries_.empty() || e.at < expiries_.top().at;
  expiries_.push(std::move(e));
  if (earliest) sweep_cv_.notify_all();
}

// Entries in expiries_ are hints: each is checked against the live state, so
// a renewal or delete simply leaves a stale hint behind to be skipped.
void LocalStoreImpl::expire_due_locked() {
  const TimePoint now = clock_->now();
  while (!expiries_.empty() && expiries_.top().at <= now) {
    Expiry e = expiries_.top();
    expiries_.pop();
    switch (e.kind) {
      case ExpiryKind::kSession: {
        auto it = sessions_.find(e.a);
        if (it == sessions_.end()) break;
        Session& s = it->second;
        if (s.open) {
          // A session cut off for a whole TTL: others see it expire.
          if (s.reachable || s.dropped || s.cut_expires_at > now) break;
          remove_member_locked(e.a, MemberEventType::kExpired);
          drop_session_state_locked(e.a);
          s.dropped = true;
          set_state_locked(e.a, ConnectionState::kLost);
          break;
        }
        if (s.expires_at > now) break;
        remove_member_locked(e.a, MemberEventType::kExpired);
        drop_session_state_locked(e.a);
        sessions_.erase(it);
        break;
      }
      case ExpiryKind::kLock: {
        auto it = locks_.find({e.lease_kind, e.a});
        if (it == locks_.end() || !it->second.held || it->second.expires_at > now) break;
        it->second.held = false;
        lock_cv_.notify_all();
        if (e.lease_kind == LeaseKind::kLeadership) emit_leader_locked(e.a);
        break;
      }
      case ExpiryKind::kEntry: {
        auto m = maps_.find(e.a);
        if (m == maps_.end()) break;
        auto it = m->second.entries.find(e.b);
        if (it == m->second.entries.end() || !it->second.expires_at ||
            *it->second.expires_at > now) {
          break;
        }
        m->second.entries.erase(it);
        emit_watch_locked(
            WatchEvent{WatchEventType::kExpired, e.a, e.b, {}, ++m->second.revision});
        break;
      }
    }
  }
}

// ---- sessions and subscriptions ---------------------------------------------------

std::string LocalStoreImpl::open_session() {
  std::lock_guard<std::mutex> lock(mu_);
  // Unique within the store; the counter makes ids readable in fleetctl-like
  // dumps and in test failures.
  std::string sid = fmt::format("local-{}", next_session_++);
  sessions_.emplace(sid, Session{});
  return sid;
}

void LocalStoreImpl::close_session(const std::string& sid) {
  std::vector<std::shared_ptr<Dispatcher::Slot>> slots;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(sid);
    if (it == sessions_.end()) return;
    Session& s = it->second;
    for (auto& [weak, detach] : s.slots) {
      if (auto slot = weak.lock()) {
        detach(slot);
        slots.push_back(std::move(slot));
      }
    }
    s.slots.clear();
    s.open = false;
    s.expires_at = clock_->now() + session_ttl_;
    s.closed_wall = clock_->wall_now();
    schedule_locked(
        Expiry{s.expires_at, ExpiryKind::kSession, LeaseKind::kLock, sid, {}});
  }
  // A destroyed session delivers nothing more; waits out a running callback.
  for (auto& slot : slots) dispatcher_.cancel(slot);
}

// ---- membership ------------------------------------------------------------------

absl::Status LocalStoreImpl::join(const std::string& sid, const InstanceInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  Session& s = sessions_.at(sid);
  if (s.member && s.member->info.id != info.id) {
    return absl::FailedPreconditionError(
        fmt::format("this session already joined as '{}'; leave() before joining as '{}'",
                    s.member->info.id, info.id));
  }
  FLEET_RETURN_IF_ERROR(add_member_locked(sid, info));
  s.record.joined = s.member->info;
  return absl::OkStatus();
}

std::string LocalStoreImpl::instance_id(const std::string& sid) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(sid);
  if (it == sessions_.end() || !it->second.record.joined) return {};
  return it->second.record.joined->id;
}

absl::Status LocalStoreImpl::add_member_locked(const std::string& sid,
                                               const InstanceInfo& info) {
  Session& s = sessions_.at(sid);
  auto owner = member_index_.find(info.id);
  if (owner != member_index_.end() && owner->second != sid) {
    return absl::AlreadyExistsError(
        fmt::format("instance id '{}' is held by another live session", info.id));
  }
  const bool is_new = !s.member.has_value();
  Member m;
  m.info = info;
  if (m.info.started_at == Clock::WallTime{}) {
    m.info.started_at = is_new ? clock_->wall_now() : s.member->info.started_at;
  }
  m.session_id = sid;
  m.last_heartbeat = clock_->wall_now();
  s.member = m;
  member_index_[info.id] = sid;
  if (is_new) emit_locked(member_watchers_, MemberEvent{MemberEventType::kJoined, m});
  return absl::OkStatus();
}

void LocalStoreImpl::remove_member_locked(const std::string& sid, MemberEventType why) {
  Session& s = sessions_.at(sid);
  if (!s.member) return;
  Member m = std::move(*s.member);
  s.member.reset();
  member_index_.erase(m.info.id);
  if (!s.open || !s.reachable) m.last_heartbeat = s.closed_wall;
  emit_locked(member_watchers_, MemberEvent{why, std::move(m)});
}

void LocalStoreImpl::drop_session_state_locked(const std::string& sid) {
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    it->second.erase(sid);
    it = it->second.empty() ? nodes_.erase(it) : std::next(it);
  }
  for (auto it = owned_.begin(); it != owned_.end();) {
    it->second.erase(sid);
    it = it->second.empty() ? owned_.erase(it) : std::next(it);
  }
  for (auto pool = slots_.begin(); pool != slots_.end();) {
    auto& targets = pool->second;
    for (auto t = targets.begin(); t != targets.end();) {
      t->second.erase(sid);
      t = t->second.empty() ? targets.erase(t) : std::next(t);
    }
    pool = targets.empty() ? slots_.erase(pool) : std::next(pool);
  }
}

absl::Status LocalStoreImpl::leave(const std::string& sid) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  Session& s = sessions_.at(sid);
  s.record = Record{};
  if (!s.reachable) {
    return absl::UnavailableError(
        "this session is cut off from the store (LocalStore::set_reachable); it leaves "
        "when it is back");
  }
  remove_member_locked(sid, MemberEventType::kLeft);
  drop_session_state_locked(sid);
  return absl::OkStatus();
}

std::vector<Member> LocalStoreImpl::members() {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  std::vector<Member> out;
  out.reserve(member_index_.size());
  const auto wall = clock_->wall_now();
  for (const auto& [id, sid] : member_index_) {
    const Session& s = sessions_.at(sid);
    Member m = *s.member;
    // An open in-process session is alive by definition: it heartbeats now.
    m.last_heartbeat = s.open && s.reachable ? wall : s.closed_wall;
    out.push_back(std::move(m));
  }
  return out;
}

Subscription LocalStoreImpl::watch_members(const std::string& sid,
                                           std::function<void(const MemberEvent&)> cb) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  return add_subscriber_locked<MemberEvent>(sid, member_watchers_, std::move(cb), {},
                                            detach_from(&member_watchers_));
}

// ---- node state --------------------------------------------------------------------

namespace {

absl::Status cut_off_error() {
  return absl::UnavailableError(
      "this session is cut off from the store (LocalStore::set_reachable)");
}

}  // namespace

absl::Status LocalStoreImpl::publish_node_state(
    const std::string& sid, const std::string& node,
    const std::map<std::string, double>& metrics) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  Session& s = sessions_.at(sid);
  s.record.views[node] = metrics;
  if (!s.reachable) return cut_off_error();
  nodes_[node][sid] = metrics;
  return absl::OkStatus();
}

absl::Status LocalStoreImpl::remove_node_state(const std::string& sid,
                                               const std::string& node) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  Session& s = sessions_.at(sid);
  s.record.views.erase(node);
  if (!s.reachable) return cut_off_error();
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return absl::OkStatus();
  it->second.erase(sid);
  if (it->second.empty()) nodes_.erase(it);
  return absl::OkStatus();
}

namespace {

NodeAggregate combine(const std::string& node,
                      const std::map<std::string, std::map<std::string, double>>& views,
                      const AggregationSpec& spec) {
  NodeAggregate out;
  out.node_id = node;
  out.reporters = static_cast<std::uint32_t>(views.size());
  for (const auto& [sid, metrics] : views) {
    for (const auto& [name, value] : metrics) {
      auto op_it = spec.metrics.find(name);
      const Aggregation op =
          op_it == spec.metrics.end() ? spec.default_aggregation : op_it->second;
      AggregatedMetric& m = out.metrics[name];
      if (m.reporters == 0) {
        m.value = value;
      } else if (op == Aggregation::kMin) {
        m.value = std::min(m.value, value);
      } else if (op == Aggregation::kMax) {
        m.value = std::max(m.value, value);
      } else {
        m.value += value;  // kSum, and kAvg's running total
      }
      ++m.reporters;
    }
  }
  for (auto& [name, m] : out.metrics) {
    auto op_it = spec.metrics.find(name);
    const Aggregation op =
        op_it == spec.metrics.end() ? spec.default_aggregation : op_it->second;
    if (op == Aggregation::kAvg) m.value /= m.reporters;
  }
  return out;
}

}  // namespace

std::optional<NodeAggregate> LocalStoreImpl::aggregate(const std::string& node,
                                                       const AggregationSpec& spec) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return std::nullopt;
  return combine(node, it->second, spec);
}

std::vector<NodeAggregate> LocalStoreImpl::aggregate_all(const AggregationSpec& spec) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  std::vector<NodeAggregate> out;
  out.reserve(nodes_.size());
  for (const auto& [node, views] : nodes_) out.push_back(combine(node, views, spec));
  return out;
}

// ---- counters
// --------------------------------------------------------------------------

namespace {

absl::StatusOr<std::int64_t> checked_add(std::int64_t a, std::int64_t b,
                                         const std::string& name) {
  std::int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    return absl::OutOfRangeError(
        fmt::format("counter '{}': adding {} to {} would overflow", name, b, a));
  }
  return sum;
}

}  // namespace

absl::StatusOr<std::int64_t> LocalStoreImpl::counter_add(const std::string& name,
                                                         std::int64_t delta) {
  std::lock_guard<std::mutex> lock(mu_);
  std::int64_t& value = counters_[name];
  auto sum = checked_add(value, delta, name);
  if (sum.ok()) value = *sum;
  return sum;
}

std::int64_t LocalStoreImpl::counter_get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counters_.find(name);
  return it == counters_.end() ? 0 : it->second;
}

absl::StatusOr<std::int64_t> LocalStoreImpl::owned_counter_add(const std::string& sid,
                                                               const std::string& name,
                                                               std::int64_t delta) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  auto& per_session = owned_[name];
  std::int64_t total = 0;
  for (const auto& [s, v] : per_session) {
    auto t = checked_add(total, v, name);
    if (!t.ok()) return t;
    total = *t;
  }
  auto mine = checked_add(per_session[sid], delta, name);
  if (!mine.ok()) return mine.status();
  auto new_total = checked_add(total, delta, name);
  if (!new_total.ok()) return new_total.status();
  per_session[sid] = *mine;
  auto& recorded = sessions_.at(sid).record.owned;
  if (*mine == 0) {
    recorded.erase(name);
  } else {
    recorded[name] = *mine;
  }
  return *new_total;
}

std::int64_t LocalStoreImpl::owned_counter_get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  auto it = owned_.find(name);
  if (it == owned_.end()) return 0;
  std::int64_t total = 0;
  for (const auto& [s, v] : it->second) total += v;
  return total;
}

std::optional<SlotGrant> LocalStoreImpl::acquire_slot(const std::string& sid,
                                                      const std::string& pool,
                                                      const SlotRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  auto& targets = slots_[pool];
  auto used = [&](const std::string& target) -> std::int64_t {
    auto it = targets.find(target);
    if (it == targets.end()) return 0;
    std::int64_t total = 0;
    for (const auto& [s, n] : it->second) total += n;
    return total;
  };
  const auto chosen = choose_slot(request, used);
  if (!chosen) {
    if (targets.empty()) slots_.erase(pool);
    return std::nullopt;
  }
  const SlotCandidate& c = request.candidates[*chosen];
  SlotGrant grant;
  grant.target = c.target;
  grant.used = used(c.target) + 1;
  grant.capacity = c.capacity;
  ++targets[c.target][sid];
  ++sessions_.at(sid).record.slots[pool][c.target];
  return grant;
}

// The record decides: a slot it holds is released (in the store too unless
// the session is cut off, in which case the store follows at the heal).
absl::Status LocalStoreImpl::release_slot(const std::string& sid, const std::string& pool,
                                          const std::string& target) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  Session& s = sessions_.at(sid);
  auto rp = s.record.slots.find(pool);
  if (rp == s.record.slots.end() || rp->second.count(target) == 0) {
    return absl::FailedPreconditionError(
        fmt::format("this session holds no slot on '{}' in pool '{}'", target, pool));
  }
  if (--rp->second[target] == 0) rp->second.erase(target);
  if (rp->second.empty()) s.record.slots.erase(rp);
  if (!s.reachable) return absl::OkStatus();
  auto p = slots_.find(pool);
  if (p == slots_.end()) return absl::OkStatus();
  auto t = p->second.find(target);
  if (t == p->second.end()) return absl::OkStatus();
  auto mine = t->second.find(sid);
  if (mine == t->second.end()) return absl::OkStatus();
  if (--mine->second == 0) t->second.erase(mine);
  if (t->second.empty()) p->second.erase(t);
  if (p->second.empty()) slots_.erase(p);
  return absl::OkStatus();
}

std::map<std::string, std::int64_t> LocalStoreImpl::slot_usage(const std::string& pool) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  std::map<std::string, std::int64_t> out;
  auto p = slots_.find(pool);
  if (p == slots_.end()) return out;
  for (const auto& [target, holders] : p->second) {
    std::int64_t total = 0;
    for (const auto& [s, n] : holders) total += n;
    if (total > 0) out[target] = total;
  }
  return out;
}

}  // namespace fleet::internal
