// bench_cluster: the same decisions on a single Redis and on a Redis
// Cluster, in one run, each beside a raw hiredis PING to the server that
// holds the namespace (for the cluster: the master of its slot).
//
//   bench_cluster --redis-url redis://127.0.0.1:P/0
//                 --cluster-url redis+cluster://127.0.0.1:P1,... [--json FILE] [--ops N]
//
// Rows (1 thread; p50, p99, ops/s, p50 / PING), prefixed single/ or cluster/:
//   route   fleet::router's decision (least-inflight over 16 nodes), the
//           ticket released before the next one, untimed
//   lock    try_lock then release
//   claim   claim of a new key
// Then the cluster's p50 over the single server's, per operation. A cluster
// adds no round trip (a namespace is one slot, on one node); what differs
// is sharded pub/sub and the node's own cost. scripts/bench starts both.
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fleet/fleet.hpp"
#include "fleet/router.hpp"
#include "redis/directory.hpp"
#include "redis/url.hpp"

namespace {

using bench::die;
using bench::must;
using bench::Result;
using std::chrono::milliseconds;

// Where the namespace's data is: the URL's server, or its slot's master.
fleet::internal::HostPort data_node(const std::string& url, const std::string& ns) {
  auto ep = fleet::internal::resolve_endpoint(url, std::nullopt, {}, std::nullopt,
                                              milliseconds(1000), ns);
  if (!ep.ok()) die("resolve " + url, ep.status());
  if (!ep->directory) return {ep->host, ep->port};
  return must(ep->directory->master(), "locate the slot's master");
}

std::vector<Result> run(const std::string& label, const std::string& url, int ops) {
  fleet::RedisOptions options;
  options.url = url;
  options.namespace_name = "bench-cluster-" + std::to_string(::getpid());
  options.pool_size = 4;
  options.log_sink = fleet::quiet_log_sink();

  const auto node = data_node(url, options.namespace_name);
  redisContext* raw = redisConnect(node.host.c_str(), node.port);
  if (raw == nullptr || raw->err) {
    std::fprintf(stderr, "bench_cluster: cannot connect to %s\n", node.str().c_str());
    std::exit(1);
  }
  auto ping = [raw](int) { freeReplyObject(redisCommand(raw, "PING")); };

  auto c = must(fleet::RedisCoordinator::connect(options), "connect");
  fleet::router::RouterOptions ro;
  ro.name = "bench";
  ro.policy = fleet::router::Policy::kLeastInflight;
  ro.log_sink = fleet::quiet_log_sink();
  auto router = must(fleet::router::Router::create(*c, ro), "router");
  for (int n = 0; n < 16; ++n) {
    fleet::router::NodeSpec spec;
    spec.id = "node-" + std::to_string(n);
    spec.address = "127.0.0.1:" + std::to_string(11000 + n);
    spec.capacity = std::int64_t{1} << 40;
    if (auto st = router->add_node(spec); !st.ok()) die("add_node", st);
  }
  if (auto st = router->run_once(); !st.ok()) die("refresh", st);

  std::optional<fleet::router::Ticket> held;
  std::atomic<long> seq{0};
  std::vector<Result> out;
  out.push_back(bench::measure(
      label + "/route", 1, ops,
      [&](int, int) { held = must(router->acquire(), "acquire"); },
      [&](int, int) {
        if (held) (void)router->release(*held, {true});
        held.reset();
      },
      ping));
  if (held) (void)router->release(*held, {true});
  out.push_back(bench::measure(
      label + "/lock", 1, ops,
      [&](int, int) {
        auto l = must(c->try_lock("bench-lock", milliseconds(5000)), "lock");
        if (!l) die("lock", absl::InternalError("not acquired"));
        if (auto st = c->release(*l); !st.ok()) die("release", st);
      },
      nullptr, ping));
  out.push_back(bench::measure(
      label + "/claim", 1, ops,
      [&](int, int) {
        (void)must(c->claim("bench-rooms", "room-" + std::to_string(seq++), "node-1"),
                   "claim");
      },
      nullptr, ping));
  router.reset();
  c.reset();
  redisFree(raw);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url, cluster_url, json_path;
  int ops = 2000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--redis-url" && i + 1 < argc) {
      url = argv[++i];
    } else if (a == "--cluster-url" && i + 1 < argc) {
      cluster_url = argv[++i];
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--ops" && i + 1 < argc) {
      ops = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: bench_cluster --redis-url URL --cluster-url URL [--json FILE] "
                   "[--ops N]\n");
      return 64;
    }
  }
  if (url.empty() || cluster_url.empty()) {
    std::fprintf(stderr, "bench_cluster: --redis-url and --cluster-url are required\n");
    return 64;
  }
  auto results = run("single", url, ops);
  auto cluster = run("cluster", cluster_url, ops);
  results.insert(results.end(), cluster.begin(), cluster.end());
  bench::report(results, json_path);
  std::printf("\n%-10s %14s %14s %10s\n", "operation", "single p50 us", "cluster p50 us",
              "ratio");
  for (std::size_t i = 0; i < cluster.size(); ++i) {
    const Result& s = results[i];
    const Result& k = cluster[i];
    std::printf("%-10s %14.1f %14.1f %10.2f\n", s.name.substr(7).c_str(), s.p50_us,
                k.p50_us, k.p50_us / s.p50_us);
  }
  return 0;
}
