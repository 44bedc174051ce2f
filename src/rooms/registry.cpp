#include "rooms/registry.hpp"

#include <algorithm>
#include <cmath>

#include "fmt/format.h"
#include "internal/rendezvous.hpp"
#include "internal/status.hpp"
#include "rooms/internal.hpp"

namespace fleet::rooms::internal_rooms {

using internal::MapMirror;
using internal::MutexLock;

absl::Status NodeRegistry::attach() {
  {
    MutexLock lock(mu_);
    self_.id = ctx_.me;
    if (ctx_.o.host) self_.info = *ctx_.o.host;
    published_.clear();
  }
  mirror_ = ctx_.core.mirror(nodes_map(ctx_.o.name), "",
                             [this](const MapMirror::Change& ch) { on_change(ch); });
  FLEET_RETURN_IF_ERROR(mirror_->start());
  return publish_record();
}

absl::Status NodeRegistry::reread() {
  FLEET_RETURN_IF_ERROR(mirror_->resync());
  return ctx_.core.live().refresh();
}

absl::Status NodeRegistry::publish_record(bool force) {
  std::string value;
  {
    MutexLock lock(mu_);
    value = encode_node(self_, ctx_.o.host.has_value(), ctx_.c.session_id());
    if (!force && value == published_) return absl::OkStatus();
  }
  FLEET_RETURN_IF_ERROR(ctx_.c.put(nodes_map(ctx_.o.name), ctx_.me, value).status());
  MutexLock lock(mu_);
  published_ = value;
  absorb_locked(ctx_.me, value);  // the stream confirms it
  return absl::OkStatus();
}

void NodeRegistry::set_state(NodeState state) {
  MutexLock lock(mu_);
  self_.info.state = state;
}

void NodeRegistry::set_load(std::int64_t clients, double cpu) {
  MutexLock lock(mu_);
  self_.stats.clients = clients;
  self_.stats.cpu = cpu;
}

void NodeRegistry::set_hosted(std::size_t rooms) {
  MutexLock lock(mu_);
  self_.stats.rooms = static_cast<std::int64_t>(rooms);
}

void NodeRegistry::on_change(const MapMirror::Change& ch) {
  MutexLock lock(mu_);
  if (ch.kind == MapMirror::Kind::kSet) {
    absorb_locked(ch.key, ch.value);
  } else {
    registry_.erase(ch.key);
  }
}

void NodeRegistry::absorb_locked(const std::string& id, const std::string& value) {
  Registered rec;
  rec.raw = value;
  auto n = decode_node(id, value);
  if (n.ok()) {
    rec.node = *n;
  } else if (n.status().code() != absl::StatusCode::kNotFound) {
    ctx_.log().warn("skipping a malformed node record of '{}'", id);
    return;
  }
  registry_[id] = std::move(rec);
}

std::vector<Node> NodeRegistry::nodes() const {
  MutexLock lock(mu_);
  std::vector<Node> out;
  for (const auto& [id, rec] : registry_) {
    if (rec.node && ctx_.core.live().contains(id)) out.push_back(*rec.node);
  }
  return out;
}

bool NodeRegistry::is_live_node(const std::string& id) const {
  return live_node(id).has_value();
}

std::optional<Node> NodeRegistry::live_node(const std::string& id) const {
  MutexLock lock(mu_);
  auto it = registry_.find(id);
  if (it == registry_.end() || !it->second.node || !ctx_.core.live().contains(id)) {
    return std::nullopt;
  }
  return it->second.node;
}

absl::StatusOr<std::pair<Node, std::string>> NodeRegistry::select(
    const std::string& room, const std::set<std::string>& exclude) const {
  MutexLock lock(mu_);
  std::vector<const Node*> candidates;
  std::size_t in_region = 0, serving = 0;
  const std::string& region = ctx_.o.region;
  for (const auto& [id, rec] : registry_) {
    if (!rec.node || exclude.count(id) != 0 || !ctx_.core.live().contains(id)) continue;
    const Node& n = *rec.node;
    if (n.info.state != NodeState::kServing) continue;
    ++serving;
    if (n.info.max_rooms > 0 && n.stats.rooms >= n.info.max_rooms) continue;
    candidates.push_back(&n);
    if (!region.empty() && n.info.region == region) ++in_region;
  }
  if (candidates.empty()) {
    if (serving > 0) {
      return absl::ResourceExhaustedError(fmt::format(
          "every live serving node is at max_rooms ({} of them): no room for room '{}'",
          serving, room));
    }
    return absl::UnavailableError(
        fmt::format("no live serving node for room '{}' ({} instances known)", room,
                    registry_.size()));
  }
  const bool regional = in_region > 0;
  auto load = [](const Node& n) {
    const double rooms = n.info.max_rooms > 0
                             ? static_cast<double>(n.stats.rooms) / n.info.max_rooms
                             : static_cast<double>(n.stats.rooms) / 1000.0;
    return rooms + std::min(n.stats.cpu, 1.0) * 0.5;
  };
  const Node* best = nullptr;
  double best_load = 0;
  std::uint64_t best_w = 0;
  for (const Node* n : candidates) {
    if (regional && n->info.region != region) continue;
    const double l = load(*n);
    const std::uint64_t w = internal::rendezvous_weight(room, n->id);
    if (best == nullptr || l < best_load - 1e-9 ||
        (std::abs(l - best_load) <= 1e-9 && w > best_w)) {
      best = n;
      best_load = l;
      best_w = w;
    }
  }
  std::string why =
      fmt::format("least loaded of {} serving node(s){} ({} rooms, cpu {:.2f})",
                  regional ? in_region : candidates.size(),
                  regional ? fmt::format(" in region '{}'", region) : std::string(),
                  best->stats.rooms, best->stats.cpu);
  return std::make_pair(*best, std::move(why));
}

void NodeRegistry::note_assigned(const std::string& node) {
  // Until the node publishes its count again, count what we placed there,
  // so that a burst of assignments spreads.
  MutexLock lock(mu_);
  auto it = registry_.find(node);
  if (it != registry_.end() && it->second.node) ++it->second.node->stats.rooms;
}

std::vector<std::string> NodeRegistry::gone() const {
  MutexLock lock(mu_);
  std::vector<std::string> out;
  for (const auto& [id, rec] : registry_) {
    if (!ctx_.core.live().contains(id)) out.push_back(id);
  }
  return out;
}

std::set<std::string> NodeRegistry::registered() const {
  MutexLock lock(mu_);
  std::set<std::string> out;
  for (const auto& [id, rec] : registry_) out.insert(id);
  return out;
}

std::optional<std::pair<std::string, bool>> NodeRegistry::record(
    const std::string& id) const {
  MutexLock lock(mu_);
  auto it = registry_.find(id);
  if (it == registry_.end()) return std::nullopt;
  return std::make_pair(it->second.raw, it->second.node.has_value());
}

absl::StatusOr<bool> NodeRegistry::remove(const std::string& id, const std::string& raw) {
  FLEET_ASSIGN_OR_RETURN(bool deleted,
                         ctx_.c.compare_and_delete(nodes_map(ctx_.o.name), id, raw));
  if (deleted) {
    MutexLock lock(mu_);
    registry_.erase(id);
  }
  return deleted;
}

}  // namespace fleet::rooms::internal_rooms
