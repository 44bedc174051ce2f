// fleet::relay's records: the stored session (newline-separated header,
// then the document), where it is stored (one of kBuckets maps by the id's
// hash), and the instance registry's group lists. docs/redis-keys.md.
#ifndef FLEET_SRC_RELAY_CODEC_HPP_
#define FLEET_SRC_RELAY_CODEC_HPP_

#include <set>
#include <string>
#include <string_view>

#include "fleet/relay.hpp"

namespace fleet::relay::internal_relay {

// "relay/<name>/s<b>": bucket b's map.
std::string bucket_name(std::string_view relay_name, std::size_t bucket);
// "relay/<name>/instances": instance id -> the groups it replicates.
std::string instances_map(std::string_view relay_name);
// "relay/<name>/remove/<instance>": forward_remove requests to an owner.
std::string remove_channel(std::string_view relay_name, std::string_view instance);
// The lock whose grants give each incarnation its fencing token.
std::string fence_lock(std::string_view relay_name);

// "*" or the groups joined by ','.
std::string encode_groups(const std::set<std::string>& groups);
// Whether an instance replicating `groups` (encode_groups) keeps `group`.
bool replicates(std::string_view groups, std::string_view group);

}  // namespace fleet::relay::internal_relay

#endif  // FLEET_SRC_RELAY_CODEC_HPP_
