#include "rooms/placement.hpp"

#include <algorithm>

#include "fmt/format.h"
#include "internal/status.hpp"
#include "rooms/internal.hpp"

namespace fleet::rooms::internal_rooms {
namespace {

using internal::MapMirror;
using internal::MutexLock;

Placement moved_to(const Placement& cur, const Node& to, std::string cause) {
  Placement next;
  next.room = cur.room;
  next.node = to.id;
  next.address = to.info.address;
  next.generation = cur.generation + 1;
  next.cause = std::move(cause);
  next.previous_node = cur.node;
  return next;
}

}  // namespace

absl::Status Placements::attach() {
  {
    MutexLock lock(mu_);
    loading_ = true;
  }
  mirror_ = ctx_.core.mirror(placement_map(ctx_.o.name), "",
                             [this](const MapMirror::Change& ch) { on_change(ch); });
  absl::Status st = mirror_->start();
  std::size_t hosted;
  {
    MutexLock lock(mu_);
    loading_ = false;
    hosted = hosted_.size();
  }
  FLEET_RETURN_IF_ERROR(st);
  if (ctx_.o.host) {
    nodes_.set_hosted(hosted);
    if (hosted > 0) {
      ctx_.log().info("node '{}' restarted with {} rooms still placed on it", ctx_.me,
                      hosted);
    }
  }
  return absl::OkStatus();
}

void Placements::on_change(const MapMirror::Change& ch) {
  RoomEvent ev;
  ev.room = ch.key;
  bool hosted_changed = false, quiet;
  std::size_t hosted;
  {
    MutexLock lock(mu_);
    quiet = loading_;  // the first read tells what is, not what happened
    if (ch.kind == MapMirror::Kind::kSet) {
      auto p = decode_placement(ch.key, ch.value);
      if (!p.ok()) {
        cache_.erase(ch.key);
        hosted_changed = hosted_.erase(ch.key) != 0;
        ctx_.log().warn("skipping a malformed placement of room '{}'", ch.key);
        return;
      }
      cache_[ch.key] = Cached{*p, ch.version};
      hosted_changed =
          p->node == ctx_.me ? hosted_.insert(ch.key).second : hosted_.erase(ch.key) != 0;
      ev.type = p->previous_node.empty() || p->previous_node == p->node
                    ? RoomEventType::kAssigned
                    : RoomEventType::kMoved;
      ev.from = p->previous_node;
      ev.to = p->node;
      ev.cause = p->cause;
    } else {
      auto it = cache_.find(ch.key);
      if (it != cache_.end()) {
        ev.from = it->second.p.node;
        cache_.erase(it);
      }
      hosted_changed = hosted_.erase(ch.key) != 0;
      ev.type = RoomEventType::kReleased;
      ev.cause = ch.cause == WatchEventType::kExpired ? "expired" : "released";
    }
    hosted = hosted_.size();
  }
  if (hosted_changed && ctx_.o.host) {
    nodes_.set_hosted(hosted);
    ctx_.core.wake();  // publish our room count soon
  }
  if (quiet) return;
  if (ev.type == RoomEventType::kMoved) {
    ctx_.log().log(LogLevel::kDebug, "room moved: room={} from={} to={} cause={}",
                   ev.room, ev.from, ev.to, ev.cause);
  }
  ctx_.post(ctx_.o.on_room_event, std::move(ev));
}

absl::StatusOr<std::optional<Placement>> Placements::locate(const std::string& room) {
  const std::uint64_t generation = mirror_->generation();
  const bool exact = mirror_->exact();
  {
    MutexLock lock(mu_);
    auto it = cache_.find(room);
    if (exact && it != cache_.end()) {
      ++hits_;
      ctx_.log().log(LogLevel::kDebug, "room located: room={} node={} cache=hit", room,
                     it->second.p.node);
      return std::optional<Placement>(it->second.p);
    }
    ++misses_;
  }
  FLEET_ASSIGN_OR_RETURN(auto got, ctx_.c.get(placement_map(ctx_.o.name), room));
  if (!got.has_value()) return std::optional<Placement>();
  FLEET_ASSIGN_OR_RETURN(Placement p, decode_placement(room, got->value));
  // Into the cache, unless a change came meanwhile (it may be newer).
  mirror_->offer(room, got->value, got->version, generation);
  ctx_.log().info("room located: room={} node={} cache=miss", room, p.node);
  return std::optional<Placement>(std::move(p));
}

absl::StatusOr<bool> Placements::move(const Placement& cur, const std::string& stored,
                                      const Node& to, const std::string& cause,
                                      const std::string& why, Placement* next) {
  *next = moved_to(cur, to, cause);
  FLEET_ASSIGN_OR_RETURN(
      bool swapped, ctx_.c.compare_and_set(placement_map(ctx_.o.name), cur.room, stored,
                                           encode_placement(*next)));
  if (!swapped) return false;
  ctx_.log().info("room moved: room={} from={} to={} cause={}{}", cur.room, cur.node,
                  next->node, cause, why.empty() ? std::string() : " why=" + why);
  nodes_.note_assigned(next->node);
  return true;
}

absl::StatusOr<Placement> Placements::assign(const std::string& room,
                                             const std::string& preferred) {
  const std::string map = placement_map(ctx_.o.name);
  for (int attempt = 0; attempt < 5; ++attempt) {
    FLEET_ASSIGN_OR_RETURN(auto got, ctx_.c.get(map, room));
    std::optional<Placement> cur;
    if (got.has_value()) {
      FLEET_ASSIGN_OR_RETURN(cur, decode_placement(room, got->value));
      bool live = nodes_.is_live_node(cur->node);
      if (!live) {
        // Our view may be behind: ask the backend before moving anything.
        FLEET_RETURN_IF_ERROR(ctx_.core.live().refresh());
        live = ctx_.core.live().contains(cur->node);
      }
      if (live) return *cur;
    }
    std::optional<std::pair<Node, std::string>> choice;
    if (!preferred.empty()) {
      if (auto node = nodes_.live_node(preferred)) {
        choice = std::make_pair(*node, std::string("where it was before"));
      }
    }
    if (!choice) {
      auto c = nodes_.select(room, {});
      if (!c.ok()) {
        // Nodes that started since our last look are not in our view yet.
        FLEET_RETURN_IF_ERROR(nodes_.reread());
        c = nodes_.select(room, {});
      }
      if (!c.ok()) return c.status();
      choice = std::move(*c);
    }
    const Node& node = choice->first;
    if (!cur) {
      Placement next;
      next.room = room;
      next.node = node.id;
      next.address = node.info.address;
      next.generation = 1;
      next.cause = "assigned";
      FLEET_ASSIGN_OR_RETURN(auto claimed,
                             ctx_.c.claim(map, room, encode_placement(next)));
      if (claimed.claimed) {
        ctx_.log().info("room assigned: room={} node={} why={}", room, node.id,
                        choice->second);
        nodes_.note_assigned(node.id);
        return next;
      }
      continue;  // someone else placed it first: look at theirs
    }
    Placement next;
    FLEET_ASSIGN_OR_RETURN(
        bool swapped, move(*cur, got->value, node, "node-died", choice->second, &next));
    if (swapped) return next;
  }
  return absl::AbortedError(fmt::format(
      "room '{}' kept changing while it was being assigned; try again", room));
}

absl::StatusOr<Placement> Placements::migrate(const std::string& room,
                                              std::string_view to) {
  FLEET_ASSIGN_OR_RETURN(auto got, ctx_.c.get(placement_map(ctx_.o.name), room));
  if (!got.has_value()) {
    return absl::NotFoundError(fmt::format("room '{}' is not assigned", room));
  }
  FLEET_ASSIGN_OR_RETURN(Placement cur, decode_placement(room, got->value));
  std::optional<Node> target;
  if (!to.empty()) {
    const std::string id(to);
    target = nodes_.live_node(id);
    if (!target) {
      // It may have started since our last look.
      FLEET_RETURN_IF_ERROR(nodes_.reread());
      target = nodes_.live_node(id);
    }
    if (!target || target->info.state != NodeState::kServing) {
      return absl::FailedPreconditionError(
          fmt::format("node '{}' is not a live serving node", to));
    }
  } else {
    FLEET_ASSIGN_OR_RETURN(auto chosen, nodes_.select(room, {cur.node}));
    target = chosen.first;
  }
  if (target->id == cur.node) return cur;
  Placement next;
  FLEET_ASSIGN_OR_RETURN(bool swapped,
                         move(cur, got->value, *target, "migrated", "", &next));
  if (!swapped) {
    return absl::AbortedError(
        fmt::format("room '{}' changed while it was being migrated; try again", room));
  }
  return next;
}

absl::StatusOr<bool> Placements::release_if_empty(const std::string& room,
                                                  std::string_view cause) {
  const std::string rmap = room_map(ctx_.o.name, room);
  FLEET_ASSIGN_OR_RETURN(auto participants, ctx_.c.scan(rmap, kParticipantPrefix, 1));
  if (!participants.empty() || has_local_(room)) return false;
  FLEET_ASSIGN_OR_RETURN(auto got, ctx_.c.get(placement_map(ctx_.o.name), room));
  if (got.has_value()) {
    FLEET_ASSIGN_OR_RETURN(
        bool deleted,
        ctx_.c.compare_and_delete(placement_map(ctx_.o.name), room, got->value));
    if (!deleted) return false;  // it changed: whoever changed it decides
  }
  FLEET_ASSIGN_OR_RETURN(auto rest, ctx_.c.scan(rmap));
  std::vector<MapOp> ops;
  bool rejoined = false;
  for (const auto& e : rest) {
    if (e.key.compare(0, kParticipantPrefix.size(), kParticipantPrefix) == 0) {
      rejoined = true;  // a join raced us: that joiner places the room again
      continue;
    }
    ops.push_back(MapOp::compare_and_delete(e.key, e.entry.value));
  }
  if (!rejoined && !ops.empty()) FLEET_RETURN_IF_ERROR(ctx_.c.apply(rmap, ops).status());
  ctx_.log().info("room released: room={} cause={}", room, cause);
  return true;
}

absl::Status Placements::move_rooms_of(const std::string& dead,
                                       std::set<std::string>* touched, std::size_t* moved,
                                       std::size_t* released) {
  FLEET_ASSIGN_OR_RETURN(auto all, ctx_.c.scan(placement_map(ctx_.o.name)));
  for (const auto& e : all) {
    auto p = decode_placement(e.key, e.entry.value);
    if (!p.ok() || p->node != dead) continue;
    touched->erase(e.key);
    FLEET_ASSIGN_OR_RETURN(auto participants, ctx_.c.scan(room_map(ctx_.o.name, e.key),
                                                          kParticipantPrefix, 1));
    if (participants.empty()) {
      FLEET_ASSIGN_OR_RETURN(bool r, release_if_empty(e.key, "node-died"));
      *released += r ? 1 : 0;
      continue;
    }
    auto choice = nodes_.select(e.key, {dead});
    if (!choice.ok()) {
      ctx_.log().warn("room '{}' stays on dead node '{}' for now: {}", e.key, dead,
                      std::string(choice.status().message()));
      return choice.status();
    }
    Placement next;
    FLEET_ASSIGN_OR_RETURN(bool swapped, move(*p, e.entry.value, choice->first,
                                              "node-died", choice->second, &next));
    if (swapped) {
      ++*moved;
      MutexLock lock(mu_);
      ++moved_here_;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::size_t> Placements::republish(const std::vector<std::string>& rooms) {
  std::vector<Placement> placements;
  {
    MutexLock lock(mu_);
    for (const auto& room : hosted_) {
      auto it = cache_.find(room);
      Placement p;
      if (it != cache_.end()) {
        p = it->second.p;
      } else {
        p.room = room;
        p.node = ctx_.me;
        p.address = ctx_.o.host ? ctx_.o.host->address : std::string();
        p.generation = 1;
      }
      placements.push_back(std::move(p));
    }
    for (const auto& room : rooms) {
      auto it = cache_.find(room);
      // A room on a node that is gone is placed again by the next join.
      if (it != cache_.end() && hosted_.count(room) == 0 &&
          ctx_.core.live().contains(it->second.p.node)) {
        placements.push_back(it->second.p);
      }
    }
  }
  std::vector<MapOp> ops;
  for (auto& p : placements) {
    p.cause = "republished";
    ops.push_back(MapOp::claim(p.room, encode_placement(p)));
  }
  for (std::size_t i = 0; i < ops.size(); i += kMaxMapBatchOps) {
    std::vector<MapOp> chunk(ops.begin() + static_cast<std::ptrdiff_t>(i),
                             ops.begin() + static_cast<std::ptrdiff_t>(std::min(
                                               ops.size(), i + kMaxMapBatchOps)));
    FLEET_RETURN_IF_ERROR(ctx_.c.apply(placement_map(ctx_.o.name), chunk).status());
  }
  return placements.size();
}

std::vector<std::string> Placements::hosted() const {
  MutexLock lock(mu_);
  return {hosted_.begin(), hosted_.end()};
}

void Placements::interrupted() {
  MutexLock lock(mu_);
  if (!cache_.empty()) ++drops_;
}

void Placements::fill(RoomsStats* stats) const {
  MutexLock lock(mu_);
  stats->locate_hits = hits_;
  stats->locate_misses = misses_;
  stats->cache_drops = drops_;
  stats->rooms_moved_here = moved_here_;
}

}  // namespace fleet::rooms::internal_rooms
