// LocalStoreImpl: locks, leader election, maps, watches, messaging and
// connection state.
#include <algorithm>

#include "internal/validate.hpp"
#include "local/local_store.hpp"

namespace fleet::internal {

// ---- locks and elections --------------------------------------------------------

std::optional<Lease> LocalStoreImpl::try_grant_locked(const std::string& sid,
                                                      LeaseKind kind,
                                                      const std::string& name,
                                                      const std::string& value, Ms ttl) {
  LockState& l = locks_[{kind, name}];
  if (l.held) return std::nullopt;  // expire_due_locked() ran: held means valid
  l.held = true;
  l.owner = sid;
  l.value = value;
  l.fence = ++l.last_fence;
  l.expires_at = clock_->now() + ttl;
  schedule_locked(Expiry{l.expires_at, ExpiryKind::kLock, kind, name, {}});
  if (kind == LeaseKind::kLeadership) emit_leader_locked(name);
  Lease lease;
  lease.kind = kind;
  lease.name = name;
  lease.owner = sid;
  lease.fence = l.fence;
  lease.ttl = ttl;
  lease.expires_at = l.expires_at;
  return lease;
}

std::optional<Lease> LocalStoreImpl::acquire(const std::string& sid, LeaseKind kind,
                                             const std::string& name,
                                             const std::string& value, Ms ttl,
                                             Ms timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const TimePoint deadline = clock_->now() + timeout;
  for (;;) {
    expire_due_locked();
    if (auto lease = try_grant_locked(sid, kind, name, value, ttl)) return lease;
    const TimePoint now = clock_->now();
    if (now >= deadline || stop_) return std::nullopt;
    // Woken by release() or by expiry of the holder's lease, whichever first.
    const TimePoint holder_expiry = locks_.at({kind, name}).expires_at;
    clock_->wait_until(lock, lock_cv_, std::min(deadline, holder_expiry));
  }
}

// The lock state of `lease` if it is still the current grant (ownership
// was checked by the session).
LocalStoreImpl::LockState* LocalStoreImpl::current_grant_locked(const std::string& sid,
                                                                const Lease& lease) {
  auto it = locks_.find({lease.kind, lease.name});
  if (it == locks_.end() || !it->second.held || it->second.owner != sid ||
      it->second.fence != lease.fence) {
    return nullptr;
  }
  return &it->second;
}

absl::Status LocalStoreImpl::not_held_locked(const Lease& lease) const {
  auto it = locks_.find({lease.kind, lease.name});
  const std::uint64_t last = it == locks_.end() ? 0 : it->second.last_fence;
  return lease.fence > last ? lease_never_granted(lease, last)
                            : lease_no_longer_held(lease);
}

absl::Status LocalStoreImpl::release(const std::string& sid, const Lease& lease) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  LockState* grant = current_grant_locked(sid, lease);
  if (grant == nullptr) return not_held_locked(lease);
  grant->held = false;
  lock_cv_.notify_all();
  if (lease.kind == LeaseKind::kLeadership) emit_leader_locked(lease.name);
  return absl::OkStatus();
}

absl::StatusOr<Lease> LocalStoreImpl::renew(const std::string& sid, const Lease& lease) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  LockState* grant = current_grant_locked(sid, lease);
  if (grant == nullptr) return not_held_locked(lease);
  grant->expires_at = clock_->now() + lease.ttl;
  schedule_locked(
      Expiry{grant->expires_at, ExpiryKind::kLock, lease.kind, lease.name, {}});
  Lease renewed = lease;
  renewed.expires_at = grant->expires_at;
  return renewed;
}

std::optional<Leader> LocalStoreImpl::leader_locked(const std::string& election) const {
  auto it = locks_.find({LeaseKind::kLeadership, election});
  if (it == locks_.end() || !it->second.held) return std::nullopt;
  return Leader{election, it->second.value, it->second.owner, it->second.fence};
}

std::optional<Leader> LocalStoreImpl::leader(const std::string& election) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  return leader_locked(election);
}

void LocalStoreImpl::emit_leader_locked(const std::string& election) {
  auto it = leader_watchers_.find(election);
  if (it != leader_watchers_.end()) emit_locked(it->second, leader_locked(election));
}

Subscription LocalStoreImpl::observe_leader(
    const std::string& sid, const std::string& election,
    std::function<void(const std::optional<Leader>&)> cb) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  auto& subs = leader_watchers_[election];
  auto sub = add_subscriber_locked<std::optional<Leader>>(
      sid, subs, std::move(cb), {}, detach_from(&leader_watchers_, election));
  // The current state first, queued under mu_ so no change can overtake it.
  const auto& added = subs.back();
  dispatcher_.post(added.slot,
                   [cb = added.callback, now = leader_locked(election)] { cb(now); });
  return sub;
}

// ---- maps ----------------------------------------------------------------------------

Entry LocalStoreImpl::write_entry_locked(const std::string& map, const std::string& key,
                                         const std::string& value, Ms ttl) {
  MapState& m = maps_[map];
  StoredEntry& e = m.entries[key];
  e.value = value;
  e.version = ++m.revision;
  e.expires_at.reset();
  if (ttl.count() > 0) {
    e.expires_at = clock_->now() + ttl;
    schedule_locked(
        Expiry{*e.expires_at, ExpiryKind::kEntry, LeaseKind::kLock, map, key});
  }
  emit_watch_locked(WatchEvent{WatchEventType::kSet, map, key, value, e.version});
  return Entry{e.value, e.version};
}

void LocalStoreImpl::emit_watch_locked(const WatchEvent& event) {
  auto it = map_watchers_.find(event.map);
  if (it != map_watchers_.end()) emit_locked(it->second, event);
}

ClaimResult LocalStoreImpl::claim(const std::string& map, const std::string& key,
                                  const std::string& value, Ms ttl) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  auto m = maps_.find(map);
  if (m != maps_.end()) {
    auto it = m->second.entries.find(key);
    if (it != m->second.entries.end()) {
      return ClaimResult{false, Entry{it->second.value, it->second.version}};
    }
  }
  return ClaimResult{true, write_entry_locked(map, key, value, ttl)};
}

Entry LocalStoreImpl::put(const std::string& map, const std::string& key,
                          const std::string& value, Ms ttl) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  return write_entry_locked(map, key, value, ttl);
}

std::optional<Entry> LocalStoreImpl::get(const std::string& map, const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  auto m = maps_.find(map);
  if (m == maps_.end()) return std::nullopt;
  auto it = m->second.entries.find(key);
  if (it == m->second.entries.end()) return std::nullopt;
  return Entry{it->second.value, it->second.version};
}

bool LocalStoreImpl::compare_and_set(const std::string& map, const std::string& key,
                                     const std::string& expected,
                                     const std::string& value, Ms ttl) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  auto m = maps_.find(map);
  if (m == maps_.end()) return false;
  auto it = m->second.entries.find(key);
  if (it == m->second.entries.end() || it->second.value != expected) return false;
  write_entry_locked(map, key, value, ttl);
  return true;
}

bool LocalStoreImpl::compare_and_delete(const std::string& map, const std::string& key,
                                        const std::string* expected) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  auto m = maps_.find(map);
  if (m == maps_.end()) return false;
  auto it = m->second.entries.find(key);
  if (it == m->second.entries.end()) return false;
  if (expected != nullptr && it->second.value != *expected) return false;
  m->second.entries.erase(it);
  emit_watch_locked(
      WatchEvent{WatchEventType::kDeleted, map, key, {}, ++m->second.revision});
  return true;
}

std::vector<MapOpResult> LocalStoreImpl::apply(const std::string& map,
                                               const std::vector<MapOp>& ops) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  std::vector<MapOpResult> out;
  out.reserve(ops.size());
  for (const MapOp& op : ops) {
    MapState& m = maps_[map];
    auto it = m.entries.find(op.key);
    const bool present = it != m.entries.end();
    MapOpResult r;
    switch (op.type) {
      case MapOpType::kClaim:
        if (present) {
          r.entry = Entry{it->second.value, it->second.version};
        } else {
          r.applied = true;
          r.entry = write_entry_locked(map, op.key, op.value, op.ttl);
        }
        break;
      case MapOpType::kPut:
        r.applied = true;
        r.entry = write_entry_locked(map, op.key, op.value, op.ttl);
        break;
      case MapOpType::kCompareAndSet:
        if (present && it->second.value == op.expected) {
          r.applied = true;
          r.entry = write_entry_locked(map, op.key, op.value, op.ttl);
        }
        break;
      case MapOpType::kCompareAndDelete:
      case MapOpType::kErase:
        if (present &&
            (op.type == MapOpType::kErase || it->second.value == op.expected)) {
          m.entries.erase(it);
          emit_watch_locked(
              WatchEvent{WatchEventType::kDeleted, map, op.key, {}, ++m.revision});
          r.applied = true;
        }
        break;
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<MapEntry> LocalStoreImpl::scan(const std::string& map,
                                           const std::string& prefix, std::size_t limit) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  std::vector<MapEntry> out;
  auto m = maps_.find(map);
  if (m == maps_.end()) return out;
  for (auto it = m->second.entries.lower_bound(prefix); it != m->second.entries.end();
       ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    if (limit != 0 && out.size() >= limit) break;
    out.push_back(MapEntry{it->first, Entry{it->second.value, it->second.version}});
  }
  return out;
}

Subscription LocalStoreImpl::watch(const std::string& sid, const std::string& map,
                                   const std::string& prefix,
                                   std::function<void(const WatchEvent&)> cb) {
  std::lock_guard<std::mutex> lock(mu_);
  expire_due_locked();
  return add_subscriber_locked<WatchEvent>(sid, map_watchers_[map], std::move(cb), prefix,
                                           detach_from(&map_watchers_, map));
}

// ---- messaging and connection state
// ----------------------------------------------------

void LocalStoreImpl::publish(const std::string& sid, const std::string& channel,
                             const std::string& payload) {
  std::lock_guard<std::mutex> lock(mu_);
  Session& s = sessions_.at(sid);
  Message msg{channel, payload, sid, s.next_sequence++};
  auto it = channels_.find(channel);
  if (it != channels_.end()) emit_locked(it->second, msg);
}

Subscription LocalStoreImpl::subscribe(const std::string& sid, const std::string& channel,
                                       std::function<void(const Message&)> cb) {
  std::lock_guard<std::mutex> lock(mu_);
  return add_subscriber_locked<Message>(sid, channels_[channel], std::move(cb), {},
                                        detach_from(&channels_, channel));
}

Subscription LocalStoreImpl::watch_connection(const std::string& sid,
                                              std::function<void(ConnectionState)> cb) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& subs = connection_watchers_[sid];
  auto sub = add_subscriber_locked<ConnectionState>(
      sid, subs, [cb = std::move(cb)](const ConnectionState& s) { cb(s); }, {},
      detach_from(&connection_watchers_, sid));
  // The current state first, queued under mu_ so no change can overtake it.
  const auto& added = subs.back();
  dispatcher_.post(added.slot,
                   [cb = added.callback, now = sessions_.at(sid).state] { cb(now); });
  return sub;
}

}  // namespace fleet::internal
