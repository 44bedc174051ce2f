// Every Redis key and channel name of one namespace. docs/redis-keys.md
// describes each; keep the two in step.
#ifndef FLEET_SRC_REDIS_KEYS_HPP_
#define FLEET_SRC_REDIS_KEYS_HPP_

#include <string>
#include <string_view>

#include "fleet/types.hpp"

namespace fleet::internal {

struct Keys {
  explicit Keys(std::string_view ns)
      : prefix("fleet:{" + std::string(ns) + "}:"),
        sessions(prefix + "sessions"),
        heartbeats(prefix + "heartbeats"),
        members(prefix + "members"),
        member_session(prefix + "member_session"),
        session_member(prefix + "session_member"),
        node_index(prefix + "nodes"),
        owned_index(prefix + "owned"),
        counters(prefix + "counters"),
        fences(prefix + "fences"),
        leases(prefix + "leases"),
        entry_ttl(prefix + "entry_ttl"),
        map_revisions(prefix + "map_revisions"),
        views_gen(prefix + "views_gen"),
        aggregate_cache(prefix + "aggregate_cache"),
        epochs(prefix + "epochs"),
        incarnation(prefix + "incarnation"),
        member_channel(prefix + "member_events") {}

  std::string node(std::string_view id) const { return cat("node:", id); }
  std::string owned(std::string_view name) const { return cat("owned:", name); }
  std::string slots(std::string_view pool) const { return cat("slots:", pool); }
  std::string session_slots(std::string_view sid) const { return cat("slotsess:", sid); }
  static std::string lease_member(LeaseKind kind, std::string_view name) {
    return std::string(kind == LeaseKind::kLock ? "L:" : "E:") + std::string(name);
  }
  std::string lock(LeaseKind kind, std::string_view name) const {
    return cat("lock:", lease_member(kind, name));
  }
  std::string lock_channel(LeaseKind kind, std::string_view name) const {
    return cat("lockev:", lease_member(kind, name));
  }
  std::string leader_channel(std::string_view election) const {
    return cat("leader:", election);
  }
  std::string map(std::string_view name) const { return cat("map:", name); }
  std::string watch_channel(std::string_view map) const { return cat("watch:", map); }
  std::string channel(std::string_view name) const { return cat("chan:", name); }

  const std::string prefix;
  const std::string sessions, heartbeats, members, member_session, session_member;
  const std::string node_index, owned_index, counters, fences, leases, entry_ttl;
  const std::string map_revisions, views_gen, aggregate_cache, epochs, incarnation;
  const std::string member_channel;

 private:
  std::string cat(std::string_view kind, std::string_view name) const {
    std::string s;
    s.reserve(prefix.size() + kind.size() + name.size());
    s.append(prefix).append(kind).append(name);
    return s;
  }
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_KEYS_HPP_
