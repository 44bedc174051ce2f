// bench_router: fleet::router's routing decision on Redis, 16 nodes x 4
// gateways, beside raw PINGs and beside the pipelined ceiling.
//
//   bench_router --redis-url redis://127.0.0.1:PORT/0 [--json FILE] [--ops N]
//
// Rows (same format as bench_redis, plus a second ratio):
//   min_script_16         the floor of a one-round-trip decision over the
//                         pool's 16 nodes: a minimal script (HMGET 16 fields,
//                         pick the least, HINCRBY it) on a raw hiredis
//                         connection, p50 vs interleaved PING
//   min_script_8          the same over 8 fields, p50 vs PING and vs
//                         min_script_16 (what reading 8 more counts costs)
//   route_<policy>        Router::acquire, 1 and 8 threads, p50 vs interleaved
//                         PING and vs the interleaved min_script_16
//   route_<policy>_busy   the same, 1 thread, while the other gateways hold 3
//                         requests on every node
//   route_throughput      8 threads of one gateway deciding back to back
//                         with the blocking acquire: decisions/s
//   route_throughput_async  the same 8 threads with acquire_async, each
//                         keeping up to 32 decisions in flight (an event-loop
//                         server's way): decisions/s
//   pool_ping_throughput  8 threads sending PING through fleet's connection
//                         pool (pipelined like every fleet call): what 8
//                         blocking threads reach with the cheapest command
//   ceiling_pipelined     a minimal one-round-trip decision script (HMGET 8
//                         fields, pick the least, HINCRBY it) sent in batches
//                         of 64 on one connection: the most decisions/s one
//                         Redis gives on this machine
// and the ratios of both throughputs to ceiling_pipelined.
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>

#include "bench_common.hpp"
#include "fleet/fleet.hpp"
#include "internal/logger.hpp"
#include "redis/connection.hpp"
#include "redis/pool.hpp"
#include "redis/url.hpp"

namespace {

using bench::die;
using bench::must;
using bench::Result;
using SteadyClock = std::chrono::steady_clock;

constexpr int kNodes = 16;
constexpr int kGateways = 4;

const char* kCeilingScript = R"(
local v = redis.call('HMGET', KEYS[1], unpack(ARGV))
local best, bi = nil, 1
for i = 1, #ARGV do
  local x = tonumber(v[i]) or 0
  if best == nil or x < best then best, bi = x, i end
end
redis.call('HINCRBY', KEYS[1], ARGV[bi], 1)
return bi
)";

redisContext* connect_raw(const std::string& host, int port) {
  redisContext* c = redisConnect(host.c_str(), port);
  if (c == nullptr || c->err) {
    std::fprintf(stderr, "bench_router: cannot connect to %s:%d\n", host.c_str(), port);
    std::exit(1);
  }
  return c;
}

std::string load_min_script(redisContext* c) {
  auto* loaded =
      static_cast<redisReply*>(redisCommand(c, "SCRIPT LOAD %s", kCeilingScript));
  if (loaded == nullptr || loaded->type != REDIS_REPLY_STRING) {
    std::fprintf(stderr, "bench_router: SCRIPT LOAD failed\n");
    std::exit(1);
  }
  std::string sha(loaded->str, loaded->len);
  freeReplyObject(loaded);
  return sha;
}

// The minimal script's EVALSHA on `key` (argv points into `fields`).
std::vector<const char*> min_script_argv(const std::string& sha, const std::string& key,
                                         const std::vector<std::string>& fields) {
  std::vector<const char*> argv = {"EVALSHA", sha.c_str(), "1", key.c_str()};
  for (const auto& f : fields) argv.push_back(f.c_str());
  return argv;
}

std::vector<std::string> min_script_fields(int n) {
  std::vector<std::string> fields;
  for (int i = 0; i < n; ++i) fields.push_back("node-" + std::to_string(i));
  return fields;
}

// Decisions/s of the minimal script, pipelined 64 at a time on one connection.
double pipelined_ceiling(redisContext* c, int total) {
  const std::string sha = load_min_script(c), key = "bench-ceiling";
  const auto fields = min_script_fields(8);
  auto argv = min_script_argv(sha, key, fields);
  constexpr int kBatch = 64;
  auto run = [&](int n) {
    for (int done = 0; done < n; done += kBatch) {
      for (int k = 0; k < kBatch; ++k) {
        redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), nullptr);
      }
      for (int k = 0; k < kBatch; ++k) {
        void* r = nullptr;
        if (redisGetReply(c, &r) != REDIS_OK) {
          std::fprintf(stderr, "bench_router: pipelined read failed\n");
          std::exit(1);
        }
        freeReplyObject(r);
      }
    }
  };
  run(total / 10);  // warm-up
  const auto start = SteadyClock::now();
  run(total);
  const double s = std::chrono::duration<double>(SteadyClock::now() - start).count();
  return total / s;
}

// Decisions/s of 8 threads of one gateway, each keeping up to `window`
// decisions in flight with Router::acquire_async (as an event-loop server
// does); the tickets are released after.
double async_throughput(fleet::router::Router& router, int per_thread, int window) {
  struct Thread {
    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0;
    std::vector<fleet::router::Ticket> tickets;
  };
  std::deque<Thread> state(8);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      Thread& me = state[static_cast<std::size_t>(t)];
      me.tickets.reserve(static_cast<std::size_t>(per_thread));
      while (!go) std::this_thread::yield();
      auto done = [&me, window](absl::StatusOr<fleet::router::Ticket> ticket) {
        if (!ticket.ok()) die("acquire_async", ticket.status());
        std::lock_guard<std::mutex> lock(me.mu);
        me.tickets.push_back(*std::move(ticket));
        // Refill when half the window is back (one wake-up per half window).
        if (--me.in_flight <= window / 2) me.cv.notify_one();
      };
      for (int i = 0; i < per_thread; ++i) {
        {
          std::unique_lock<std::mutex> lock(me.mu);
          me.cv.wait(lock, [&] { return me.in_flight < window; });
          ++me.in_flight;
        }
        if (auto st = router.acquire_async({}, done); !st.ok()) die("acquire_async", st);
      }
      std::unique_lock<std::mutex> lock(me.mu);
      me.cv.wait(lock, [&] { return me.in_flight == 0; });
    });
  }
  const auto start = SteadyClock::now();
  go = true;
  for (auto& th : threads) th.join();
  const double s = std::chrono::duration<double>(SteadyClock::now() - start).count();
  for (auto& th : state) {
    for (auto& ticket : th.tickets) (void)router.release(ticket, {true});
  }
  return 8.0 * per_thread / s;
}

// Commands/s of 8 threads each sending PING through one ConnectionPool.
double pool_ping(const std::string& url, int per_thread) {
  const fleet::internal::Logger quiet(fleet::quiet_log_sink(), fleet::LogLevel::kError,
                                      "bench");
  fleet::internal::ConnectionPool pool(
      {*fleet::internal::parse_redis_url(url),
       {std::chrono::milliseconds(1000), std::chrono::milliseconds(1000)},
       8,
       std::chrono::milliseconds(50),
       std::chrono::milliseconds(2000)},
      fleet::real_clock(), &quiet);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      while (!go) std::this_thread::yield();
      for (int i = 0; i < per_thread; ++i) {
        auto r = pool.command({"PING"});
        if (!r.ok()) die("PING", r.status());
      }
    });
  }
  const auto start = SteadyClock::now();
  go = true;
  for (auto& th : threads) th.join();
  return 8.0 * per_thread /
         std::chrono::duration<double>(SteadyClock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string url, json_path;
  // Long enough that two runs agree within 10% (4000 did not: PING itself
  // drifts by a third on this kind of machine over a minute).
  int ops = 20000;
  bool throughput_only = false;  // for profiling: only the 8-thread throughput run
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--redis-url" && i + 1 < argc) {
      url = argv[++i];
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--ops" && i + 1 < argc) {
      ops = std::atoi(argv[++i]);
    } else if (a == "--throughput-only") {
      throughput_only = true;
    } else {
      std::fprintf(stderr,
                   "usage: bench_router --redis-url URL [--json FILE] [--ops N] "
                   "[--throughput-only]\n");
      return 64;
    }
  }
  if (url.rfind("redis://", 0) != 0) {
    std::fprintf(stderr, "bench_router: --redis-url redis://HOST:PORT/DB is required\n");
    return 64;
  }
  const auto host = url.substr(8, url.rfind(':') - 8);
  const int port = std::atoi(url.substr(url.rfind(':') + 1).c_str());

  std::vector<redisContext*> raw;
  for (int t = 0; t < 8; ++t) raw.push_back(connect_raw(host, port));
  auto ping = [&](int t) { freeReplyObject(redisCommand(raw[t], "PING")); };
  // The second baseline: the minimal decision script over the pool's nodes,
  // run synchronously on each thread's raw connection like PING.
  const std::string sha = load_min_script(raw[0]);
  const auto fields16 = min_script_fields(kNodes), fields8 = min_script_fields(8);
  std::vector<std::string> script_keys;
  for (int t = 0; t < 8; ++t) script_keys.push_back("bench-min-" + std::to_string(t));
  std::vector<std::vector<const char*>> argv16, argv8;
  for (int t = 0; t < 8; ++t) {
    argv16.push_back(min_script_argv(sha, script_keys[t], fields16));
    argv8.push_back(min_script_argv(sha, script_keys[t], fields8));
  }
  auto run_argv = [&](int t, std::vector<const char*>& a) {
    freeReplyObject(
        redisCommandArgv(raw[t], static_cast<int>(a.size()), a.data(), nullptr));
  };
  auto min_script = [&](int t) { run_argv(t, argv16[t]); };

  fleet::RedisOptions options;
  options.url = url;
  options.namespace_name = "bench-router-" + std::to_string(::getpid());
  options.pool_size = 8;
  options.log_sink = fleet::quiet_log_sink();

  // 4 gateways over 16 nodes; every gateway has observed every node.
  struct Gateway {
    std::unique_ptr<fleet::Coordinator> coordinator;
    std::unique_ptr<fleet::router::Router> router;
  };
  std::vector<Result> results;
  if (!throughput_only) {
    results.push_back(bench::measure(
        "min_script_16", 1, ops, [&](int t, int) { min_script(t); }, nullptr, ping));
    results.push_back(bench::measure(
        "min_script_8", 1, ops, [&](int t, int) { run_argv(t, argv8[t]); }, nullptr, ping,
        min_script));
  }
  for (auto policy :
       {fleet::router::Policy::kWeighted, fleet::router::Policy::kLeastInflight}) {
    std::deque<Gateway> gateways;
    const std::string pool = std::string("bench-") + std::string(to_string(policy));
    for (int g = 0; g < kGateways; ++g) {
      Gateway gw;
      gw.coordinator = must(fleet::RedisCoordinator::connect(options), "connect");
      fleet::router::RouterOptions ro;
      ro.name = pool;
      ro.policy = policy;
      ro.log_sink = fleet::quiet_log_sink();
      gw.router = must(fleet::router::Router::create(*gw.coordinator, ro), "router");
      gateways.push_back(std::move(gw));
    }
    for (int n = 0; n < kNodes; ++n) {
      fleet::router::NodeSpec spec;
      spec.id = "node-" + std::to_string(n);
      spec.address = "127.0.0.1:" + std::to_string(11000 + n);
      spec.capacity = std::int64_t{1} << 40;  // never full: measure the decision
      if (auto st = gateways[0].router->add_node(spec); !st.ok()) die("add_node", st);
    }
    for (int g = 0; g < kGateways; ++g) {
      auto& r = *gateways[g].router;
      if (auto st = r.run_once(); !st.ok()) die("refresh", st);
      for (int i = 0; i < kNodes * 2; ++i) {
        auto t = must(r.acquire(), "acquire");
        (void)r.release(t, {true, std::chrono::microseconds(1000 * (5 + i % kNodes))});
      }
      if (auto st = r.run_once(); !st.ok()) die("refresh", st);
    }
    for (auto& gw : gateways) (void)gw.router->run_once();

    // Latency: threads share gateway (t % 4); each ticket is released
    // before the next decision, untimed.
    std::vector<std::optional<fleet::router::Ticket>> held(8);
    auto release_held = [&](int t, int) {
      if (held[t]) {
        (void)gateways[t % kGateways].router->release(*held[t], {true});
        held[t].reset();
      }
    };
    auto decide = [&](int t, int) {
      held[t] = must(gateways[t % kGateways].router->acquire(), "acquire");
    };
    const std::string name = "route_" + std::string(to_string(policy));
    for (int threads : {1, 8}) {
      if (throughput_only) break;
      const int per_thread = threads == 1 ? ops : ops / 2;
      results.push_back(bench::measure(name, threads, per_thread, decide, release_held,
                                       ping, min_script));
      for (int t = 0; t < 8; ++t) release_held(t, 0);
    }
    // The same decision on a busy pool: the other three gateways hold 3
    // requests on every node, so the script reads 16 counts, not 16 nils.
    if (!throughput_only) {
      std::vector<std::pair<int, fleet::router::Ticket>> load;
      for (int g = 1; g < kGateways; ++g) {
        for (int n = 0; n < kNodes; ++n) {
          fleet::router::Hints only;  // every node but node-n excluded
          for (int o = 0; o < kNodes; ++o) {
            if (o != n) only.exclude.insert("node-" + std::to_string(o));
          }
          for (int k = 0; k < 3; ++k) {
            load.emplace_back(g, must(gateways[g].router->acquire(only), "load"));
          }
        }
      }
      results.push_back(
          bench::measure(name + "_busy", 1, ops, decide, release_held, ping, min_script));
      release_held(0, 0);
      for (auto& [g, ticket] : load) (void)gateways[g].router->release(ticket, {true});
    }

    // Throughput: 8 request threads of one gateway deciding back to back
    // (tickets released after), sharing that gateway's connections.
    if (policy == fleet::router::Policy::kWeighted) {
      const int per_thread = ops;
      std::vector<std::vector<fleet::router::Ticket>> tickets(8);
      std::atomic<bool> go{false};
      std::vector<std::thread> threads;
      for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
          tickets[t].reserve(per_thread);
          while (!go) std::this_thread::yield();
          for (int i = 0; i < per_thread; ++i) {
            tickets[t].push_back(must(gateways[0].router->acquire(), "acquire"));
          }
        });
      }
      const auto start = SteadyClock::now();
      go = true;
      for (auto& th : threads) th.join();
      const double s = std::chrono::duration<double>(SteadyClock::now() - start).count();
      const double rate = 8.0 * per_thread / s;
      for (int t = 0; t < 8; ++t) {
        for (auto& ticket : tickets[t]) {
          (void)gateways[0].router->release(ticket, {true});
        }
      }
      constexpr int kWindow = 32;
      const double async_rate = async_throughput(*gateways[0].router, ops * 4, kWindow);
      const double ceiling = pipelined_ceiling(raw[0], 64 * 500);
      const double pings = pool_ping(url, ops);
      if (throughput_only) {
        std::printf(
            "%.0f decisions/s (blocking), %.0f/s (async), ceiling %.0f/s, pool PING "
            "%.0f/s\n",
            rate, async_rate, ceiling, pings);
        return 0;
      }
      results.push_back(Result{"route_throughput", 8, 0, 0, rate, 0});
      results.push_back(Result{"route_throughput_async", 8, 0, 0, async_rate, 0});
      results.push_back(Result{"pool_ping_throughput", 8, 0, 0, pings, 0});
      results.push_back(Result{"ceiling_pipelined", 1, 0, 0, ceiling, 0});
      std::printf(
          "routing decisions/s with 8 threads, acquire_async (up to %d in flight "
          "each): %.0f = %.0f%% of the pipelined ceiling (%.0f/s)\n",
          kWindow, async_rate, 100.0 * async_rate / ceiling, ceiling);
      std::printf(
          "routing decisions/s with 8 threads, blocking acquire: %.0f = %.0f%% of the "
          "ceiling\n",
          rate, 100.0 * rate / ceiling);
      std::printf(
          "PING/s with 8 threads through the same connection pool: %.0f = %.0f%% "
          "of the ceiling; decisions reach %.0f%% of that\n",
          pings, 100.0 * pings / ceiling, 100.0 * rate / pings);
    }
    for (auto& gw : gateways) (void)gw.coordinator->leave();
  }
  bench::report(results, json_path);
  for (auto* c : raw) redisFree(c);
  return 0;
}
