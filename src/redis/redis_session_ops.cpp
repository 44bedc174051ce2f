// RedisSession: locks, leader election, maps, watches and messaging.
#include <algorithm>

#include "fleet/names.hpp"
#include "fmt/format.h"
#include "internal/validate.hpp"
#include "redis/codec.hpp"
#include "redis/redis_session.hpp"

namespace fleet::internal {

absl::StatusOr<Subscription> RedisSession::listen(
    const std::string& channel,
    std::function<void(const std::shared_ptr<Dispatcher::Slot>&, const std::string&)>
        on_payload,
    std::shared_ptr<Dispatcher::Slot> slot) {
  if (!slot) slot = events_->dispatcher.new_slot();
  auto id = events_->subscriber.add(
      channel, [on_payload = std::move(on_payload), slot](const std::string& payload) {
        on_payload(slot, payload);
      });
  if (!id.ok()) return id.status();
  std::weak_ptr<Events> weak = events_;
  return Subscription([weak, slot, id = *id] {
    auto events = weak.lock();
    if (!events) return;
    events->subscriber.remove(id);
    events->dispatcher.cancel(slot);
  });
}

// ---- replica acknowledgements (WAIT) --------------------------------------------------

// Auto, with Sentinel: every replica the sentinels last saw healthy, and at
// least one. Redis replication is asynchronous and a failover promotes one
// replica; a grant confirmed by only some replicas can be lost when another
// is promoted. Worse, during a failover the old master keeps taking writes
// until the sentinels reconfigure it, and a replica not yet moved can still
// confirm them; asking for all of them makes the old master, which has lost
// the promoted one, refuse. (The history checker found two owners of one
// claim with "at least one".) A master without replicas may be the deposed
// one, hence at least one.
// Auto, with Cluster: every replica of the slot's master (CLUSTER SLOTS),
// none when it has none (a cluster failover needs a replica anyway).
// Auto, otherwise: one while the master reported a replica at the last
// heartbeat.
int RedisSession::acks_wanted() const {
  if (options_.replica_acks) return *options_.replica_acks;
  if (const auto& dir = pool_.endpoint().directory) {
    return dir->cluster() ? std::max(0, dir->healthy_replicas())
                          : std::max(1, dir->healthy_replicas());
  }
  return replicas_seen_.load() > 0 ? 1 : 0;
}

absl::StatusOr<Reply> RedisSession::run_acked(Script script, const Argv& keys,
                                              const Argv& args, absl::Status* durable) {
  *durable = absl::OkStatus();
  const int want = acks_wanted();
  if (want == 0) return run(script, keys, args);
  const auto timeout =
      std::min(options_.replica_ack_timeout, options_.command_timeout / 2);
  const std::string n = std::to_string(want);
  const std::string ms = std::to_string(std::max<long long>(1, timeout.count()));
  const Argv wait = {"WAIT", n, ms};
  absl::StatusOr<Reply> acks = absl::UnavailableError("no reply to WAIT");
  // `want` is the count for the master known now; if the master changes
  // while the call is out, the write and its WAIT may have gone to either,
  // so the confirmation does not count.
  const auto& directory = pool_.endpoint().directory;
  const std::uint64_t epoch = directory ? directory->epoch() : 0;
  auto r =
      scripts_.run([&](const Argv& argv) { return pool_.command(argv, wait, &acks); },
                   script, keys, args);
  if (!r.ok()) return r;
  if (directory && directory->epoch() != epoch) {
    *durable = absl::UnavailableError(
        "the Redis master changed while the call was out (a failover or a slot "
        "migration): its replicas' confirmation cannot be trusted");
    return r;
  }
  if (!acks.ok()) {
    *durable = acks.status();
  } else if (acks->is_error()) {
    *durable = status_from_error(acks->str);
  } else if (acks->integer < want) {
    *durable = absl::UnavailableError(fmt::format(
        "no replica confirmed it within {} ms ({} of {} wanted; Redis WAIT), so it could "
        "be lost in a failover",
        ms, acks->integer, want));
  }
  return r;
}

// ---- locks and elections ----------------------------------------------------------

absl::StatusOr<std::optional<Lease>> RedisSession::acquire(
    LeaseKind kind, const std::string& name, std::string_view value, Ttl ttl,
    std::chrono::milliseconds timeout) {
  const auto deadline = clock_->now() + timeout;
  const std::string member = Keys::lease_member(kind, name);
  const std::string lock_key = keys_.lock(kind, name);
  const std::string lock_channel = keys_.lock_channel(kind, name);
  const std::string leader_channel =
      kind == LeaseKind::kLeadership ? keys_.leader_channel(name) : std::string();
  const std::string ttl_ms = std::to_string(ttl.count());

  // Waiters listen on the lock's channel, where release (and the sweeper,
  // on expiry) publish: they sleep until woken or until the holder's lease
  // runs out, never polling.
  struct Waiter {
    Mutex mu;
    std::condition_variable cv;
    bool woken = false;
  };
  std::shared_ptr<Waiter> waiter;
  Subscription wake_sub;

  for (;;) {
    const auto sent = clock_->now();
    absl::Status durable;
    auto r =
        run_acked(Script::kAcquire, {lock_key, keys_.fences, keys_.leases},
                  {sid_, member, value, ttl_ms, leader_channel, lock_channel}, &durable);
    if (!r.ok()) return r.status();
    if (r->type != Reply::Type::kArray || r->elements.size() != 2) {
      return absl::InternalError("acquire: unexpected reply from Redis");
    }
    if (r->elements[0].integer == 1) {
      Lease lease;
      lease.kind = kind;
      lease.name = name;
      lease.owner = sid_;
      lease.fence = static_cast<std::uint64_t>(r->elements[1].integer);
      lease.ttl = ttl;
      lease.expires_at = sent + ttl;
      if (!durable.ok()) {
        // Not reported as held: give it back, so that nobody waits for it.
        const char* what = kind == LeaseKind::kLock ? "lock" : "leadership of";
        absl::Status undone = release(lease);
        if (undone.ok() || undone.code() == absl::StatusCode::kAborted) {
          return absl::UnavailableError(
              fmt::format("{} '{}' was granted by the master but {}; released it", what,
                          name, std::string(durable.message())));
        }
        return absl::DeadlineExceededError(fmt::format(
            "{} '{}' was granted by the master but {}; releasing it failed too ({}), so "
            "the grant may stand until its TTL",
            what, name, std::string(durable.message()), std::string(undone.message())));
      }
      return std::optional<Lease>(std::move(lease));
    }
    const auto now = clock_->now();
    if (now >= deadline) return std::optional<Lease>();
    if (!waiter) {
      waiter = std::make_shared<Waiter>();
      auto sub = listen(lock_channel, [waiter](const auto&, const std::string&) {
        MutexLock lock(waiter->mu);
        waiter->woken = true;
        waiter->cv.notify_all();
      });
      if (!sub.ok()) return sub.status();
      wake_sub = *std::move(sub);
      continue;  // it may have been released before we listened
    }
    auto wake = deadline;
    // PTTL: 0 means under a millisecond left; -1 a holder without expiry
    // (planted data), which only a release notification can end.
    const long long holder_left = r->elements[1].integer;
    if (holder_left >= 0) {
      wake = std::min(wake, now + std::chrono::milliseconds(std::max(holder_left, 1LL)));
    }
    MutexLock lock(waiter->mu);
    while (!waiter->woken && clock_->now() < wake)
      clock_->wait_until(lock.native(), waiter->cv, wake);
    waiter->woken = false;
  }
}

absl::StatusOr<std::optional<Lease>> RedisSession::try_lock(std::string_view name,
                                                            Ttl ttl) {
  return lock(name, ttl, std::chrono::milliseconds::zero());
}

absl::StatusOr<std::optional<Lease>> RedisSession::lock(
    std::string_view name, Ttl ttl, std::chrono::milliseconds timeout) {
  FLEET_RETURN_IF_ERROR(validate_name("lock name", name));
  FLEET_RETURN_IF_ERROR(validate_lease_ttl(ttl));
  FLEET_RETURN_IF_ERROR(validate_timeout(timeout));
  return acquire(LeaseKind::kLock, std::string(name), {}, ttl, timeout);
}

absl::StatusOr<std::optional<Lease>> RedisSession::campaign(
    std::string_view election, std::string_view value, Ttl ttl,
    std::chrono::milliseconds timeout) {
  FLEET_RETURN_IF_ERROR(validate_name("election name", election));
  FLEET_RETURN_IF_ERROR(validate_value("leader value", value));
  FLEET_RETURN_IF_ERROR(validate_lease_ttl(ttl));
  FLEET_RETURN_IF_ERROR(validate_timeout(timeout));
  return acquire(LeaseKind::kLeadership, std::string(election), value, ttl, timeout);
}

// A grant is identified in Redis by the start of its record, "<fence>\n<owner>\n".
absl::Status RedisSession::release(const Lease& lease) {
  FLEET_RETURN_IF_ERROR(check_lease(lease, sid_));
  const std::string grant = fmt::format("{}\n{}\n", lease.fence, lease.owner);
  const std::string fence = std::to_string(lease.fence);
  auto r = run(Script::kRelease,
               {keys_.lock(lease.kind, lease.name), keys_.leases, keys_.fences},
               {grant, Keys::lease_member(lease.kind, lease.name),
                keys_.lock_channel(lease.kind, lease.name),
                lease.kind == LeaseKind::kLeadership ? keys_.leader_channel(lease.name)
                                                     : std::string(),
                fence});
  if (!r.ok()) return r.status();
  if (r->type == Reply::Type::kInteger && r->integer == 1) return absl::OkStatus();
  return not_held(lease, *r);
}

absl::Status RedisSession::not_held(const Lease& lease, const Reply& reply) const {
  // {-1, last fence or ''}: no grant had this fence.
  if (reply.type == Reply::Type::kArray && reply.elements.size() == 2) {
    std::uint64_t last = 0;
    const std::string& text = reply.elements[1].str;
    if (text.empty() ? data_losses_.load() == 0 : parse_u64(text, &last)) {
      return lease_never_granted(lease, last);
    }
  }
  return lease_no_longer_held(lease);
}

absl::StatusOr<Lease> RedisSession::renew(const Lease& lease) {
  FLEET_RETURN_IF_ERROR(check_lease(lease, sid_));
  const std::string grant = fmt::format("{}\n{}\n", lease.fence, lease.owner);
  const std::string ttl_ms = std::to_string(lease.ttl.count());
  const auto sent = clock_->now();
  absl::Status durable;
  const std::string fence = std::to_string(lease.fence);
  auto r = run_acked(Script::kRenew,
                     {keys_.lock(lease.kind, lease.name), keys_.leases, keys_.fences},
                     {grant, Keys::lease_member(lease.kind, lease.name), ttl_ms,
                      lease.kind == LeaseKind::kLeadership ? "1" : "0", fence},
                     &durable);
  if (!r.ok()) return r.status();
  if (r->type != Reply::Type::kInteger || r->integer != 1) return not_held(lease, *r);
  if (!durable.ok()) {
    // The lease stays valid until its previous expiry; a retry may confirm it.
    return absl::UnavailableError(
        fmt::format("renewal of '{}': {}", lease.name, std::string(durable.message())));
  }
  Lease renewed = lease;
  renewed.expires_at = sent + lease.ttl;
  return renewed;
}

absl::StatusOr<std::optional<Leader>> RedisSession::leader(std::string_view election) {
  FLEET_RETURN_IF_ERROR(validate_name("election name", election));
  auto r = command({"GET", keys_.lock(LeaseKind::kLeadership, election)});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::optional<Leader>();
  // The record has the leader channel's format: "<fence>\n<owner>\n<value>".
  auto l = decode_leader(election, r->str);
  if (!l || !l->has_value()) {
    return absl::DataLossError(
        fmt::format("election '{}' holds a malformed leader record", election));
  }
  return *l;
}

absl::StatusOr<Subscription> RedisSession::observe_leader(
    std::string_view election,
    std::function<void(const std::optional<Leader>&)> callback) {
  FLEET_RETURN_IF_ERROR(validate_name("election name", election));
  FLEET_RETURN_IF_ERROR(validate_callback(callback));
  // Changes that arrive before the initial state was read are held back
  // and delivered after it, so the observer always starts from the state.
  struct Gate {
    Mutex mu;
    bool open = false;
    std::vector<std::optional<Leader>> held;
  };
  auto gate = std::make_shared<Gate>();
  auto slot = events_->dispatcher.new_slot();
  std::weak_ptr<Events> weak = events_;
  const Logger* logger = &logger_;
  const std::string name(election);
  auto sub = listen(
      keys_.leader_channel(election),
      [gate, weak, callback, logger, name](const auto& s, const std::string& payload) {
        auto change = decode_leader(name, payload);
        if (!change) {
          logger->warn("skipping a malformed leader event for '{}'", name);
          return;
        }
        MutexLock lock(gate->mu);
        if (!gate->open) {
          gate->held.push_back(std::move(*change));
          return;
        }
        if (auto events = weak.lock()) {
          events->dispatcher.post(s, [callback, c = std::move(*change)] { callback(c); });
        }
      },
      slot);
  if (!sub.ok()) return sub.status();
  auto now = leader(election);
  if (!now.ok()) return now.status();
  MutexLock lock(gate->mu);
  events_->dispatcher.post(slot, [callback, c = *now] { callback(c); });
  for (auto& c : gate->held) {
    events_->dispatcher.post(slot, [callback, c = std::move(c)] { callback(c); });
  }
  gate->held.clear();
  gate->open = true;
  return sub;
}

// ---- maps and watches -----------------------------------------------------------------

absl::StatusOr<ClaimResult> RedisSession::claim(std::string_view map,
                                                std::string_view key,
                                                std::string_view value, Ttl ttl) {
  FLEET_RETURN_IF_ERROR(validate_entry(map, key, value, ttl));
  const std::string ttl_ms = std::to_string(ttl.count());
  // When the call waits for replicas, a lost claim rewrites the winner's
  // entry as it is, so that WAIT covers it (map_write.lua).
  const char* sync = acks_wanted() > 0 ? "sync" : "";
  absl::Status durable;
  auto r = run_acked(
      Script::kMapWrite, {keys_.map(map), keys_.entry_ttl, keys_.map_revisions},
      {map, key, value, ttl_ms, keys_.watch_channel(map), "claim", sync}, &durable);
  if (!r.ok()) return r.status();
  if (r->elements.size() == 2 && r->elements[0].integer == 1) {
    if (!durable.ok()) {
      // Not taken back: from the moment it was stored, another claimer may
      // have read it, had it confirmed by the replicas and been told it is
      // the owner; deleting it would let a third claimer win the key too.
      // The outcome is unknown to the caller, as after a timeout: claiming
      // again with the same value tells (the entry returned is its own).
      return absl::UnavailableError(fmt::format(
          "claim of '{}' in map '{}' was stored but {}; it may or may not stand: claim "
          "again with the same value to learn",
          key, map, std::string(durable.message())));
    }
    return ClaimResult{true, Entry{std::string(value),
                                   static_cast<std::uint64_t>(r->elements[1].integer)}};
  }
  if (r->elements.size() == 2) {
    if (!durable.ok()) {
      // The winner's entry may exist on this master only (a failover under
      // way): not an owner to tell anyone about.
      return absl::UnavailableError(
          fmt::format("claim of '{}' in map '{}' lost to an entry that {}", key, map,
                      std::string(durable.message())));
    }
    if (auto e = decode_entry(r->elements[1].str))
      return ClaimResult{false, std::move(*e)};
  }
  return absl::DataLossError(
      fmt::format("map '{}' holds a malformed entry for the claimed key", map));
}

absl::StatusOr<Entry> RedisSession::put(std::string_view map, std::string_view key,
                                        std::string_view value, Ttl ttl) {
  FLEET_RETURN_IF_ERROR(validate_entry(map, key, value, ttl));
  const std::string ttl_ms = std::to_string(ttl.count());
  auto r = run(Script::kMapWrite, {keys_.map(map), keys_.entry_ttl, keys_.map_revisions},
               {map, key, value, ttl_ms, keys_.watch_channel(map), "put", ""});
  if (!r.ok()) return r.status();
  return Entry{std::string(value), static_cast<std::uint64_t>(r->elements[1].integer)};
}

absl::StatusOr<bool> RedisSession::compare_and_set(std::string_view map,
                                                   std::string_view key,
                                                   std::string_view expected,
                                                   std::string_view value, Ttl ttl) {
  FLEET_RETURN_IF_ERROR(validate_entry(map, key, value, ttl));
  FLEET_RETURN_IF_ERROR(validate_value("expected value", expected));
  const std::string ttl_ms = std::to_string(ttl.count());
  auto r = run(Script::kMapWrite, {keys_.map(map), keys_.entry_ttl, keys_.map_revisions},
               {map, key, value, ttl_ms, keys_.watch_channel(map), "cas", expected});
  if (!r.ok()) return r.status();
  const long long code = r->elements.empty() ? -1 : r->elements[0].integer;
  if (code < 0) {
    return absl::DataLossError(fmt::format("map '{}' holds a malformed entry", map));
  }
  return code == 1;
}

absl::StatusOr<bool> RedisSession::compare_and_delete(std::string_view map,
                                                      std::string_view key,
                                                      std::string_view expected) {
  FLEET_RETURN_IF_ERROR(validate_map_key(map, key));
  FLEET_RETURN_IF_ERROR(validate_value("expected value", expected));
  auto r = run(Script::kMapDelete, {keys_.map(map), keys_.entry_ttl, keys_.map_revisions},
               {map, key, keys_.watch_channel(map), "cad", expected});
  if (!r.ok()) return r.status();
  if (r->integer < 0) {
    return absl::DataLossError(fmt::format("map '{}' holds a malformed entry", map));
  }
  return r->integer == 1;
}

absl::StatusOr<bool> RedisSession::erase(std::string_view map, std::string_view key) {
  FLEET_RETURN_IF_ERROR(validate_map_key(map, key));
  auto r = run(Script::kMapDelete, {keys_.map(map), keys_.entry_ttl, keys_.map_revisions},
               {map, key, keys_.watch_channel(map), "erase", ""});
  if (!r.ok()) return r.status();
  return r->integer == 1;
}

absl::StatusOr<std::vector<MapOpResult>> RedisSession::apply(
    std::string_view map, const std::vector<MapOp>& ops) {
  FLEET_RETURN_IF_ERROR(validate_map_ops(map, ops));
  if (ops.empty()) return std::vector<MapOpResult>();
  static constexpr std::string_view kTypes[] = {"c", "p", "s", "d", "e"};
  const std::string channel = keys_.watch_channel(map);
  std::vector<std::string> ttls;
  ttls.reserve(ops.size());
  for (const MapOp& op : ops) ttls.push_back(std::to_string(op.ttl.count()));
  Argv args;
  args.reserve(2 + ops.size() * 5);
  args.push_back(map);
  args.push_back(channel);
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const MapOp& op = ops[i];
    args.push_back(kTypes[static_cast<int>(op.type)]);
    args.push_back(op.key);
    args.push_back(op.value);
    args.push_back(op.expected);
    args.push_back(ttls[i]);
  }
  auto r = run(Script::kMapBatch, {keys_.map(map), keys_.entry_ttl, keys_.map_revisions},
               args);
  if (!r.ok()) return r.status();
  if (r->elements.size() == 2 && r->elements[0].integer == -1) {
    return absl::DataLossError(fmt::format(
        "map '{}' holds a malformed entry (batch operation {}); nothing applied", map,
        r->elements[1].integer));
  }
  if (r->elements.size() != ops.size() * 2) {
    return absl::InternalError(
        fmt::format("map batch: expected {} reply elements, got {}", ops.size() * 2,
                    r->elements.size()));
  }
  std::vector<MapOpResult> out(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) {
    out[i].applied = r->elements[2 * i].integer == 1;
    const std::string& stored = r->elements[2 * i + 1].str;
    if (stored.empty()) continue;
    auto e = decode_entry(stored);
    if (!e) {  // only a lost claim returns an entry it did not write
      return absl::DataLossError(
          fmt::format("map '{}' holds a malformed entry for a claimed key", map));
    }
    out[i].entry = std::move(*e);
  }
  return out;
}

absl::StatusOr<std::optional<Entry>> RedisSession::get(std::string_view map,
                                                       std::string_view key) {
  FLEET_RETURN_IF_ERROR(validate_map_key(map, key));
  auto r = run(Script::kMapRead, {keys_.map(map), keys_.entry_ttl, keys_.map_revisions},
               {map, keys_.watch_channel(map), "get", key});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return std::optional<Entry>();
  auto e = decode_entry(r->str);
  if (!e) {
    logger_.warn("map '{}' holds a malformed entry", map);
    return absl::DataLossError(fmt::format("map '{}' holds a malformed entry", map));
  }
  return std::optional<Entry>(std::move(*e));
}

absl::StatusOr<std::vector<MapEntry>> RedisSession::scan(std::string_view map,
                                                         std::string_view key_prefix,
                                                         std::size_t limit) {
  FLEET_RETURN_IF_ERROR(validate_name("map name", map));
  FLEET_RETURN_IF_ERROR(validate_prefix(key_prefix));
  auto r = run(Script::kMapRead, {keys_.map(map), keys_.entry_ttl, keys_.map_revisions},
               {map, keys_.watch_channel(map), "scan", key_prefix});
  if (!r.ok()) return r.status();
  std::vector<MapEntry> out;
  std::size_t malformed = 0;
  for (std::size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    auto e = decode_entry(r->elements[i + 1].str);
    if (!e) {
      ++malformed;
      continue;
    }
    out.push_back(MapEntry{r->elements[i].str, std::move(*e)});
  }
  if (malformed > 0)
    logger_.warn("scan of map '{}': skipped {} malformed entries", map, malformed);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.key < b.key; });
  if (limit != 0 && out.size() > limit) out.resize(limit);
  return out;
}

absl::StatusOr<Subscription> RedisSession::watch(
    std::string_view map, std::string_view key_prefix,
    std::function<void(const WatchEvent&)> callback) {
  FLEET_RETURN_IF_ERROR(validate_name("map name", map));
  FLEET_RETURN_IF_ERROR(validate_prefix(key_prefix));
  FLEET_RETURN_IF_ERROR(validate_callback(callback));
  std::weak_ptr<Events> weak = events_;
  const Logger* logger = &logger_;
  return listen(
      keys_.watch_channel(map),
      [weak, callback, logger, name = std::string(map), prefix = std::string(key_prefix)](
          const auto& slot, const std::string& payload) {
        auto evs = decode_watch_events(name, payload);
        if (!evs) {
          logger->warn("skipping a malformed watch event on map '{}'", name);
          return;
        }
        auto events = weak.lock();
        if (!events) return;
        for (auto& ev : *evs) {
          if (ev.key.compare(0, prefix.size(), prefix) != 0) continue;
          events->dispatcher.post(slot, [callback, e = std::move(ev)] { callback(e); });
        }
      });
}

// ---- messaging ---------------------------------------------------------------------

absl::Status RedisSession::publish(std::string_view channel, std::string_view payload) {
  FLEET_RETURN_IF_ERROR(validate_name("channel name", channel));
  FLEET_RETURN_IF_ERROR(validate_value("payload", payload));
  const std::string redis_channel = keys_.channel(channel);
  // One publisher's messages are numbered in the order Redis receives them.
  MutexLock lock(publish_mu_);
  const std::string body = encode_message(sid_, next_sequence_, payload);
  auto r = command(
      {pool_.endpoint().uses_cluster() ? "SPUBLISH" : "PUBLISH", redis_channel, body});
  if (!r.ok()) return r.status();
  ++next_sequence_;
  return absl::OkStatus();
}

absl::StatusOr<Subscription> RedisSession::subscribe(
    std::string_view channel, std::function<void(const Message&)> callback) {
  FLEET_RETURN_IF_ERROR(validate_name("channel name", channel));
  FLEET_RETURN_IF_ERROR(validate_callback(callback));
  std::weak_ptr<Events> weak = events_;
  const Logger* logger = &logger_;
  return listen(keys_.channel(channel),
                [weak, callback, logger, name = std::string(channel)](
                    const auto& slot, const std::string& payload) {
                  auto m = decode_message(name, payload);
                  if (!m) {
                    logger->warn("skipping a malformed message on channel '{}'", name);
                    return;
                  }
                  if (auto events = weak.lock()) {
                    events->dispatcher.post(
                        slot, [callback, msg = std::move(*m)] { callback(msg); });
                  }
                });
}

}  // namespace fleet::internal
