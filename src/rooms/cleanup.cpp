#include "rooms/cleanup.hpp"

#include <algorithm>
#include <vector>

#include "internal/rendezvous.hpp"
#include "internal/status.hpp"
#include "rooms/internal.hpp"

namespace fleet::rooms::internal_rooms {

absl::Status Cleanup::run() {
  if (!ctx_.core.live().fresh()) return absl::OkStatus();  // the step reported why
  const auto now = ctx_.c.clock()->now();
  const std::set<std::string> registered = nodes_.registered();
  std::vector<std::string> alive;
  for (const auto& id : registered) {
    if (ctx_.core.live().contains(id)) alive.push_back(id);
  }
  for (auto it = dead_since_.begin(); it != dead_since_.end();) {
    const bool forget =
        registered.count(it->first) == 0 || ctx_.core.live().contains(it->first);
    it = forget ? dead_since_.erase(it) : std::next(it);
  }
  std::vector<std::string> to_clean;
  for (const auto& id : nodes_.gone()) {
    const auto since = dead_since_.emplace(id, now).first->second;
    std::string chosen;
    std::uint64_t best = 0;
    for (const auto& a : alive) {
      const std::uint64_t w = internal::rendezvous_weight(id, a);
      if (chosen.empty() || w > best) {
        chosen = a;
        best = w;
      }
    }
    if (chosen == ctx_.me || now - since >= ctx_.o.takeover_grace) to_clean.push_back(id);
  }
  absl::Status first;
  for (const auto& dead : to_clean) {
    absl::Status st = clean_up(dead);
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

absl::Status Cleanup::remove_members(const std::string& dead,
                                     std::set<std::string>* rooms, std::size_t* removed) {
  const std::string imap = index_map(ctx_.o.name, dead);
  FLEET_ASSIGN_OR_RETURN(auto index, ctx_.c.scan(imap));
  std::map<std::string, std::vector<std::string>> by_room;
  for (const auto& e : index) {
    const std::size_t nl = e.key.find('\n');
    if (nl == std::string::npos) continue;
    by_room[e.key.substr(0, nl)].push_back(e.key.substr(nl + 1));
  }
  for (const auto& [room, ids] : by_room) {
    const std::string rmap = room_map(ctx_.o.name, room);
    FLEET_ASSIGN_OR_RETURN(auto entries, ctx_.c.scan(rmap, kParticipantPrefix));
    std::vector<MapOp> ops;
    for (const auto& e : entries) {
      auto p = decode_participant(e.key, e.entry.value);
      if (p.ok() && p->instance == dead) {
        ops.push_back(MapOp::compare_and_delete(e.key, e.entry.value));
      }
    }
    if (!ops.empty()) {
      FLEET_ASSIGN_OR_RETURN(auto r, ctx_.c.apply(rmap, ops));
      for (const auto& res : r) *removed += res.applied ? 1 : 0;
    }
    rooms->insert(room);
  }
  std::vector<MapOp> erase_index;
  for (const auto& e : index) erase_index.push_back(MapOp::erase(e.key));
  for (std::size_t i = 0; i < erase_index.size(); i += kMaxMapBatchOps) {
    std::vector<MapOp> chunk(
        erase_index.begin() + static_cast<std::ptrdiff_t>(i),
        erase_index.begin() + static_cast<std::ptrdiff_t>(
                                  std::min(erase_index.size(), i + kMaxMapBatchOps)));
    FLEET_RETURN_IF_ERROR(ctx_.c.apply(imap, chunk).status());
  }
  return absl::OkStatus();
}

absl::Status Cleanup::clean_up(const std::string& dead) {
  auto record = nodes_.record(dead);
  if (!record) return absl::OkStatus();
  const auto& [raw, was_host] = *record;
  // 1. Its members leave.
  std::set<std::string> touched;
  std::size_t removed = 0, moved = 0, released = 0;
  FLEET_RETURN_IF_ERROR(remove_members(dead, &touched, &removed));
  // 2. Its rooms move (or go, when nobody is left in them).
  if (was_host) {
    FLEET_RETURN_IF_ERROR(placements_.move_rooms_of(dead, &touched, &moved, &released));
  }
  // Rooms its members were in, now perhaps empty.
  for (const auto& room : touched) {
    FLEET_ASSIGN_OR_RETURN(bool r, placements_.release_if_empty(room, "empty"));
    released += r ? 1 : 0;
  }
  // 3. Its record goes (unless it came back and wrote a new one).
  FLEET_ASSIGN_OR_RETURN(bool deleted, nodes_.remove(dead, raw));
  if (deleted) dead_since_.erase(dead);
  ctx_.log().info(
      "instance '{}' is gone: {} member(s) removed, {} room(s) moved, {} released", dead,
      removed, moved, released);
  return absl::OkStatus();
}

}  // namespace fleet::rooms::internal_rooms
