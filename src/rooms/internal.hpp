// fleet::rooms internals shared by its source files: record formats and
// the names of the maps and channels (docs/redis-keys.md lists them).
#ifndef FLEET_SRC_ROOMS_INTERNAL_HPP_
#define FLEET_SRC_ROOMS_INTERNAL_HPP_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fleet/rooms.hpp"

namespace fleet::rooms::internal_rooms {

inline constexpr std::string_view kPlacementMagic = "rp1";
inline constexpr std::string_view kBroadcastMagic = "rb1";
inline constexpr std::string_view kRequestMagic = "rq1";
inline constexpr std::string_view kReplyMagic = "rs1";
// Keys of a room map.
inline constexpr std::string_view kParticipantPrefix = "p\n";
inline constexpr std::string_view kFlagPrefix = "f\n";
inline constexpr std::string_view kMetadataKey = "m";
// Separates the identities of a broadcast's except-list (a control
// character: never part of an identity).
inline constexpr char kListSeparator = '\x1f';

bool parse_u64(std::string_view text, std::uint64_t* out);
// The first `n` newline-terminated fields and what follows; empty if the
// value has fewer.
std::vector<std::string_view> split_fields(std::string_view value, std::size_t n,
                                           std::string_view* rest);

std::string encode_placement(const Placement& p);
std::string encode_node(const Node& n, bool host, std::string_view session);
std::string participant_key(std::string_view identity);
std::string flag_key(std::string_view flag);
std::string encode_participant(std::string_view instance, std::string_view metadata);

}  // namespace fleet::rooms::internal_rooms

#endif  // FLEET_SRC_ROOMS_INTERNAL_HPP_
