#include "redis/inspect.hpp"

#include <algorithm>
#include <cstdlib>

#include "fmt/format.h"
#include "redis/codec.hpp"

namespace fleet::internal {
namespace {

// Escapes Redis glob metacharacters so a namespace is matched literally.
std::string glob_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

absl::StatusOr<Reply> Inspector::call(const Argv& argv) {
  auto r = conn_.command(argv);
  if (!r.ok()) return r.status();
  if (r->is_error()) return status_from_error(r->str);
  return r;
}

absl::StatusOr<std::int64_t> Inspector::now_ms() {
  auto t = call({"TIME"});
  if (!t.ok()) return t.status();
  std::int64_t s = 0, us = 0;
  if (t->elements.size() != 2 || !parse_int(t->elements[0].str, &s) ||
      !parse_int(t->elements[1].str, &us)) {
    return absl::InternalError("unexpected TIME reply");
  }
  return s * 1000 + us / 1000;
}

absl::StatusOr<bool> Inspector::alive(const std::string& sid, std::int64_t now) {
  auto score = call({"ZSCORE", keys_.sessions, sid});
  if (!score.ok()) return score.status();
  if (score->is_nil()) return false;
  return std::strtod(score->str.c_str(), nullptr) > static_cast<double>(now);
}

absl::StatusOr<std::vector<InstanceRow>> Inspector::instances() {
  auto now = now_ms();
  if (!now.ok()) return now.status();
  auto ids = call({"HGETALL", keys_.member_session});
  if (!ids.ok()) return ids.status();
  std::vector<InstanceRow> out;
  for (std::size_t i = 0; i + 1 < ids->elements.size(); i += 2) {
    const std::string& id = ids->elements[i].str;
    const std::string& sid = ids->elements[i + 1].str;
    auto live = alive(sid, *now);
    if (!live.ok()) return live.status();
    if (!*live) continue;
    auto record = call({"HGET", keys_.members, id});
    auto hb = call({"HGET", keys_.heartbeats, sid});
    if (!record.ok()) return record.status();
    if (!hb.ok()) return hb.status();
    auto m = decode_member(record->str);
    std::int64_t hb_ms = 0;
    if (!m || !parse_int(hb->str, &hb_ms)) continue;  // malformed: not shown
    m->last_heartbeat = Clock::WallTime(std::chrono::milliseconds(hb_ms));
    out.push_back(InstanceRow{std::move(*m), *now - hb_ms});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.member.info.id < b.member.info.id;
  });
  return out;
}

absl::StatusOr<std::vector<NodeRow>> Inspector::nodes() {
  auto now = now_ms();
  if (!now.ok()) return now.status();
  auto ids = call({"SMEMBERS", keys_.node_index});
  if (!ids.ok()) return ids.status();
  std::vector<NodeRow> out;
  for (const auto& id : ids->elements) {
    auto views = conn_.command({"HGETALL", keys_.node(id.str)});
    if (!views.ok()) return views.status();
    if (views->is_error()) continue;  // wrong type: not ours
    NodeRow row;
    row.node = id.str;
    for (std::size_t i = 0; i + 1 < views->elements.size(); i += 2) {
      auto live = alive(views->elements[i].str, *now);
      if (!live.ok()) return live.status();
      if (!*live) continue;
      ++row.reporters;
      std::string_view enc = views->elements[i + 1].str;
      while (!enc.empty()) {
        const auto nl = enc.find('\n');
        std::string_view line = enc.substr(0, nl);
        enc.remove_prefix(nl == std::string_view::npos ? enc.size() : nl + 1);
        const auto tab = line.find('\t');
        if (tab == std::string_view::npos) continue;
        const std::string text(line.substr(tab + 1));
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (end == text.c_str()) continue;
        auto& st = row.metrics[std::string(line.substr(0, tab))];
        st.min = st.count == 0 ? v : std::min(st.min, v);
        st.max = st.count == 0 ? v : std::max(st.max, v);
        st.sum += v;
        ++st.count;
      }
    }
    if (row.reporters > 0) out.push_back(std::move(row));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.node < b.node; });
  return out;
}

absl::StatusOr<std::vector<CounterRow>> Inspector::counters() {
  std::vector<CounterRow> out;
  auto shared = call({"HGETALL", keys_.counters});
  if (!shared.ok()) return shared.status();
  for (std::size_t i = 0; i + 1 < shared->elements.size(); i += 2) {
    CounterRow row;
    row.name = shared->elements[i].str;
    if (!parse_int(shared->elements[i + 1].str, &row.value)) continue;
    out.push_back(std::move(row));
  }
  auto now = now_ms();
  if (!now.ok()) return now.status();
  auto owned = call({"SMEMBERS", keys_.owned_index});
  if (!owned.ok()) return owned.status();
  for (const auto& name : owned->elements) {
    auto parts = conn_.command({"HGETALL", keys_.owned(name.str)});
    if (!parts.ok()) return parts.status();
    if (parts->is_error()) continue;
    CounterRow row;
    row.name = name.str;
    row.owned = true;
    for (std::size_t i = 0; i + 1 < parts->elements.size(); i += 2) {
      auto live = alive(parts->elements[i].str, *now);
      if (!live.ok()) return live.status();
      std::int64_t v = 0;
      if (!*live || !parse_int(parts->elements[i + 1].str, &v)) continue;
      row.value += v;
      ++row.contributors;
    }
    out.push_back(std::move(row));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.owned, a.name) < std::tie(b.owned, b.name);
  });
  return out;
}

absl::StatusOr<std::vector<LeaseRow>> Inspector::leases(LeaseKind kind) {
  const std::string lock_prefix = keys_.lock(kind, "");
  const std::string pattern = glob_escape(lock_prefix) + "*";
  std::vector<LeaseRow> out;
  std::string cursor = "0";
  do {
    auto page = call({"SCAN", cursor, "MATCH", pattern, "COUNT", "500"});
    if (!page.ok()) return page.status();
    if (page->elements.size() != 2) return absl::InternalError("unexpected SCAN reply");
    cursor = page->elements[0].str;
    for (const auto& key : page->elements[1].elements) {
      auto record = conn_.command({"GET", key.str});
      auto ttl = conn_.command({"PTTL", key.str});
      if (!record.ok()) return record.status();
      if (!ttl.ok()) return ttl.status();
      if (record->type != Reply::Type::kString) continue;  // gone, or not ours
      LeaseRow row;
      row.name = key.str.substr(lock_prefix.size());
      auto grant = decode_leader(row.name, record->str);
      if (!grant || !grant->has_value()) continue;
      row.owner = (*grant)->owner;
      row.value = (*grant)->value;
      row.fence = (*grant)->fence;
      row.ttl_ms = ttl->integer;
      out.push_back(std::move(row));
    }
  } while (cursor != "0");
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

absl::StatusOr<std::vector<MapRow>> Inspector::maps() {
  auto revs = call({"HGETALL", keys_.map_revisions});
  if (!revs.ok()) return revs.status();
  std::vector<MapRow> out;
  for (std::size_t i = 0; i + 1 < revs->elements.size(); i += 2) {
    MapRow row;
    row.name = revs->elements[i].str;
    if (!parse_u64(revs->elements[i + 1].str, &row.revision)) continue;
    auto len = conn_.command({"HLEN", keys_.map(row.name)});
    if (!len.ok()) return len.status();
    row.entries = len->is_error() ? 0 : len->integer;
    out.push_back(std::move(row));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

absl::StatusOr<std::vector<MapEntry>> Inspector::map_entries(std::string_view map) {
  auto now = now_ms();
  if (!now.ok()) return now.status();
  const std::string key = keys_.map(map);
  // Entries with a TTL are rare: look expiries up only when there are any.
  auto with_ttl = call({"ZCARD", keys_.entry_ttl});
  if (!with_ttl.ok()) return with_ttl.status();
  const bool any_ttl = with_ttl->integer > 0;
  std::vector<MapEntry> out;
  std::string cursor = "0";
  do {
    auto page = call({"HSCAN", key, cursor, "COUNT", "1000"});
    if (!page.ok()) return page.status();
    if (page->elements.size() != 2) return absl::DataLossError("unexpected HSCAN reply");
    cursor = page->elements[0].str;
    const auto& fields = page->elements[1].elements;
    for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
      auto e = decode_entry(fields[i + 1].str);
      if (!e) continue;
      if (!any_ttl) {
        out.push_back(MapEntry{fields[i].str, std::move(*e)});
        continue;
      }
      auto exp =
          call({"ZSCORE", keys_.entry_ttl, std::string(map) + "\n" + fields[i].str});
      if (!exp.ok()) return exp.status();
      if (!exp->is_nil()) {
        std::int64_t at = 0;
        if (parse_int(exp->str, &at) && at <= *now) continue;
      }
      out.push_back(MapEntry{fields[i].str, std::move(*e)});
    }
  } while (cursor != "0");
  return out;
}

}  // namespace fleet::internal
