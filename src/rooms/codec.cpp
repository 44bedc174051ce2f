// fleet::rooms record formats: placements, node records, participants.
#include <charconv>

#include "fleet/names.hpp"
#include "fleet/rooms.hpp"
#include "fmt/format.h"
#include "internal/status.hpp"
#include "nlohmann/json.hpp"
#include "rooms/internal.hpp"

namespace fleet::rooms {

namespace internal_rooms {

bool parse_u64(std::string_view text, std::uint64_t* out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

std::vector<std::string_view> split_fields(std::string_view value, std::size_t n,
                                           std::string_view* rest) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t nl = value.find('\n', pos);
    if (nl == std::string_view::npos) return {};
    out.push_back(value.substr(pos, nl - pos));
    pos = nl + 1;
  }
  *rest = value.substr(pos);
  return out;
}

std::string encode_placement(const Placement& p) {
  return fmt::format("{}\n{}\n{}\n{}\n{}\n{}", kPlacementMagic, p.node, p.generation,
                     p.cause, p.previous_node, p.address);
}

std::string encode_node(const Node& n, bool host, std::string_view session) {
  nlohmann::json j;
  j["v"] = 1;
  j["host"] = host;
  j["session"] = std::string(session);
  if (host) {
    j["address"] = n.info.address;
    j["region"] = n.info.region;
    j["max_rooms"] = n.info.max_rooms;
    j["state"] = std::string(to_string(n.info.state));
    j["rooms"] = n.stats.rooms;
    j["clients"] = n.stats.clients;
    j["cpu"] = n.stats.cpu;
  }
  // Addresses and regions are the application's text: replace invalid UTF-8
  // rather than throw.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string participant_key(std::string_view identity) {
  return fmt::format("{}{}", kParticipantPrefix, identity);
}
std::string flag_key(std::string_view flag) {
  return fmt::format("{}{}", kFlagPrefix, flag);
}
std::string encode_participant(std::string_view instance, std::string_view metadata) {
  return fmt::format("{}\n{}", instance, metadata);
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
  std::string_view rest;
  auto f = split_fields(value, 5, &rest);
  Placement p;
  if (f.size() != 5 || f[0] != kPlacementMagic || f[1].empty() ||
      !parse_u64(f[2], &p.generation) || p.generation == 0) {
    return absl::DataLossError(
        fmt::format("room '{}': malformed placement record", room));
  }
  p.room = std::string(room);
  p.node = std::string(f[1]);
  p.cause = std::string(f[3]);
  p.previous_node = std::string(f[4]);
  p.address = std::string(rest);
  return p;
}

absl::StatusOr<Node> decode_node(std::string_view id, std::string_view value) {
  auto j = nlohmann::json::parse(value, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("host") ||
      !j["host"].is_boolean()) {
    return absl::DataLossError(fmt::format("node '{}': malformed record", id));
  }
  Node n;
  n.id = std::string(id);
  if (!j["host"].get<bool>()) {
    return absl::NotFoundError(fmt::format("instance '{}' does not host rooms", id));
  }
  try {
    n.info.address = j.at("address").get<std::string>();
    n.info.region = j.at("region").get<std::string>();
    n.info.max_rooms = j.at("max_rooms").get<std::int64_t>();
    auto state = parse_node_state(j.at("state").get<std::string>());
    if (!state.ok()) throw std::runtime_error("state");
    n.info.state = *state;
    n.stats.rooms = j.at("rooms").get<std::int64_t>();
    n.stats.clients = j.at("clients").get<std::int64_t>();
    n.stats.cpu = j.at("cpu").get<double>();
  } catch (const std::exception&) {
    return absl::DataLossError(fmt::format("node '{}': malformed record", id));
  }
  return n;
}

absl::StatusOr<Participant> decode_participant(std::string_view key,
                                               std::string_view value) {
  if (key.substr(0, kParticipantPrefix.size()) != kParticipantPrefix) {
    return absl::InvalidArgumentError("not a participant key");
  }
  const std::size_t nl = value.find('\n');
  Participant p;
  p.identity = std::string(key.substr(kParticipantPrefix.size()));
  if (nl == std::string_view::npos || nl == 0 || !validate_identity(p.identity).ok()) {
    return absl::DataLossError(
        fmt::format("participant '{}': malformed record", p.identity));
  }
  p.instance = std::string(value.substr(0, nl));
  p.metadata = std::string(value.substr(nl + 1));
  return p;
}

}  // namespace fleet::rooms
