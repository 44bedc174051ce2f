// fleet::rooms internals shared by its source files: record formats, and
// the names of the maps and channels (docs/redis-keys.md lists them).
#ifndef FLEET_SRC_ROOMS_INTERNAL_HPP_
#define FLEET_SRC_ROOMS_INTERNAL_HPP_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fleet/rooms.hpp"

namespace fleet::rooms::internal_rooms {

// Record kinds and versions (src/internal/record.hpp). Before 0.2:
// placements "rp1" (newline-separated), node records JSON, participants
// "<instance>\n<metadata>".
inline constexpr std::string_view kPlacementMagic = "rp2";
inline constexpr std::string_view kNodeMagic = "rn1";
inline constexpr std::string_view kParticipantMagic = "rm1";
inline constexpr std::string_view kBroadcastMagic = "rb1";
// Keys of a room map.
inline constexpr std::string_view kParticipantPrefix = "p\n";
inline constexpr std::string_view kFlagPrefix = "f\n";
inline constexpr std::string_view kMetadataKey = "m";
// Separates the identities of a broadcast's except-list (a control
// character: never part of an identity).
inline constexpr char kListSeparator = '\x1f';
// Requests the Rooms answer itself.
inline constexpr std::string_view kParticipantsTopic = "fleet.participants";
inline constexpr std::string_view kDisconnectTopic = "fleet.disconnect";
// The absl::Status payload that marks a broadcast delivered here only
// (reached_local_members_only()).
inline constexpr char kLocalOnlyPayload[] = "fleet.rooms/local-only";

// "rooms/<name>/at/<instance>": "<room>\n<identity>" -> "" for each member
// an instance holds (what to clean up when it dies).
std::string index_map(std::string_view name, std::string_view instance);
// "rooms/<name>/bc/<room>".
std::string broadcast_channel(std::string_view name, std::string_view room);
// "rooms/<name>": the prefix of the request and reply channels.
std::string requests_prefix(std::string_view name);

std::string encode_placement(const Placement& p);
std::string encode_node(const Node& n, bool host, std::string_view session);
std::string participant_key(std::string_view identity);
std::string flag_key(std::string_view flag);
std::string encode_participant(std::string_view instance, std::string_view metadata);
// Applies one entry of a room map to `s` (participants kept by identity);
// a malformed participant is skipped.
void apply_state_entry(RoomState* s, const std::string& key, const std::string& value);

// A broadcast on the wire: "rb1\n<sender>\n<incarnation>\n<seq>\n<from>\n
// <except, kListSeparator-joined>\n<payload>".
struct Broadcast {
  std::string_view sender, incarnation, from, payload;
  std::uint64_t sequence = 0;
  std::vector<std::string> except;
};
std::string encode_broadcast(std::string_view sender, std::string_view incarnation,
                             std::uint64_t sequence, const BroadcastOptions& options,
                             std::string_view payload);
// False for a malformed message.
bool decode_broadcast(std::string_view message, Broadcast* out);

}  // namespace fleet::rooms::internal_rooms

#endif  // FLEET_SRC_ROOMS_INTERNAL_HPP_
