// bench_redis: latency and throughput of the Redis backend's decisions,
// each beside a raw hiredis PING round trip measured in the same run.
//
//   bench_redis --redis-url redis://127.0.0.1:PORT/0 [--json FILE] [--ops N]
//
// For every operation and for 1 and 8 threads: p50 and p99 latency, ops/s,
// and p50 as a ratio of the p50 of raw PINGs interleaved with that
// operation's own iterations (same threads, same moment). scripts/bench
// starts a private redis-server and runs this.
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "fleet/fleet.hpp"
#include "internal/logger.hpp"
#include "nlohmann/json.hpp"
#include "redis/connection.hpp"
#include "redis/keys.hpp"
#include "redis/pool.hpp"
#include "redis/scripts.hpp"
#include "redis/url.hpp"

namespace {

using bench::die;
using bench::measure;
using bench::must;
using bench::Result;
using std::chrono::milliseconds;

}  // namespace

int main(int argc, char** argv) {
  std::string url, json_path;
  int ops = 4000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--redis-url" && i + 1 < argc)
      url = argv[++i];
    else if (a == "--json" && i + 1 < argc)
      json_path = argv[++i];
    else if (a == "--ops" && i + 1 < argc)
      ops = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: bench_redis --redis-url URL [--json FILE] [--ops N]\n");
      return 64;
    }
  }
  if (url.empty()) {
    std::fprintf(stderr, "bench_redis: --redis-url is required\n");
    return 64;
  }

  fleet::RedisOptions options;
  options.url = url;
  options.namespace_name = "bench-" + std::to_string(::getpid());
  options.pool_size = 8;
  options.log_sink = fleet::quiet_log_sink();

  // Baseline: one hiredis connection per thread, PING.
  const auto ep_host = url.substr(8, url.rfind(':') - 8);
  const int ep_port = std::atoi(url.substr(url.rfind(':') + 1).c_str());
  std::vector<redisContext*> raw(8);
  for (auto& c : raw) {
    c = redisConnect(ep_host.c_str(), ep_port);
    if (c == nullptr || c->err) {
      std::fprintf(stderr, "bench_redis: cannot connect to %s\n", url.c_str());
      return 1;
    }
  }
  auto ping_once = [&](int t) {
    auto* r = static_cast<redisReply*>(redisCommand(raw[t], "PING"));
    freeReplyObject(r);
  };
  auto ping = [&](int t, int) { ping_once(t); };

  // 4 instances, each with a view of 16 nodes (4 metrics each).
  std::vector<std::unique_ptr<fleet::Coordinator>> instances;
  for (int i = 0; i < 4; ++i) {
    instances.push_back(must(fleet::RedisCoordinator::connect(options), "connect"));
    for (int n = 0; n < 16; ++n) {
      const double x = i * 16 + n;
      auto st = instances.back()->publish_node_state("node-" + std::to_string(n),
                                                     {{"inflight", x},
                                                      {"latency_ms", 10 + x},
                                                      {"cpu", 0.5},
                                                      {"gpu_free_mb", 8000 - x}});
      if (!st.ok()) die("publish_node_state", st);
    }
  }
  fleet::Coordinator& c = *instances[0];

  // The periodic heartbeat is internal to a session; run the very script a
  // session runs, through the same pool and script runner.
  const fleet::internal::Logger quiet(fleet::quiet_log_sink(), fleet::LogLevel::kError,
                                      "bench");
  fleet::internal::ConnectionPool hb_pool(
      {*fleet::internal::parse_redis_url(url),
       {std::chrono::milliseconds(1000), std::chrono::milliseconds(1000)},
       8,
       std::chrono::milliseconds(50),
       std::chrono::milliseconds(2000)},
      fleet::real_clock(), &quiet);
  fleet::internal::Scripts scripts;
  if (auto st = hb_pool.with_connection(
          [&](fleet::internal::RedisConnection& conn) { return scripts.load(conn); });
      !st.ok()) {
    die("SCRIPT LOAD", st);
  }
  const fleet::internal::Keys keys(options.namespace_name);
  auto heartbeat = [&](int t, int) {
    const std::string sid = "bench-session-" + std::to_string(t);
    auto r = hb_pool.with_connection([&](fleet::internal::RedisConnection& conn) {
      // As a session sends it: a fresh incarnation id for a Redis that has
      // none, the one it knows ('' here: no data loss to report), the grace.
      return scripts.run(
          conn, fleet::internal::Script::kHeartbeat,
          {keys.sessions, keys.heartbeats, keys.views_gen, keys.incarnation},
          {sid, "5000", "", "r-bench-incarnation", "2000"});
    });
    if (!r.ok()) die("heartbeat", r.status());
  };
  fleet::AggregationSpec spec;
  spec.metrics = {{"inflight", fleet::Aggregation::kSum},
                  {"latency_ms", fleet::Aggregation::kAvg},
                  {"cpu", fleet::Aggregation::kAvg},
                  {"gpu_free_mb", fleet::Aggregation::kMin}};
  fleet::InstanceInfo me;
  me.id = "bench-0";
  if (auto st = c.join(me); !st.ok()) die("join", st);

  struct Op {
    std::string name;
    std::function<void(int, int)> fn;
    std::function<void(int, int)> setup = nullptr;  // runs before each op, not timed
  };
  std::atomic<long> claim_seq{0};
  const std::vector<Op> suite = {
      {"ping", ping},
      // join() again with the same id (an info update). It holds the
      // session's state lock, so 8 threads on one session queue up.
      {"heartbeat", heartbeat},
      {"join", [&](int, int) { (void)c.join(me); }},
      // Steady state: views unchanged since the last call (served from the
      // cache that aggregate.lua keeps per spec and views generation).
      {"aggregate_16x4",
       [&](int, int) { (void)must(c.aggregate_all(spec), "aggregate"); }},
      // Worst case: another instance published a view just before, so the
      // script recomputes all 64 views.
      {"aggregate_16x4_after_write",
       [&](int, int) { (void)must(c.aggregate_all(spec), "aggregate"); },
       [&](int t, int i) {
         auto st = instances[1 + t % 3]->publish_node_state(
             "node-" + std::to_string(i % 16), {{"inflight", double(i % 7)},
                                                {"latency_ms", 12},
                                                {"cpu", 0.5},
                                                {"gpu_free_mb", 7000}});
         if (!st.ok()) die("publish_node_state", st);
       }},
      {"owned_counter_add",
       [&](int, int i) {
         (void)must(c.owned_counter_add("inflight", i % 2 ? -1 : 1), "owned");
       }},
      {"lock_acquire_release",
       [&](int t, int) {
         auto l = must(c.try_lock("bench-lock-" + std::to_string(t), milliseconds(5000)),
                       "lock");
         if (!l) die("lock", absl::InternalError("not acquired"));
         if (auto st = c.release(*l); !st.ok()) die("release", st);
       }},
      {"claim",
       [&](int, int) {
         (void)must(
             c.claim("bench-rooms", "room-" + std::to_string(claim_seq++), "node-1"),
             "claim");
       }},
  };

  std::vector<Result> results;
  for (int threads : {1, 8}) {
    const int per_thread = threads == 1 ? ops : ops / 2;
    for (const auto& op : suite) {
      results.push_back(
          measure(op.name, threads, per_thread, op.fn, op.setup, ping_once));
    }
  }

  bench::report(results, json_path);
  for (auto* r : raw) redisFree(r);
  return 0;
}
