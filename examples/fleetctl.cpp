// fleetctl: look inside a fleet in Redis.
//
//   fleetctl --redis-url URL [--namespace N] instances|nodes|counters|locks|leaders|maps
//   [--json] [TLS flags, for rediss:// URLs: see tls_flags.hpp]
//   fleetctl --redis-url URL [--namespace N] sessions [--relay NAME] [--json]
//   fleetctl --redis-url URL [--namespace N] rooms [ROOM] [--rooms NAME] [--json]
//
// `sessions` reads fleet::relay's records and prints, per live relay
// instance, the sessions it owns and the foreign copies it should hold
// (those of the groups it replicates): `own: N  foreign: N  total: N`.
// `rooms` reads fleet::rooms's records: each room, its hosting node (and
// whether that node is live) and its participants per instance; `rooms
// ROOM` one room's placement, metadata, flags and participants.
//
// A readable table by default, JSON for scripts. Read-only: it does not join
// the fleet. The password comes from the URL or FLEET_REDIS_PASSWORD and is
// never printed.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fleet/fleet.hpp"
#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "redis/connection.hpp"
#include "redis/inspect.hpp"
#include "redis/url.hpp"
#include "tls_flags.hpp"

namespace {

using fleet::internal::Inspector;
using nlohmann::json;

constexpr const char* kUsage =
    "usage: fleetctl --redis-url URL [--namespace N] "
    "instances|nodes|counters|locks|leaders|maps|sessions [--relay NAME] "
    "[--json]\n"
    "       fleetctl --redis-url URL [--namespace N] rooms [ROOM] [--rooms NAME] "
    "[--json]\n" FLEET_TLS_FLAGS_USAGE;

// Prints rows as aligned columns under a header.
void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& r : rows) {
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t c = 0; c < cells.size(); ++c) {
      out += cells[c];
      if (c + 1 < cells.size()) out += std::string(width[c] - cells[c].size() + 2, ' ');
    }
    std::puts(out.c_str());
  };
  line(header);
  for (const auto& r : rows) line(r);
  if (rows.empty()) std::puts("(none)");
}

std::string num(double v) { return fmt::format("{:.6g}", v); }

int fail(const absl::Status& st) {
  std::fprintf(stderr, "fleetctl: %s\n", st.ToString().c_str());
  return st.code() == absl::StatusCode::kInvalidArgument ? 64 : 1;
}

bool replicates(const std::string& groups, const std::string& group) {
  if (groups == "*") return true;
  std::size_t start = 0;
  while (start <= groups.size()) {
    std::size_t end = groups.find(',', start);
    if (end == std::string::npos) end = groups.size();
    if (groups.compare(start, end - start, group) == 0) return true;
    start = end + 1;
  }
  return false;
}

template <typename Dump>
int sessions(Inspector& inspect, const std::string& relay, bool as_json, Dump dump) {
  if (auto st = fleet::validate_name("relay name", relay); !st.ok()) return fail(st);
  auto members = inspect.instances();
  if (!members.ok()) return fail(members.status());
  auto registry = inspect.map_entries("relay/" + relay + "/instances");
  if (!registry.ok()) return fail(registry.status());
  std::map<std::string, std::string> live;  // instance -> groups it replicates
  for (const auto& e : *registry) {
    for (const auto& m : *members) {
      if (m.member.info.id == e.key) live[e.key] = e.entry.value;
    }
  }
  std::vector<fleet::relay::Session> all;
  std::size_t malformed = 0;
  for (std::size_t b = 0; b < fleet::relay::kBuckets; ++b) {
    auto entries = inspect.map_entries(fmt::format("relay/{}/s{}", relay, b));
    if (!entries.ok()) return fail(entries.status());
    for (const auto& e : *entries) {
      auto s = fleet::relay::decode_session(e.key, e.entry.value);
      if (s.ok()) {
        all.push_back(std::move(*s));
      } else {
        ++malformed;
      }
    }
  }
  struct Row {
    std::size_t own = 0, foreign = 0;
  };
  std::map<std::string, Row> rows;
  for (const auto& [id, groups] : live) rows[id];
  std::size_t orphaned = 0;
  for (const auto& s : all) {
    if (live.count(s.owner) == 0) ++orphaned;
    for (auto& [id, row] : rows) {
      if (s.owner == id) {
        ++row.own;
      } else if (replicates(live[id], s.group)) {
        ++row.foreign;
      }
    }
  }
  if (as_json) {
    json out = json::array();
    for (const auto& [id, r] : rows) {
      out.push_back({{"instance", id},
                     {"own", r.own},
                     {"foreign", r.foreign},
                     {"total", r.own + r.foreign},
                     {"replicates", live[id]}});
    }
    dump(json{{"relay", relay},
              {"sessions", all.size()},
              {"orphaned", orphaned},
              {"malformed", malformed},
              {"instances", out}});
    return 0;
  }
  for (const auto& [id, r] : rows) {
    std::printf("%s  own: %zu  foreign: %zu  total: %zu\n", id.c_str(), r.own, r.foreign,
                r.own + r.foreign);
  }
  if (rows.empty()) std::puts("(no live relay instances)");
  std::printf(
      "sessions: %zu  orphaned (owner gone, not yet taken): %zu  malformed: %zu\n",
      all.size(), orphaned, malformed);
  return 0;
}

template <typename Dump>
int rooms(Inspector& inspect, const std::string& name, const std::string& only,
          bool as_json, Dump dump) {
  namespace fr = fleet::rooms;
  if (auto st = fleet::validate_name("rooms name", name); !st.ok()) return fail(st);
  if (!only.empty()) {
    if (auto st = fr::validate_room(only); !st.ok()) return fail(st);
  }
  auto members = inspect.instances();
  if (!members.ok()) return fail(members.status());
  std::set<std::string> live;
  for (const auto& m : *members) live.insert(m.member.info.id);
  auto placements = inspect.map_entries(fr::placement_map(name));
  if (!placements.ok()) return fail(placements.status());
  std::map<std::string, std::optional<fr::Placement>> rooms;
  std::size_t malformed = 0;
  for (const auto& e : *placements) {
    if (!only.empty() && e.key != only) continue;
    auto p = fr::decode_placement(e.key, e.entry.value);
    if (p.ok()) {
      rooms[e.key] = *p;
    } else {
      ++malformed;
    }
  }
  if (!only.empty() && rooms.empty()) rooms[only] = std::nullopt;
  json out = json::array();
  std::vector<std::vector<std::string>> table;
  for (const auto& [room, p] : rooms) {
    auto entries = inspect.map_entries(fr::room_map(name, room));
    if (!entries.ok()) return fail(entries.status());
    fr::RoomState st;
    std::map<std::string, std::size_t> per_instance;
    for (const auto& e : *entries) {
      if (e.key == "m") {
        st.metadata = e.entry.value;
      } else if (e.key.rfind("f\n", 0) == 0) {
        st.flags[e.key.substr(2)] = e.entry.value;
      } else if (auto q = fr::decode_participant(e.key, e.entry.value); q.ok()) {
        ++per_instance[q->instance];
        st.participants.push_back(*q);
      }
    }
    std::sort(st.participants.begin(), st.participants.end(),
              [](const auto& a, const auto& b) { return a.identity < b.identity; });
    json j = {{"room", room},
              {"node", p ? p->node : ""},
              {"node_live", p && live.count(p->node) != 0},
              {"generation", p ? p->generation : 0},
              {"participants_per_instance", per_instance}};
    if (!only.empty()) {
      j["address"] = p ? p->address : "";
      j["cause"] = p ? p->cause : "";
      j["previous_node"] = p ? p->previous_node : "";
      j["metadata"] = st.metadata;
      j["flags"] = st.flags;
      json people = json::array();
      for (const auto& q : st.participants) {
        people.push_back({{"identity", q.identity}, {"instance", q.instance}});
      }
      j["participants"] = people;
    }
    out.push_back(j);
    std::string counts;
    for (const auto& [inst, n] : per_instance) {
      counts += fmt::format("{}{}:{}", counts.empty() ? "" : " ", inst, n);
    }
    table.push_back(
        {room,
         p ? p->node + (live.count(p->node) != 0 ? "" : " (gone)") : "(not assigned)",
         p ? std::to_string(p->generation) : "-", counts.empty() ? "-" : counts});
    if (!only.empty() && !as_json) {
      print_table({"ROOM", "NODE", "GENERATION", "PARTICIPANTS"}, table);
      if (p)
        std::printf("address: %s  cause: %s\n", p->address.c_str(), p->cause.c_str());
      std::printf("metadata: %s\n", st.metadata.c_str());
      for (const auto& [flag, value] : st.flags) {
        std::printf("flag %s = %s\n", flag.c_str(), value.c_str());
      }
      for (const auto& q : st.participants) {
        std::printf("participant %s  instance %s\n", q.identity.c_str(),
                    q.instance.c_str());
      }
      return 0;
    }
  }
  if (as_json) {
    dump(only.empty() ? json{{"rooms", out}, {"malformed", malformed}} : out[0]);
    return 0;
  }
  print_table({"ROOM", "NODE", "GENERATION", "PARTICIPANTS"}, table);
  std::printf("rooms: %zu  malformed: %zu\n", rooms.size(), malformed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url, ns = "default", what, relay = "default", rooms_name = "default", room;
  bool as_json = false;
  fleet::RedisTlsOptions tls;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 < argc && tls_flag(a, argv[i + 1], &tls))
      ++i;
    else if (a == "--redis-url" && i + 1 < argc)
      url = argv[++i];
    else if (a == "--namespace" && i + 1 < argc)
      ns = argv[++i];
    else if (a == "--relay" && i + 1 < argc)
      relay = argv[++i];
    else if (a == "--rooms" && i + 1 < argc)
      rooms_name = argv[++i];
    else if (a == "--json")
      as_json = true;
    else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (what.empty() && a[0] != '-')
      what = a;
    else if (what == "rooms" && room.empty() && a[0] != '-')
      room = a;
    else {
      std::fputs(kUsage, stderr);
      return 64;
    }
  }
  const std::vector<std::string> verbs = {"instances", "nodes", "counters", "locks",
                                          "leaders",   "maps",  "sessions", "rooms"};
  if (url.empty() || std::find(verbs.begin(), verbs.end(), what) == verbs.end()) {
    std::fputs(kUsage, stderr);
    return 64;
  }
  if (auto st = fleet::validate_name("namespace", ns); !st.ok()) return fail(st);
  // redis+cluster://: the namespace says which slot, so which node.
  auto ep = fleet::internal::resolve_endpoint(url, std::nullopt, tls, std::nullopt,
                                              std::chrono::milliseconds(2000), ns);
  if (!ep.ok()) return fail(ep.status());
  auto conn = fleet::internal::RedisConnection::open(
      *ep, {std::chrono::milliseconds(2000), std::chrono::milliseconds(5000)});
  if (!conn.ok()) return fail(conn.status());
  Inspector inspect(**conn, ns);
  // nlohmann refuses invalid UTF-8; names are any bytes but control chars.
  auto dump = [](const json& j) {
    std::cout << j.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  };

  if (what == "instances") {
    auto rows = inspect.instances();
    if (!rows.ok()) return fail(rows.status());
    if (as_json) {
      json out = json::array();
      for (const auto& r : *rows) {
        const auto& i = r.member.info;
        out.push_back(
            {{"id", i.id},
             {"hostname", i.hostname},
             {"version", i.version},
             {"session", r.member.session_id},
             {"started_at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                   i.started_at.time_since_epoch())
                                   .count()},
             {"heartbeat_age_ms", r.heartbeat_age_ms},
             {"metadata", i.metadata}});
      }
      dump(out);
    } else {
      std::vector<std::vector<std::string>> t;
      for (const auto& r : *rows) {
        const auto& i = r.member.info;
        t.push_back({i.id, i.hostname, i.version, r.member.session_id,
                     std::to_string(r.heartbeat_age_ms) + " ms"});
      }
      print_table({"INSTANCE", "HOST", "VERSION", "SESSION", "LAST HEARTBEAT"}, t);
    }
  } else if (what == "nodes") {
    auto rows = inspect.nodes();
    if (!rows.ok()) return fail(rows.status());
    if (as_json) {
      json out = json::array();
      for (const auto& r : *rows) {
        json metrics = json::object();
        for (const auto& [name, s] : r.metrics) {
          metrics[name] = {{"sum", s.sum},
                           {"avg", s.sum / s.count},
                           {"min", s.min},
                           {"max", s.max},
                           {"reporters", s.count}};
        }
        out.push_back(
            {{"node", r.node}, {"reporters", r.reporters}, {"metrics", metrics}});
      }
      dump(out);
    } else {
      std::vector<std::vector<std::string>> t;
      for (const auto& r : *rows) {
        std::string m;
        for (const auto& [name, s] : r.metrics) {
          m +=
              fmt::format("{}{}={} (sum {}, min {}, max {})", m.empty() ? "" : "  ", name,
                          num(s.sum / s.count), num(s.sum), num(s.min), num(s.max));
        }
        t.push_back({r.node, std::to_string(r.reporters), m});
      }
      print_table({"NODE", "REPORTERS", "METRICS (avg over reporters)"}, t);
    }
  } else if (what == "counters") {
    auto rows = inspect.counters();
    if (!rows.ok()) return fail(rows.status());
    if (as_json) {
      json out = json::array();
      for (const auto& r : *rows) {
        out.push_back({{"name", r.name},
                       {"kind", r.owned ? "owned" : "shared"},
                       {"value", r.value},
                       {"contributors", r.contributors}});
      }
      dump(out);
    } else {
      std::vector<std::vector<std::string>> t;
      for (const auto& r : *rows) {
        t.push_back({r.name, r.owned ? "owned" : "shared", std::to_string(r.value),
                     r.owned ? std::to_string(r.contributors) : "-"});
      }
      print_table({"COUNTER", "KIND", "VALUE", "LIVE CONTRIBUTORS"}, t);
    }
  } else if (what == "locks" || what == "leaders") {
    const bool leaders = what == "leaders";
    auto rows =
        inspect.leases(leaders ? fleet::LeaseKind::kLeadership : fleet::LeaseKind::kLock);
    if (!rows.ok()) return fail(rows.status());
    if (as_json) {
      json out = json::array();
      for (const auto& r : *rows) {
        json j = {{leaders ? "election" : "lock", r.name},
                  {"owner", r.owner},
                  {"fence", r.fence},
                  {"ttl_ms", r.ttl_ms}};
        if (leaders) j["value"] = r.value;
        out.push_back(j);
      }
      dump(out);
    } else {
      std::vector<std::vector<std::string>> t;
      for (const auto& r : *rows) {
        std::vector<std::string> row = {r.name};
        if (leaders) row.push_back(r.value);
        row.insert(row.end(),
                   {r.owner, std::to_string(r.fence), std::to_string(r.ttl_ms) + " ms"});
        t.push_back(row);
      }
      if (leaders) {
        print_table({"ELECTION", "LEADER", "OWNER", "FENCE", "EXPIRES IN"}, t);
      } else {
        print_table({"LOCK", "OWNER", "FENCE", "EXPIRES IN"}, t);
      }
    }
  } else if (what == "sessions") {
    return sessions(inspect, relay, as_json, dump);
  } else if (what == "rooms") {
    return rooms(inspect, rooms_name, room, as_json, dump);
  } else {
    auto rows = inspect.maps();
    if (!rows.ok()) return fail(rows.status());
    if (as_json) {
      json out = json::array();
      for (const auto& r : *rows) {
        out.push_back(
            {{"map", r.name}, {"entries", r.entries}, {"revision", r.revision}});
      }
      dump(out);
    } else {
      std::vector<std::vector<std::string>> t;
      for (const auto& r : *rows) {
        t.push_back({r.name, std::to_string(r.entries), std::to_string(r.revision)});
      }
      print_table({"MAP", "ENTRIES", "REVISION"}, t);
    }
  }
  return 0;
}
