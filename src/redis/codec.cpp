#include "redis/codec.hpp"

#include <cstring>

#include <charconv>

#include "fleet/names.hpp"
#include "fmt/format.h"

namespace fleet::internal {
namespace {

// 'S', 'D', 'E': the change a watch event announces.
bool watch_kind(char c, WatchEventType* type) {
  switch (c) {
    case 'S':
      *type = WatchEventType::kSet;
      return true;
    case 'D':
      *type = WatchEventType::kDeleted;
      return true;
    case 'E':
      *type = WatchEventType::kExpired;
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string encode_member(const InstanceInfo& info, std::string_view session_id) {
  std::string out;
  put_field(&out, info.id);
  put_field(&out, info.hostname);
  put_field(&out, info.version);
  const auto started = std::chrono::duration_cast<std::chrono::milliseconds>(
                           info.started_at.time_since_epoch())
                           .count();
  put_field(&out, std::to_string(started));
  put_field(&out, session_id);
  put_field(&out, std::to_string(info.metadata.size()));
  for (const auto& [k, v] : info.metadata) {
    put_field(&out, k);
    put_field(&out, v);
  }
  return out;
}

std::optional<Member> decode_member(std::string_view in) {
  std::string_view id, host, version, started, sid, count;
  if (!take_field(&in, &id) || !take_field(&in, &host) || !take_field(&in, &version) ||
      !take_field(&in, &started) || !take_field(&in, &sid) || !take_field(&in, &count)) {
    return std::nullopt;
  }
  std::int64_t started_ms = 0;
  std::uint64_t n = 0;
  if (id.empty() || !parse_int(started, &started_ms) || !parse_u64(count, &n)) {
    return std::nullopt;
  }
  Member m;
  m.info.id = std::string(id);
  m.info.hostname = std::string(host);
  m.info.version = std::string(version);
  m.info.started_at = Clock::WallTime(std::chrono::milliseconds(started_ms));
  m.session_id = std::string(sid);
  for (std::uint64_t i = 0; i < n; ++i) {
    std::string_view k, v;
    if (!take_field(&in, &k) || !take_field(&in, &v)) return std::nullopt;
    m.info.metadata.emplace(std::string(k), std::string(v));
  }
  if (!in.empty()) return std::nullopt;
  return m;
}

std::string encode_metrics(const std::map<std::string, double>& metrics) {
  std::string out;
  for (const auto& [name, value] : metrics) {
    out.append(name).push_back('\t');
    out.append(fmt::format("{:.17g}", value)).push_back('\n');
  }
  return out;
}

std::string encode_ops(const AggregationSpec& spec) {
  std::string out;
  for (const auto& [name, op] : spec.metrics) {
    out.append(name).push_back('\t');
    out.append(to_string(op)).push_back('\n');
  }
  return out;
}

std::optional<Entry> decode_entry(std::string_view stored) {
  const auto colon = stored.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  Entry e;
  if (!parse_u64(stored.substr(0, colon), &e.version) || e.version == 0) {
    return std::nullopt;
  }
  // Larger than fleet ever writes: not ours, and not worth copying.
  if (stored.size() - colon - 1 > kMaxValueBytes) return std::nullopt;
  e.value = std::string(stored.substr(colon + 1));
  return e;
}

std::optional<WatchEvent> decode_watch(std::string_view map, std::string_view in) {
  // "<S|D|E>\n<version>\n<key length>\n<key><value>"
  if (in.size() < 2 || in[1] != '\n') return std::nullopt;
  WatchEvent ev;
  if (!watch_kind(in[0], &ev.type)) return std::nullopt;
  in.remove_prefix(2);
  const auto nl1 = in.find('\n');
  if (nl1 == std::string_view::npos || !parse_u64(in.substr(0, nl1), &ev.version)) {
    return std::nullopt;
  }
  in.remove_prefix(nl1 + 1);
  const auto nl2 = in.find('\n');
  std::uint64_t key_len = 0;
  if (nl2 == std::string_view::npos || !parse_u64(in.substr(0, nl2), &key_len)) {
    return std::nullopt;
  }
  in.remove_prefix(nl2 + 1);
  if (key_len > in.size()) return std::nullopt;
  ev.map = std::string(map);
  ev.key = std::string(in.substr(0, key_len));
  ev.value = std::string(in.substr(key_len));
  return ev;
}

std::optional<std::vector<WatchEvent>> decode_watch_events(std::string_view map,
                                                           std::string_view in) {
  std::vector<WatchEvent> out;
  if (in.size() < 2 || in[0] != 'B' || in[1] != '\n') {
    auto one = decode_watch(map, in);
    if (!one) return std::nullopt;
    out.push_back(std::move(*one));
    return out;
  }
  // "B\n" then "<S|D|E>\n<version>\n<key length>\n<value length>\n<key><value>"...
  in.remove_prefix(2);
  while (!in.empty()) {
    if (in.size() < 2 || in[1] != '\n') return std::nullopt;
    WatchEvent ev;
    if (!watch_kind(in[0], &ev.type)) return std::nullopt;
    in.remove_prefix(2);
    std::uint64_t fields[3];
    for (auto& f : fields) {
      const auto nl = in.find('\n');
      if (nl == std::string_view::npos || !parse_u64(in.substr(0, nl), &f))
        return std::nullopt;
      in.remove_prefix(nl + 1);
    }
    ev.version = fields[0];
    if (fields[1] > in.size() || fields[2] > in.size() - fields[1]) return std::nullopt;
    ev.map = std::string(map);
    ev.key = std::string(in.substr(0, fields[1]));
    ev.value = std::string(in.substr(fields[1], fields[2]));
    in.remove_prefix(fields[1] + fields[2]);
    out.push_back(std::move(ev));
  }
  return out;
}

std::string encode_message(std::string_view session_id, std::uint64_t sequence,
                           std::string_view payload) {
  std::string out;
  out.reserve(session_id.size() + payload.size() + 24);
  out.append(session_id).push_back('\n');
  out.append(std::to_string(sequence)).push_back('\n');
  out.append(payload);
  return out;
}

std::optional<Message> decode_message(std::string_view channel, std::string_view in) {
  const auto nl1 = in.find('\n');
  if (nl1 == std::string_view::npos || nl1 == 0) return std::nullopt;
  const auto nl2 = in.find('\n', nl1 + 1);
  if (nl2 == std::string_view::npos) return std::nullopt;
  Message m;
  if (!parse_u64(in.substr(nl1 + 1, nl2 - nl1 - 1), &m.sequence)) return std::nullopt;
  m.channel = std::string(channel);
  m.publisher = std::string(in.substr(0, nl1));
  m.payload = std::string(in.substr(nl2 + 1));
  return m;
}

std::optional<std::optional<Leader>> decode_leader(std::string_view election,
                                                   std::string_view in) {
  if (in.empty()) return std::optional<Leader>();
  const auto nl1 = in.find('\n');
  if (nl1 == std::string_view::npos) return std::nullopt;
  const auto nl2 = in.find('\n', nl1 + 1);
  if (nl2 == std::string_view::npos) return std::nullopt;
  Leader l;
  if (!parse_u64(in.substr(0, nl1), &l.fence)) return std::nullopt;
  l.election = std::string(election);
  l.owner = std::string(in.substr(nl1 + 1, nl2 - nl1 - 1));
  l.value = std::string(in.substr(nl2 + 1));
  return std::optional<Leader>(std::move(l));
}

std::optional<MemberEvent> decode_member_event(std::string_view in) {
  if (in.size() < 2 || in[1] != '\n') return std::nullopt;
  MemberEventType type;
  switch (in[0]) {
    case 'J':
      type = MemberEventType::kJoined;
      break;
    case 'L':
      type = MemberEventType::kLeft;
      break;
    case 'E':
      type = MemberEventType::kExpired;
      break;
    default:
      return std::nullopt;
  }
  auto m = decode_member(in.substr(2));
  if (!m) return std::nullopt;
  return MemberEvent{type, std::move(*m)};
}

// ---- slot_acquire.lua's numbers ----

void append_double(double v, std::string* out) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof bits);
  char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<char>((bits >> (8 * i)) & 0xff);
  out->append(le, sizeof le);
}

std::string encode_slot_numbers(const SlotRequest& request, std::string* format) {
  const std::size_t count = 3 + 3 * request.candidates.size();
  std::string out;
  out.reserve(count * 8);
  append_double(request.load_weight, &out);
  append_double(request.tier_load_limit, &out);
  append_double(static_cast<double>(request.sample), &out);
  for (const auto& c : request.candidates) {
    append_double(static_cast<double>(c.capacity), &out);
    append_double(c.score, &out);
    append_double(static_cast<double>(c.tier), &out);
  }
  format->assign(1, '<');
  format->append(count, 'd');
  return out;
}

}  // namespace fleet::internal
