// End to end: fleet-gateway processes on a real redis-server, in front of
// fake-backend processes, all on loopback. Every process is stopped by its
// PID (and dies with the test through PR_SET_PDEATHSIG).
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "example_servers.hpp"
#include "redis_server.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

std::unique_ptr<Server> gateway(const std::string& ns,
                                const std::vector<std::string>& nodes,
                                std::vector<std::string> extra = {}) {
  return gateway_on(shared_redis_server().url(), ns, nodes, std::move(extra));
}

// A port nothing listens on: bound, then closed.
int dead_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Sends `per_thread` requests from each of `threads` threads, alternating
// between the gateways; returns the count of each HTTP status.
std::map<int, int> load(const std::vector<int>& gateway_ports, int threads,
                        int per_thread) {
  std::mutex mu;
  std::map<int, int> statuses;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        const int code = post(gateway_ports[(t + i) % gateway_ports.size()]);
        std::lock_guard<std::mutex> lock(mu);
        ++statuses[code];
      }
    });
  }
  for (auto& th : pool) th.join();
  return statuses;
}

TEST_CASE("two gateways never send a capacity-1 node more than one request",
          "[e2e][gateway]") {
  const std::string ns = unique_namespace("cap1");
  std::vector<std::unique_ptr<Server>> backends;
  std::vector<std::string> nodes;
  for (int i = 0; i < 3; ++i) {
    backends.push_back(fake_backend("b" + std::to_string(i), 1, 20 + 10 * i, 3));
    nodes.push_back(backends.back()->address() + ",capacity=1");
  }
  auto g1 = gateway(ns, nodes, {"--id", "g1"});
  auto g2 = gateway(ns, nodes, {"--id", "g2"});

  // Rejecting gateways: 10 concurrent clients for 3 slots.
  const auto rejected = load({g1->port(), g2->port()}, 10, 12);
  CHECK(rejected.count(-1) == 0);
  CHECK(rejected.count(502) == 0);
  CHECK(rejected.at(200) > 0);
  CHECK(rejected.at(503) > 0);  // the excess is refused at the gateway
  long served = 0;
  for (auto& b : backends) {
    const Json s = b->get_json("/stats");
    INFO(s.dump());
    CHECK(s["peak_concurrency"].get<int>() == 1);
    CHECK(s["rejected"].get<int>() == 0);  // no node ever saw more than its capacity
    served += s["requests"].get<long>();
  }
  CHECK(served == rejected.at(200));
  // The gateways refused requests while their own requests left room: they
  // saw each other's load. (Which of them did depends on the timing.)
  CHECK(g1->get_json("/fleet")["saw_other_gateways"].get<long>() +
            g2->get_json("/fleet")["saw_other_gateways"].get<long>() >
        0);
  // And each aggregates both gateways' observations of every node.
  const auto seen_deadline = SteadyClock::now() + std::chrono::seconds(10);
  for (;;) {
    int both = 0;
    const Json v1 = g1->get_json("/fleet"), v2 = g2->get_json("/fleet");
    for (const auto& n : v1["nodes"]) both += n["reporters"].get<int>() == 2 ? 1 : 0;
    for (const auto& n : v2["nodes"]) both += n["reporters"].get<int>() == 2 ? 1 : 0;
    if (both == 6) break;
    INFO(v1.dump());
    INFO(v2.dump());
    REQUIRE(SteadyClock::now() < seen_deadline);
    std::this_thread::sleep_for(milliseconds(50));
  }

  // Waiting gateways (--wait-ms): the same load, nobody refused.
  const std::string ns2 = unique_namespace("cap1wait");
  auto w1 = gateway(ns2, nodes, {"--id", "w1", "--wait-ms", "10000"});
  auto w2 = gateway(ns2, nodes, {"--id", "w2", "--wait-ms", "10000"});
  const auto waited = load({w1->port(), w2->port()}, 8, 6);
  CHECK(waited == std::map<int, int>{{200, 48}});
  for (auto& b : backends) {
    const Json s = b->get_json("/stats");
    INFO(s.dump());
    CHECK(s["peak_concurrency"].get<int>() == 1);
    CHECK(s["rejected"].get<int>() == 0);
  }
  CHECK(w1->get_json("/fleet")["rejections"].get<long>() == 0);
}

TEST_CASE("a gateway killed mid-flight: its slots are free again within TTL + heartbeat",
          "[e2e][gateway]") {
  const std::string ns = unique_namespace("kill");
  auto backend = fake_backend("slow", 2, 1200, 12);
  const std::vector<std::string> nodes{backend->address() + ",id=slow,capacity=2"};
  const std::vector<std::string> fast_session{"--session-ttl-ms", "600", "--heartbeat-ms",
                                              "100"};
  auto victim = gateway(ns, nodes, fast_session);
  auto survivor = gateway(ns, nodes, fast_session);
  const std::string slots_key = "fleet:{" + ns + "}:slots:router/default";

  // Two long requests through the victim fill the node.
  std::vector<std::thread> inflight;
  for (int i = 0; i < 2; ++i) inflight.emplace_back([&] { post(victim->port()); });
  const auto fill_deadline = SteadyClock::now() + std::chrono::seconds(10);
  while (unwrap(shared_redis_server().command({"HGET", slots_key, "slow"})) != "2") {
    REQUIRE(SteadyClock::now() < fill_deadline);
    std::this_thread::sleep_for(milliseconds(10));
  }
  CHECK(post(survivor->port()) == 503);  // full: the victim's requests count

  victim->kill();
  const auto killed_at = SteadyClock::now();
  for (auto& t : inflight) t.join();  // their connections broke with the victim
  std::string left;
  while ((left = unwrap(shared_redis_server().command({"HGET", slots_key, "slow"}))) !=
         "(nil)") {
    REQUIRE(SteadyClock::now() - killed_at < std::chrono::seconds(10));
    std::this_thread::sleep_for(milliseconds(10));
  }
  const auto freed_after = SteadyClock::now() - killed_at;
  // TTL 600 ms + one heartbeat 100 ms, and some slack for a loaded machine.
  CHECK(freed_after < milliseconds(600 + 100 + 400));
  // Full capacity again: two concurrent requests through the survivor.
  std::atomic<int> ok{0};
  std::vector<std::thread> two;
  for (int i = 0; i < 2; ++i) {
    two.emplace_back([&] { ok += post(survivor->port()) == 200 ? 1 : 0; });
  }
  for (auto& t : two) t.join();
  CHECK(ok == 2);
  CHECK(backend->get_json("/stats")["rejected"].get<int>() == 0);
}

TEST_CASE("an unreachable node counts as a failure and idempotent requests go elsewhere",
          "[e2e][gateway]") {
  const std::string ns = unique_namespace("dead");
  auto backend = fake_backend("alive", 4, 5, 1);
  const std::string dead = "127.0.0.1:" + std::to_string(dead_port());
  // The dead node first, so that it is tried first.
  auto g =
      gateway(ns, {dead + ",id=a-dead,capacity=4", backend->address() + ",id=b-alive"},
              {"--policy", "least-inflight"});
  httplib::Client cli("127.0.0.1", g->port());
  auto tags = cli.Get("/api/tags");
  REQUIRE(tags);
  CHECK(tags->status == 200);
  CHECK(tags->get_header_value("X-Fleet-Node") == "b-alive");

  // POST is not retried: 502 once the dead node is chosen.
  auto only_dead = gateway(unique_namespace("dead-only"), {dead + ",id=dead"});
  CHECK(post(only_dead->port()) == 502);

  const Json view = g->get_json("/fleet");
  CHECK(view["nodes"][0]["id"] == "a-dead");
  CHECK(view["nodes"][0]["failures"].get<int>() == 1);
  httplib::Client m("127.0.0.1", g->port());
  auto metrics = m.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("fleet_gateway_retries_total 1\n") != std::string::npos);
  CHECK(metrics->body.find("fleet_gateway_upstream_failures_total 1\n") !=
        std::string::npos);
}

TEST_CASE("a client that disconnects mid-stream frees its slot", "[e2e][gateway]") {
  const std::string ns = unique_namespace("disconnect");
  auto backend = fake_backend("stream", 1, 3000, 30);
  auto g = gateway(ns, {backend->address() + ",id=stream,capacity=1"});
  {
    httplib::Client cli("127.0.0.1", g->port());
    int chunks = 0;
    httplib::Request req;
    req.method = "POST";
    req.path = "/api/generate";
    req.body = "{}";
    req.set_header("Content-Type", "application/json");
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
      return ++chunks < 2;  // hang up after 2 chunks
    };
    auto res = cli.send(req);
    CHECK(chunks == 2);
  }
  // The slot comes back once the gateway notices (its next write fails).
  const auto deadline = SteadyClock::now() + std::chrono::seconds(10);
  for (;;) {
    const Json view = g->get_json("/fleet");
    if (view["nodes"][0]["own_inflight"].get<int>() == 0) break;
    REQUIRE(SteadyClock::now() < deadline);
    std::this_thread::sleep_for(milliseconds(20));
  }
  httplib::Client m("127.0.0.1", g->port());
  auto metrics = m.Get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("fleet_gateway_client_disconnects_total 1\n") !=
        std::string::npos);
  CHECK(g->get_json("/fleet")["nodes"][0]["failures"].get<int>() ==
        0);  // not the node's fault
}

TEST_CASE("bad flags: unknown policy, malformed node spec, no nodes", "[e2e][gateway]") {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--node", "127.0.0.1:1", "--policy", "fastest"}, "unknown policy 'fastest'"},
      {{"--node", "127.0.0.1"}, "must start with host:port"},
      {{"--node", "127.0.0.1:80,capacity=zero"}, "capacity must be a positive integer"},
      {{"--node", "127.0.0.1:80,colour=red"}, "unknown key 'colour'"},
      {{}, "give at least one --node"},
      {{"--node", "127.0.0.1:80", "--port", "99999"}, "--port needs an integer"},
  };
  for (const auto& c : cases) {
    INFO(c.message);
    // stderr is not captured; the exit code and a second run through a
    // shell with 2>&1 show the message.
    std::vector<std::string> args{
        "-c", std::string(FLEET_GATEWAY_BINARY) + " \"$@\" 2>&1", "fleet-gateway"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    Child child = spawn("/bin/sh", args);
    int code = 0;
    const std::string out = finish(child, &code, std::chrono::seconds(10));
    CHECK(code == 2);
    CHECK(out.find(c.message) != std::string::npos);
  }
}

}  // namespace
}  // namespace fleet::testing
