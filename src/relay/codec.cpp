#include "relay/codec.hpp"

#include "fmt/format.h"
#include "internal/parse.hpp"
#include "internal/rendezvous.hpp"

namespace fleet::relay {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kMagic = "fr1";
constexpr std::size_t kHeaderFields = 7;

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
  return fmt::format("{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}", kMagic, s.owner, s.fence,
                     s.version, s.ttl.count(), s.group, s.taken_from, s.document);
}

absl::StatusOr<Session> decode_session(std::string_view id, std::string_view value) {
  std::string_view document;
  auto f = internal::split_lines(value, kHeaderFields, &document);
  if (f.size() != kHeaderFields) {
    return absl::DataLossError(fmt::format("session '{}': truncated record", id));
  }
  Session s;
  s.id = std::string(id);
  std::int64_t ttl = 0;
  if (f[0] != kMagic || f[1].empty() || !internal::parse_int(f[2], &s.fence) ||
      !internal::parse_int(f[3], &s.version) || !internal::parse_int(f[4], &ttl) ||
      ttl < 0 || s.version == 0) {
    return absl::DataLossError(fmt::format("session '{}': malformed record header", id));
  }
  s.owner = std::string(f[1]);
  s.ttl = milliseconds(ttl);
  s.group = std::string(f[5]);
  s.taken_from = std::string(f[6]);
  s.document = std::string(document);
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
