// LocalStoreImpl: fault injection (set_reachable, lose_data) and how a
// session recovers from it — the same states and the same re-established
// record as a Redis session after a partition or a restart without
// persistence.
#include "fmt/format.h"
#include "local/local_store.hpp"

namespace fleet::internal {

absl::Status LocalStoreImpl::reachable(const std::string& sid) {
  std::lock_guard<std::mutex> lock(mu_);
  if (sessions_.at(sid).reachable) return absl::OkStatus();
  return absl::UnavailableError(
      "this session is cut off from the store (LocalStore::set_reachable)");
}

ConnectionState LocalStoreImpl::connection_state(const std::string& sid) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  return sessions_.at(sid).state;
}

std::uint64_t LocalStoreImpl::data_losses(const std::string& sid) {
  std::lock_guard<std::mutex> lock(mu_);
  return sessions_.at(sid).data_losses;
}

void LocalStoreImpl::set_state_locked(const std::string& sid, ConnectionState state) {
  Session& s = sessions_.at(sid);
  if (s.state == state) return;
  s.state = state;
  // Watchers of a cut session hear it too: the state is the client's own.
  auto it = connection_watchers_.find(sid);
  if (it == connection_watchers_.end()) return;
  for (const auto& sub : it->second) {
    dispatcher_.post(sub.slot, [cb = sub.callback, state] { cb(state); });
  }
}

absl::Status LocalStoreImpl::set_reachable(std::string_view session_id, bool reachable) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  const std::string sid(session_id);
  auto it = sessions_.find(sid);
  if (it == sessions_.end() || !it->second.open) {
    return absl::NotFoundError(fmt::format("no open session '{}' in this store", sid));
  }
  Session& s = it->second;
  if (s.reachable == reachable) return absl::OkStatus();
  if (!reachable) {
    s.reachable = false;
    s.closed_wall = clock_->wall_now();
    s.cut_expires_at = clock_->now() + session_ttl_;
    schedule_locked(
        Expiry{s.cut_expires_at, ExpiryKind::kSession, LeaseKind::kLock, sid, {}});
    set_state_locked(sid, ConnectionState::kSuspended);
    return absl::OkStatus();
  }
  s.reachable = true;
  if (s.missed_loss) {
    s.missed_loss = false;
    s.dropped = true;
    ++s.data_losses;
  }
  if (s.dropped) set_state_locked(sid, ConnectionState::kLost);
  apply_record_locked(sid);
  set_state_locked(sid, ConnectionState::kReconnected);
  return absl::OkStatus();
}

void LocalStoreImpl::lose_data() {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  for (auto& [sid, s] : sessions_) s.member.reset();
  member_index_.clear();
  nodes_.clear();
  counters_.clear();
  owned_.clear();
  slots_.clear();
  maps_.clear();
  for (auto& [key, l] : locks_) l.held = false;  // last_fence stays: tokens grow
  lock_cv_.notify_all();
  for (auto& [sid, s] : sessions_) {
    if (!s.open) continue;
    if (!s.reachable) {
      s.missed_loss = true;
      continue;
    }
    ++s.data_losses;
    set_state_locked(sid, ConnectionState::kLost);
    s.dropped = true;
    apply_record_locked(sid);
    set_state_locked(sid, ConnectionState::kReconnected);
  }
}

// The store's copy of the session's state becomes its record: what a Redis
// session's rejoin and sync.lua do.
void LocalStoreImpl::apply_record_locked(const std::string& sid) {
  Session& s = sessions_.at(sid);
  s.dropped = false;
  const Record& r = s.record;
  if (r.joined && !s.member) {
    absl::Status st = add_member_locked(sid, *r.joined);
    if (!st.ok()) {
      logger_.warn("session {}: re-joining as '{}' failed: {}", sid, r.joined->id,
                   std::string(st.message()));
    }
  } else if (!r.joined && s.member) {
    remove_member_locked(sid, MemberEventType::kLeft);
  }
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    if (r.views.count(it->first) == 0) it->second.erase(sid);
    it = it->second.empty() ? nodes_.erase(it) : std::next(it);
  }
  for (const auto& [node, metrics] : r.views) nodes_[node][sid] = metrics;
  for (auto it = owned_.begin(); it != owned_.end();) {
    if (r.owned.count(it->first) == 0) it->second.erase(sid);
    it = it->second.empty() ? owned_.erase(it) : std::next(it);
  }
  for (const auto& [name, value] : r.owned) owned_[name][sid] = value;
  for (auto pool = slots_.begin(); pool != slots_.end();) {
    auto rp = r.slots.find(pool->first);
    for (auto t = pool->second.begin(); t != pool->second.end();) {
      if (rp == r.slots.end() || rp->second.count(t->first) == 0) t->second.erase(sid);
      t = t->second.empty() ? pool->second.erase(t) : std::next(t);
    }
    pool = pool->second.empty() ? slots_.erase(pool) : std::next(pool);
  }
  for (const auto& [pool, targets] : r.slots) {
    for (const auto& [target, n] : targets) slots_[pool][target][sid] = n;
  }
}

}  // namespace fleet::internal
