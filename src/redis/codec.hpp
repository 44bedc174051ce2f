// How the Redis backend writes its values and pub/sub payloads, and reads
// them back. Every decoder accepts any bytes: malformed input (planted or
// corrupted data) yields nullopt, never a crash or an exception.
#ifndef FLEET_SRC_REDIS_CODEC_HPP_
#define FLEET_SRC_REDIS_CODEC_HPP_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fleet/types.hpp"
#include "internal/parse.hpp"

namespace fleet::internal {

// Member record: length-prefixed fields "<len>:<bytes>" — id, hostname,
// version, started_at (ms since the epoch), session id, metadata count,
// then key/value pairs. Binary-safe.
std::string encode_member(const InstanceInfo& info, std::string_view session_id);
std::optional<Member> decode_member(std::string_view record);

// A session's view of a node: "metric\tvalue\n..." (names have no control
// characters; values are %.17g so they round-trip exactly).
std::string encode_metrics(const std::map<std::string, double>& metrics);

// Aggregation ops for aggregate.lua: "name\top\n...".
std::string encode_ops(const AggregationSpec& spec);

// Map entries: "<version>:<value>".
std::optional<Entry> decode_entry(std::string_view stored);

// Pub/sub payloads.
std::optional<WatchEvent> decode_watch(std::string_view map, std::string_view payload);
// One event (decode_watch's format) or a batch from map_batch.lua
// ("B\n" then framed events); nullopt if any part is malformed.
std::optional<std::vector<WatchEvent>> decode_watch_events(std::string_view map,
                                                           std::string_view payload);
std::string encode_message(std::string_view session_id, std::uint64_t sequence,
                           std::string_view payload);
std::optional<Message> decode_message(std::string_view channel, std::string_view payload);
// Leader channel: "" (no leader) or "<fence>\n<owner>\n<value>".
std::optional<std::optional<Leader>> decode_leader(std::string_view election,
                                                   std::string_view payload);
// Membership channel: "<J|L|E>\n<member record>".
std::optional<MemberEvent> decode_member_event(std::string_view payload);

// slot_acquire.lua's numbers as little-endian doubles, which Lua's struct
// library decodes in one C call (far faster than Lua parsing many ARGV
// strings, or cmsgpack building a table): load_weight, tier_load_limit,
// sample, then per candidate capacity, score, tier. `format` gets the
// matching struct format ("<" and one 'd' per number). The rotate is not
// among them: decisions that differ only by it are sent together, each
// with its rotate appended to `rotates` by append_double.
std::string encode_slot_numbers(const SlotRequest& request, std::string* format);
void append_double(double v, std::string* out);

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_CODEC_HPP_
