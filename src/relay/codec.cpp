#include "relay/codec.hpp"

#include "fmt/format.h"
#include "internal/record.hpp"
#include "internal/rendezvous.hpp"

namespace fleet::relay {
namespace {

using std::chrono::milliseconds;

// The record's kind and version (fr1: newline-separated, before 0.2).
constexpr std::string_view kMagic = "fr2";

}  // namespace

std::string_view to_string(SessionEventType type) {
  switch (type) {
    case SessionEventType::kTaken:
      return "taken";
    case SessionEventType::kLost:
      return "lost";
    case SessionEventType::kExpired:
      return "expired";
    case SessionEventType::kRemovedOnRequest:
      return "removed-on-request";
  }
  return "unknown";
}

std::string bucket_map(std::string_view relay_name, std::string_view id) {
  return internal_relay::bucket_name(relay_name, internal::fnv1a(id) % kBuckets);
}

std::string encode_session(const Session& s) {
  return internal::RecordWriter(kMagic)
      .add(s.owner)
      .add(s.fence)
      .add(s.version)
      .add(static_cast<std::int64_t>(s.ttl.count()))
      .add(s.group)
      .add(s.taken_from)
      .add(s.document)
      .str();
}

absl::StatusOr<Session> decode_session(std::string_view id, std::string_view value) {
  internal::RecordReader r(value, kMagic);
  Session s;
  s.id = std::string(id);
  std::int64_t ttl = 0;
  if (!r.next(&s.owner) || !r.next(&s.fence) || !r.next(&s.version) || !r.next(&ttl) ||
      !r.next(&s.group) || !r.next(&s.taken_from) || !r.next(&s.document) || !r.done()) {
    return absl::DataLossError(fmt::format("session '{}': malformed record", id));
  }
  if (s.owner.empty() || s.version == 0 || ttl < 0) {
    return absl::DataLossError(fmt::format("session '{}': malformed record header", id));
  }
  s.ttl = milliseconds(ttl);
  return s;
}

namespace internal_relay {

std::string bucket_name(std::string_view relay_name, std::size_t bucket) {
  return fmt::format("relay/{}/s{}", relay_name, bucket);
}
std::string instances_map(std::string_view relay_name) {
  return fmt::format("relay/{}/instances", relay_name);
}
std::string remove_channel(std::string_view relay_name, std::string_view instance) {
  return fmt::format("relay/{}/remove/{}", relay_name, instance);
}
std::string fence_lock(std::string_view relay_name) {
  return fmt::format("relay/{}/fence", relay_name);
}

std::string encode_groups(const std::set<std::string>& groups) {
  if (groups.empty()) return "*";
  std::string out;
  for (const auto& g : groups) {
    if (!out.empty()) out += ',';
    out += g;
  }
  return out;
}

bool replicates(std::string_view groups, std::string_view group) {
  if (groups == "*") return true;
  std::size_t start = 0;
  while (start <= groups.size()) {
    std::size_t end = groups.find(',', start);
    if (end == std::string_view::npos) end = groups.size();
    if (groups.substr(start, end - start) == group) return true;
    start = end + 1;
  }
  return false;
}

}  // namespace internal_relay
}  // namespace fleet::relay
