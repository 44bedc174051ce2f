// fleet::rooms record formats: placements, node records, participants,
// broadcasts.
#include <algorithm>

#include "fleet/names.hpp"
#include "fleet/rooms.hpp"
#include "fmt/format.h"
#include "internal/parse.hpp"
#include "internal/record.hpp"
#include "internal/status.hpp"
#include "rooms/internal.hpp"

namespace fleet::rooms {

namespace internal_rooms {

std::string encode_placement(const Placement& p) {
  return internal::RecordWriter(kPlacementMagic)
      .add(p.node)
      .add(p.generation)
      .add(p.cause)
      .add(p.previous_node)
      .add(p.address)
      .str();
}

std::string encode_node(const Node& n, bool host, std::string_view session) {
  internal::RecordWriter w(kNodeMagic);
  w.add(host).add(session);
  if (host) {
    w.add(n.info.address)
        .add(n.info.region)
        .add(n.info.max_rooms)
        .add(to_string(n.info.state))
        .add(n.stats.rooms)
        .add(n.stats.clients)
        .add(n.stats.cpu);
  }
  return w.str();
}

std::string participant_key(std::string_view identity) {
  return fmt::format("{}{}", kParticipantPrefix, identity);
}
std::string flag_key(std::string_view flag) {
  return fmt::format("{}{}", kFlagPrefix, flag);
}
std::string encode_participant(std::string_view instance, std::string_view metadata) {
  return internal::RecordWriter(kParticipantMagic).add(instance).add(metadata).str();
}

std::string index_map(std::string_view name, std::string_view instance) {
  return fmt::format("rooms/{}/at/{}", name, instance);
}
std::string broadcast_channel(std::string_view name, std::string_view room) {
  return fmt::format("rooms/{}/bc/{}", name, room);
}
std::string requests_prefix(std::string_view name) {
  return fmt::format("rooms/{}", name);
}

void apply_state_entry(RoomState* s, const std::string& key, const std::string& value) {
  if (key == kMetadataKey) {
    s->metadata = value;
  } else if (key.compare(0, kFlagPrefix.size(), kFlagPrefix) == 0) {
    s->flags[key.substr(kFlagPrefix.size())] = value;
  } else if (key.compare(0, kParticipantPrefix.size(), kParticipantPrefix) == 0) {
    auto p = decode_participant(key, value);
    if (!p.ok()) return;
    auto it = std::lower_bound(
        s->participants.begin(), s->participants.end(), p->identity,
        [](const Participant& a, const std::string& id) { return a.identity < id; });
    if (it != s->participants.end() && it->identity == p->identity) {
      *it = *p;
    } else {
      s->participants.insert(it, *p);
    }
  }
}

std::string encode_broadcast(std::string_view sender, std::string_view incarnation,
                             std::uint64_t sequence, const BroadcastOptions& options,
                             std::string_view payload) {
  std::string except;
  for (const auto& e : options.except) {
    if (!except.empty()) except += kListSeparator;
    except += e;
  }
  std::string out = fmt::format("{}\n{}\n{}\n{}\n{}\n{}\n", kBroadcastMagic, sender,
                                incarnation, sequence, options.from, except);
  out.append(payload);
  return out;
}

bool decode_broadcast(std::string_view message, Broadcast* out) {
  auto f = internal::split_lines(message, 6, &out->payload);
  if (f.size() != 6 || f[0] != kBroadcastMagic || f[1].empty() ||
      !internal::parse_u64(f[3], &out->sequence)) {
    return false;
  }
  out->sender = f[1];
  out->incarnation = f[2];
  out->from = f[4];
  out->except.clear();
  for (std::size_t pos = 0; pos < f[5].size();) {
    std::size_t end = f[5].find(kListSeparator, pos);
    if (end == std::string_view::npos) end = f[5].size();
    out->except.emplace_back(f[5].substr(pos, end - pos));
    pos = end + 1;
  }
  return true;
}

}  // namespace internal_rooms

using namespace internal_rooms;

std::string_view to_string(NodeState state) {
  switch (state) {
    case NodeState::kStarting:
      return "starting";
    case NodeState::kServing:
      return "serving";
    case NodeState::kDraining:
      return "draining";
  }
  return "unknown";
}

absl::StatusOr<NodeState> parse_node_state(std::string_view text) {
  if (text == "starting") return NodeState::kStarting;
  if (text == "serving") return NodeState::kServing;
  if (text == "draining") return NodeState::kDraining;
  return absl::InvalidArgumentError(
      fmt::format("node state '{}' is not one of starting, serving, draining", text));
}

std::string_view to_string(ParticipantEventType type) {
  switch (type) {
    case ParticipantEventType::kJoined:
      return "joined";
    case ParticipantEventType::kLeft:
      return "left";
    case ParticipantEventType::kUpdated:
      return "updated";
  }
  return "unknown";
}

std::string_view to_string(RoomEventType type) {
  switch (type) {
    case RoomEventType::kAssigned:
      return "assigned";
    case RoomEventType::kMoved:
      return "moved";
    case RoomEventType::kReleased:
      return "released";
  }
  return "unknown";
}

std::string placement_map(std::string_view name) {
  return fmt::format("rooms/{}/placement", name);
}
std::string nodes_map(std::string_view name) {
  return fmt::format("rooms/{}/nodes", name);
}
std::string room_map(std::string_view name, std::string_view room) {
  return fmt::format("rooms/{}/r/{}", name, room);
}

bool reached_local_members_only(const absl::Status& status) {
  return !status.ok() && status.GetPayload(internal_rooms::kLocalOnlyPayload).has_value();
}

absl::Status validate_room(std::string_view room) {
  FLEET_RETURN_IF_ERROR(validate_name("room name", room));
  if (room.size() > kMaxRoomNameBytes) {
    return absl::InvalidArgumentError(fmt::format(
        "room name is {} bytes; at most {} are allowed", room.size(), kMaxRoomNameBytes));
  }
  return absl::OkStatus();
}

absl::Status validate_identity(std::string_view identity) {
  FLEET_RETURN_IF_ERROR(validate_name("participant identity", identity));
  if (identity.size() > kMaxIdentityBytes) {
    return absl::InvalidArgumentError(
        fmt::format("participant identity is {} bytes; at most {} are allowed",
                    identity.size(), kMaxIdentityBytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<Placement> decode_placement(std::string_view room,
                                           std::string_view value) {
  internal::RecordReader r(value, kPlacementMagic);
  Placement p;
  p.room = std::string(room);
  if (!r.next(&p.node) || !r.next(&p.generation) || !r.next(&p.cause) ||
      !r.next(&p.previous_node) || !r.next(&p.address) || !r.done() || p.node.empty() ||
      p.generation == 0) {
    return absl::DataLossError(
        fmt::format("room '{}': malformed placement record", room));
  }
  return p;
}

absl::StatusOr<Node> decode_node(std::string_view id, std::string_view value) {
  internal::RecordReader r(value, kNodeMagic);
  Node n;
  n.id = std::string(id);
  bool host = false;
  std::string_view session, state;
  if (!r.next(&host) || !r.next(&session)) {
    return absl::DataLossError(fmt::format("node '{}': malformed record", id));
  }
  if (!host) {
    if (!r.done())
      return absl::DataLossError(fmt::format("node '{}': malformed record", id));
    return absl::NotFoundError(fmt::format("instance '{}' does not host rooms", id));
  }
  auto parsed = absl::StatusOr<NodeState>(absl::UnknownError(""));
  if (!r.next(&n.info.address) || !r.next(&n.info.region) || !r.next(&n.info.max_rooms) ||
      !r.next(&state) || !(parsed = parse_node_state(state)).ok() ||
      !r.next(&n.stats.rooms) || !r.next(&n.stats.clients) || !r.next(&n.stats.cpu) ||
      !r.done()) {
    return absl::DataLossError(fmt::format("node '{}': malformed record", id));
  }
  n.info.state = *parsed;
  return n;
}

absl::StatusOr<Participant> decode_participant(std::string_view key,
                                               std::string_view value) {
  if (key.substr(0, kParticipantPrefix.size()) != kParticipantPrefix) {
    return absl::InvalidArgumentError("not a participant key");
  }
  Participant p;
  p.identity = std::string(key.substr(kParticipantPrefix.size()));
  internal::RecordReader r(value, kParticipantMagic);
  if (!r.next(&p.instance) || !r.next(&p.metadata) || !r.done() || p.instance.empty() ||
      !validate_identity(p.identity).ok()) {
    return absl::DataLossError(
        fmt::format("participant '{}': malformed record", p.identity));
  }
  return p;
}

}  // namespace fleet::rooms
