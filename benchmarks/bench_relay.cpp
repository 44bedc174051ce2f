// bench_relay: fleet::relay on a real redis-server, beside a raw hiredis
// PING measured in the same run.
//
//  propagation  one owner write (update) until the peer's foreign copy shows
//               it, p50/p99, interleaved with blocks of PINGs;
//  burst        1,000 writes as fast as one thread makes them, then how long
//               after the last write returned the peer shows all of them;
//  restore      100,000 stored sessions: a restarted owner adopting them
//               (new fencing token), and a peer copying them;
//  takeover     the owner's session dropped without leave() (as SIGKILL
//               does): until the peer owns every session (TTL-bound).
#include <hiredis/hiredis.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "bench_common.hpp"
#include "fleet/fleet.hpp"
#include "fmt/format.h"

namespace {

using bench::Clock;
using fleet::relay::Relay;
using std::chrono::milliseconds;

std::unique_ptr<fleet::Coordinator> joined(const std::string& url, const std::string& ns,
                                           const std::string& id, int ttl_ms = 3000) {
  fleet::RedisOptions o;
  o.url = url;
  o.namespace_name = ns;
  o.session_ttl = milliseconds(ttl_ms);
  o.heartbeat_interval = milliseconds(ttl_ms / 5);
  o.command_timeout = milliseconds(10000);
  o.log_sink = fleet::quiet_log_sink();
  auto c = bench::must(fleet::RedisCoordinator::connect(o), "connect");
  fleet::InstanceInfo me;
  me.id = id;
  if (auto st = c->join(me); !st.ok()) bench::die("join", st);
  return c;
}

std::unique_ptr<Relay> relay_on(fleet::Coordinator& c) {
  fleet::relay::RelayOptions o;
  o.log_sink = fleet::quiet_log_sink();
  o.check_interval = milliseconds(100);
  return bench::must(Relay::create(c, o), "relay");
}

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string url, json_path;
  int ops = 5000, restore_n = 100000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--redis-url" && i + 1 < argc) {
      url = argv[++i];
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--ops" && i + 1 < argc) {
      ops = std::atoi(argv[++i]);
    } else if (a == "--restore" && i + 1 < argc) {
      restore_n = std::atoi(argv[++i]);
    } else {
      std::fprintf(
          stderr,
          "usage: bench_relay --redis-url URL [--json FILE] [--ops N] [--restore N]\n");
      return 64;
    }
  }
  if (url.rfind("redis://", 0) != 0) {
    std::fprintf(stderr, "bench_relay: --redis-url redis://HOST:PORT/DB is required\n");
    return 64;
  }
  const auto host = url.substr(8, url.rfind(':') - 8);
  const int port = std::atoi(url.substr(url.rfind(':') + 1).c_str());
  redisContext* raw = redisConnect(host.c_str(), port);
  if (raw == nullptr || raw->err) {
    std::fprintf(stderr, "bench_relay: cannot connect to %s:%d\n", host.c_str(), port);
    return 1;
  }
  auto ping = [&](int) { freeReplyObject(redisCommand(raw, "PING")); };
  const std::string ns = fmt::format("bench-relay-{}", ::getpid());
  std::vector<bench::Result> results;
  nlohmann::json extra = nlohmann::json::array();

  // ---- propagation ---------------------------------------------------------------
  auto ca = joined(url, ns, "a"), cb = joined(url, ns, "b");
  auto ra = relay_on(*ca), rb = relay_on(*cb);
  bench::must(ra->create_session("p", "{\"n\":0}"), "create");
  while (!rb->find("p")) std::this_thread::yield();
  std::uint64_t version = 1;
  results.push_back(bench::measure(
      "relay propagation", 1, ops,
      [&](int, int i) {
        auto s = bench::must(ra->update("p", fmt::format("{{\"n\":{}}}", i)), "update");
        version = s.version;
        for (;;) {
          auto f = rb->find("p");
          if (f && f->version >= version) break;
          std::this_thread::yield();
        }
      },
      {}, ping));
  // The write alone, for comparison.
  results.push_back(bench::measure(
      "relay update (owner only)", 1, ops,
      [&](int, int i) {
        bench::must(ra->update("p", fmt::format("{{\"m\":{}}}", i)), "update");
      },
      {}, ping));

  // ---- burst -----------------------------------------------------------------------
  constexpr int kBurst = 1000;
  for (int i = 0; i < kBurst; ++i) {
    bench::must(ra->create_session("b" + std::to_string(i), "{}"), "create");
  }
  while (rb->counts().foreign < kBurst + 1) std::this_thread::yield();
  const auto burst_start = Clock::now();
  for (int i = 0; i < kBurst; ++i) {
    bench::must(ra->update("b" + std::to_string(i), "{\"burst\":1}"), "update");
  }
  const double burst_writes_us = us_since(burst_start);
  const auto last_write = Clock::now();
  for (int i = 0; i < kBurst; ++i) {
    const std::string id = "b" + std::to_string(i);
    for (;;) {
      auto f = rb->find(id);
      if (f && f->version >= 2) break;
      std::this_thread::yield();
    }
  }
  const double burst_lag_us = us_since(last_write);
  std::printf(
      "burst: %d writes in %.1f ms (%.0f writes/s); all visible on the peer %.2f ms "
      "after the last write returned\n",
      kBurst, burst_writes_us / 1000, kBurst / (burst_writes_us / 1e6),
      burst_lag_us / 1000);
  extra.push_back({{"name", "relay burst 1000"},
                   {"writes_ms", burst_writes_us / 1000},
                   {"visible_after_last_write_ms", burst_lag_us / 1000}});
  rb.reset();
  ra.reset();

  // ---- restore ------------------------------------------------------------------------
  // restore_n sessions owned by "r", written straight into the buckets in
  // batches (as the relay stores them), with "r" not running.
  const std::string rns = ns + "-restore";
  {
    auto writer = joined(url, rns, "writer");
    std::vector<std::vector<fleet::MapOp>> buckets(fleet::relay::kBuckets);
    fleet::relay::Session s;
    s.owner = "r";
    s.fence = 1;
    s.version = 1;
    s.document =
        R"({"address":"127.0.0.2","port_a":40000,"port_b":40001,"a":"10.0.0.1:5000","b":"10.0.0.2:6000"})";
    auto flush = [&](std::size_t b) {
      bench::must(writer->apply(fmt::format("relay/default/s{}", b), buckets[b]),
                  "apply");
      buckets[b].clear();
    };
    const auto fill_start = Clock::now();
    for (int i = 0; i < restore_n; ++i) {
      s.id = "r" + std::to_string(i);
      const auto map = fleet::relay::bucket_map("default", s.id);
      const std::size_t b = std::stoul(map.substr(map.rfind('s') + 1));
      buckets[b].push_back(fleet::MapOp::put(s.id, fleet::relay::encode_session(s)));
      if (buckets[b].size() == fleet::kMaxMapBatchOps) flush(b);
    }
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      if (!buckets[b].empty()) flush(b);
    }
    std::printf(
        "restore: stored %d sessions with Coordinator::apply (batches of %zu puts) in "
        "%.0f ms\n",
        restore_n, fleet::kMaxMapBatchOps, us_since(fill_start) / 1000);
    (void)writer->leave();
  }
  auto cr = joined(url, rns, "r", 30000);
  const auto restore_start = Clock::now();
  auto rr = relay_on(*cr);
  const double restore_own_us = us_since(restore_start);
  const auto own_report = rr->restore_report();
  auto cp = joined(url, rns, "p", 30000);
  const auto peer_start = Clock::now();
  auto rp = relay_on(*cp);
  const double restore_foreign_us = us_since(peer_start);
  std::printf(
      "restore: %zu own sessions adopted in %.0f ms (Relay::create, new fencing token "
      "written to each); a peer copied %zu foreign in %.0f ms\n",
      own_report.own, restore_own_us / 1000, rp->restore_report().foreign,
      restore_foreign_us / 1000);
  extra.push_back({{"name", "relay restore"},
                   {"sessions", restore_n},
                   {"own_adopted", own_report.own},
                   {"own_ms", restore_own_us / 1000},
                   {"foreign_copied", rp->restore_report().foreign},
                   {"foreign_ms", restore_foreign_us / 1000}});
  rp.reset();
  rr.reset();
  cr.reset();
  cp.reset();

  // ---- takeover ---------------------------------------------------------------------
  const std::string tns = ns + "-takeover";
  constexpr int kTtlMs = 1000, kTakeover = 1000;
  auto co = joined(url, tns, "o", kTtlMs), ct = joined(url, tns, "t", kTtlMs);
  auto ro = relay_on(*co), rt = relay_on(*ct);
  for (int i = 0; i < kTakeover; ++i) {
    bench::must(ro->create_session("t" + std::to_string(i), "{}"), "create");
  }
  while (rt->counts().foreign < kTakeover) std::this_thread::yield();
  const auto killed = Clock::now();
  ro.reset();
  co.reset();  // no leave(): the session expires one TTL later, as after SIGKILL
  while (rt->counts().own < kTakeover) std::this_thread::sleep_for(milliseconds(1));
  const double takeover_us = us_since(killed);
  std::printf(
      "takeover: %d sessions owned by the peer %.0f ms after the owner's session "
      "was dropped (session TTL %d ms, heartbeat %d ms, check every 100 ms)\n",
      kTakeover, takeover_us / 1000, kTtlMs, kTtlMs / 5);
  extra.push_back({{"name", "relay takeover"},
                   {"sessions", kTakeover},
                   {"ms", takeover_us / 1000},
                   {"session_ttl_ms", kTtlMs}});
  rt.reset();

  bench::report(results, "");
  if (!json_path.empty()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : results) {
      out.push_back({{"name", r.name},
                     {"p50_us", r.p50_us},
                     {"p99_us", r.p99_us},
                     {"ops_per_s", r.ops_per_s},
                     {"threads", r.threads},
                     {"ratio_to_ping_p50", r.ratio}});
    }
    for (auto& e : extra) out.push_back(e);
    std::ofstream(json_path) << out.dump(2) << "\n";
  }
  redisFree(raw);
  return 0;
}
