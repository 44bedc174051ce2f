// Redis Cluster, for real: masters (and a replica) of a cluster on loopback
// ports, started by the harness and stopped by PID. A namespace lives in
// one slot; sessions find the node serving it, follow it when the slot is
// migrated (MOVED) or its master fails over, and publish/subscribe with
// sharded pub/sub. The fault workload's history checker finds no double
// owner across a migration in the middle of traffic.
#include <thread>

#include "capture_sink.hpp"
#include "catch.hpp"
#include "fast_options.hpp"
#include "fleet/redis_coordinator.hpp"
#include "moved_checks.hpp"
#include "process.hpp"
#include "recorder.hpp"
#include "redis_cluster.hpp"
#include "status.hpp"
#include "workload.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;

std::unique_ptr<RedisCluster> start_cluster(int masters, int replicas = 0) {
  auto c = RedisCluster::start(masters, replicas);
  if (!c.ok()) FAIL("cannot start the Redis Cluster: " << c.status().ToString());
  return *std::move(c);
}

std::unique_ptr<Coordinator> connect(const RedisOptions& o) {
  auto c = RedisCoordinator::connect(o);
  if (!c.ok()) FAIL("connect: " << c.status().ToString());
  return *std::move(c);
}

int slot_of(RedisCluster& cluster, const std::string& ns) {
  auto s = cluster.key_slot("{" + ns + "}");
  REQUIRE(s.ok());
  return *s;
}

std::size_t owner(RedisCluster& cluster, int slot) {
  auto o = cluster.owner_of(slot);
  REQUIRE(o.ok());
  return *o;
}

// A namespace whose slot node `want` serves.
std::string namespace_on(RedisCluster& cluster, std::size_t want,
                         const std::string& stem) {
  for (int i = 0;; ++i) {
    const std::string ns = stem + "-" + std::to_string(i);
    if (owner(cluster, slot_of(cluster, ns)) == want) return ns;
  }
}

TEST_CASE("Cluster: namespaces spread over the shards, sessions follow a migrated slot",
          "[cluster]") {
  auto cluster = start_cluster(3);
  CaptureSink sink;
  const std::string ns0 = namespace_on(*cluster, 0, "spread");
  const std::string ns2 = namespace_on(*cluster, 2, "spread");
  auto a = connect(fast_options(cluster->url(), &sink, ns0));
  auto b = connect(fast_options(cluster->url(), &sink, ns0));
  auto other = connect(fast_options(cluster->url(), &sink, ns2));
  FLEET_REQUIRE_OK(a->join(InstanceInfo{"a", "h", "1", {}, {}}));
  FLEET_REQUIRE_OK(b->join(InstanceInfo{"b", "h", "1", {}, {}}));
  FLEET_REQUIRE_OK(other->join(InstanceInfo{"o", "h", "1", {}, {}}));
  auto claimed = unwrap(a->claim("owners", "room-1", "a", milliseconds::zero()));
  CHECK(claimed.claimed);
  FLEET_REQUIRE_OK(other->put("m", "k", "v", milliseconds::zero()));
  // Each namespace's keys are on the node serving its slot, and only there.
  const std::string owners_key = "fleet:{" + ns0 + "}:map:owners";
  CHECK(unwrap(cluster->node(0).command({"EXISTS", owners_key})) == "1");
  CHECK(unwrap(cluster->node(2).command({"EXISTS", "fleet:{" + ns2 + "}:map:m"})) == "1");
  CHECK(unwrap(cluster->node(1).command({"DBSIZE"})) == "0");

  // Sharded pub/sub: b hears a's message.
  Recorder<std::string> got;
  auto sub =
      b->subscribe("news", [cb = got.callback()](const Message& m) { cb(m.payload); });
  FLEET_REQUIRE_OK(sub);
  FLEET_REQUIRE_OK(a->publish("news", "before"));
  CHECK(eventually([&] { return got.size() == 1; }));
  auto first = unwrap(a->try_lock("job", milliseconds(400)));
  REQUIRE(first.has_value());

  // The slot moves to node 1 (as redis-cli --cluster reshard moves it).
  const int slot = slot_of(*cluster, ns0);
  REQUIRE(cluster->migrate_slot(slot, 1).ok());
  CHECK(unwrap(cluster->node(1).command({"EXISTS", owners_key})) == "1");
  CHECK(unwrap(cluster->node(0).command(
            {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)})) == "0");

  // The next calls follow MOVED, or the directory's own look every second.
  CHECK(eventually([&] { return a->put("m", "k", "after", milliseconds::zero()).ok(); },
                   std::chrono::seconds(5)));
  CHECK(unwrap(cluster->node(1).command({"HEXISTS", "fleet:{" + ns0 + "}:map:m", "k"})) ==
        "1");
  auto again = unwrap(b->claim("owners", "room-1", "b", milliseconds::zero()));
  CHECK_FALSE(again.claimed);
  CHECK(again.entry.value == "a");
  auto members = unwrap(b->members());
  REQUIRE(members.size() == 2);
  CHECK(members[0].info.id == "a");
  CHECK(members[1].info.id == "b");
  CHECK(sink.contains("Redis Cluster: slot " + std::to_string(slot) +
                      " moved from 127.0.0.1:" + std::to_string(cluster->node(0).port()) +
                      " to 127.0.0.1:" + std::to_string(cluster->node(1).port())));
  // The lock is still a's: b waits for its expiry, then gets a higher fence.
  check_next_fence_higher(*b, *first);
  // b's subscription moved with the slot (the cluster unsubscribed it).
  CHECK(eventually([&] {
    (void)a->publish("news", "after");
    return got.size() >= 2;
  }));
  CHECK(got.events().at(1) == "after");
  // The other namespace never noticed.
  CHECK(unwrap(other->get("m", "k")).has_value());
  CHECK(a->connection_state() != ConnectionState::kLost);
}

TEST_CASE("Cluster: a replica takes over by CLUSTER FAILOVER, sessions follow",
          "[cluster]") {
  auto cluster = start_cluster(3, 1);  // node 3 replicates node 0
  CaptureSink sink;
  const std::string ns = namespace_on(*cluster, 0, "failover");
  auto o = fast_options(cluster->url(), &sink, ns);
  o.session_ttl = milliseconds(3000);
  auto a = connect(o);
  auto b = connect(o);
  FLEET_REQUIRE_OK(a->join(InstanceInfo{"a", "h", "1", {}, {}}));
  auto first = unwrap(a->try_lock("job", milliseconds(400)));
  REQUIRE(first.has_value());
  auto claimed = unwrap(a->claim("owners", "room-1", "a", milliseconds::zero()));
  CHECK(claimed.claimed);
  // The claim waited for the replica (WAIT): it has it.
  const std::string owners_key = "fleet:{" + ns + "}:map:owners";
  CHECK(sink.contains("has 1 healthy replica(s)"));

  REQUIRE(cluster->failover(3).ok());
  CHECK(owner(*cluster, slot_of(*cluster, ns)) == 3);
  CHECK(eventually([&] { return b->put("m", "k", "after", milliseconds::zero()).ok(); },
                   std::chrono::seconds(10)));
  CHECK(unwrap(cluster->node(3).command({"HEXISTS", "fleet:{" + ns + "}:map:m", "k"})) ==
        "1");
  CHECK(unwrap(cluster->node(3).command({"HGET", owners_key, "room-1"})).find("a") !=
        std::string::npos);
  check_claim_kept(*b, "owners", "room-1", "a");
  check_next_fence_higher(*b, *first);
  CHECK(a->connection_state() != ConnectionState::kLost);
}

TEST_CASE("Cluster: calls made while the slot is half moved see all of the namespace",
          "[cluster]") {
  // Each call during a key-by-key migration either answers from every key
  // (ASK followed, TRYAGAIN waited out, every key a script reads given in
  // KEYS) or fails with Unavailable: never a partial answer.
  auto cluster = start_cluster(3);
  CaptureSink sink;
  const std::string ns = namespace_on(*cluster, 0, "half");
  auto o = fast_options(cluster->url(), &sink, ns);
  // Multi-key scripts wait out the migration (TRYAGAIN) for a command
  // timeout each; the sessions outlive the whole of it.
  o.command_timeout = milliseconds(200);
  o.session_ttl = milliseconds(30000);
  auto a = connect(o);
  auto b = connect(o);
  FLEET_REQUIRE_OK(a->join(InstanceInfo{"a", "h", "1", {}, {}}));
  FLEET_REQUIRE_OK(b->join(InstanceInfo{"b", "h", "1", {}, {}}));
  constexpr int kNodes = 8;
  for (int n = 0; n < kNodes; ++n) {
    const std::string id = "node-" + std::to_string(n);
    FLEET_REQUIRE_OK(a->publish_node_state(id, {{"load", double(n)}}));
    FLEET_REQUIRE_OK(b->publish_node_state(id, {{"load", double(10 * n)}}));
    FLEET_REQUIRE_OK(
        a->put("m", "k" + std::to_string(n), std::to_string(n), milliseconds::zero()));
  }
  FLEET_REQUIRE_OK(a->owned_counter_add("inflight", 3).status());
  FLEET_REQUIRE_OK(b->owned_counter_add("inflight", 4).status());
  AggregationSpec spec;
  spec.metrics = {{"load", Aggregation::kSum}};

  int calls = 0, whole = 0, unavailable = 0;
  std::string wrong;
  auto check_all = [&] {
    ++calls;
    auto all = a->aggregate_all(spec);
    if (!all.ok()) {
      if (all.status().code() == absl::StatusCode::kUnavailable) {
        ++unavailable;
      } else {
        wrong = all.status().ToString();
      }
      return;
    }
    bool ok = all->size() == static_cast<std::size_t>(kNodes);
    for (const auto& n : *all) {
      const int i = std::stoi(n.node_id.substr(5));
      ok = ok && n.reporters == 2 && n.metrics.at("load").value == 11.0 * i;
    }
    auto sum = b->owned_counter_get("inflight");
    ok = ok && sum.ok() && *sum == 7;
    auto e = b->get("m", "k5");
    ok = ok && e.ok() && e->has_value() && (*e)->value == "5";
    if (ok) {
      ++whole;
    } else if (wrong.empty()) {
      wrong = "a partial answer: " + std::to_string(all->size()) + " nodes";
    }
  };
  const int slot = slot_of(*cluster, ns);
  int batches = 0;
  REQUIRE(cluster
              ->migrate_slot(slot, 1, 1,
                             [&] {
                               if (++batches % 3 == 1) check_all();
                             })
              .ok());
  INFO("calls " << calls << ", whole " << whole << ", unavailable " << unavailable);
  CHECK(wrong.empty());
  CHECK(calls >= 5);
  CHECK(whole + unavailable == calls);
  // After the migration every call answers whole again.
  const int before = whole;
  check_all();
  INFO(wrong);
  CHECK(wrong.empty());
  CHECK(whole == before + 1);
}

TEST_CASE("Cluster: fleetctl reads a namespace from the node serving its slot",
          "[cluster]") {
  auto cluster = start_cluster(3);
  CaptureSink sink;
  const std::string ns = namespace_on(*cluster, 2, "ctl");
  auto a = connect(fast_options(cluster->url(), &sink, ns));
  FLEET_REQUIRE_OK(a->join(InstanceInfo{"inst-a", "h", "1", {}, {}}));
  auto held = unwrap(a->try_lock("job", milliseconds(5000)));
  REQUIRE(held.has_value());
  int code = -1;
  // The URL names nodes 0 and 1; the namespace lives on node 2.
  Child c = spawn(FLEETCTL_BINARY,
                  {"--redis-url", cluster->url(), "--namespace", ns, "instances"});
  std::string out = finish(c, &code, std::chrono::seconds(30));
  CHECK(code == 0);
  CHECK(out.find("inst-a") != std::string::npos);
  c = spawn(FLEETCTL_BINARY, {"--redis-url", cluster->url(), "--namespace", ns, "locks"});
  out = finish(c, &code, std::chrono::seconds(30));
  CHECK(code == 0);
  CHECK(out.find("job") != std::string::npos);
  CHECK(out.find(std::to_string(held->fence)) != std::string::npos);
}

TEST_CASE("Cluster: bad set-ups get clear errors", "[cluster]") {
  CaptureSink sink;
  // A server that is not a cluster node.
  auto single = RedisServer::start();
  REQUIRE(single.ok());
  auto o = fast_options("redis+cluster://127.0.0.1:" + std::to_string((*single)->port()),
                        &sink, "cluster-bad");
  auto c = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(c, kInvalidArgument);
  CHECK(std::string(c.status().message()).find("not a Redis Cluster node") !=
        std::string::npos);
  // No node answers: Unavailable within the timeouts, never a hang, and no
  // password in the message.
  const int port = (*single)->port();
  (*single)->stop();
  o.url = "redis+cluster://:topsecret@127.0.0.1:" + std::to_string(port);
  const auto start = std::chrono::steady_clock::now();
  c = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(c, kUnavailable);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  CHECK(std::string(c.status().message()).find("topsecret") == std::string::npos);

  // A redis:// URL naming a cluster node: that node alone, sharded pub/sub.
  auto cluster = start_cluster(1);
  auto plain = connect(fast_options(cluster->node(0).url(), &sink, "cluster-plain"));
  auto follows = connect(fast_options(cluster->url(), &sink, "cluster-plain"));
  CHECK(sink.contains("is a Redis Cluster node: this session uses it alone"));
  Recorder<std::string> got;
  auto sub =
      follows->subscribe("c", [cb = got.callback()](const Message& m) { cb(m.payload); });
  FLEET_REQUIRE_OK(sub);
  FLEET_REQUIRE_OK(plain->publish("c", "hi"));
  CHECK(eventually([&] { return got.size() == 1; }));
}

TEST_CASE("Cluster: slot migration in the middle of lock, claim and slot traffic",
          "[cluster]") {
  auto cluster = start_cluster(3);
  Timing t;
  Workload w(cluster->node(0), 3, false, t, cluster->url());
  const int slot = slot_of(*cluster, w.ns());
  const std::size_t from = owner(*cluster, slot);
  const std::size_t to = (from + 1) % 3;
  w.start();
  std::this_thread::sleep_for(milliseconds(600));
  const auto begin = History::now();
  // One key at a time, with a pause between: traffic meets the slot half
  // moved (ASK, TRYAGAIN) for a while.
  REQUIRE(cluster
              ->migrate_slot(slot, to, 1,
                             [] { std::this_thread::sleep_for(milliseconds(20)); })
              .ok());
  const auto end = History::now();
  std::this_thread::sleep_for(milliseconds(2000));
  w.stop();
  const auto rep = w.report(begin, end);
  const auto violations = w.history().check();
  w.print("cluster scenario", "slot migrated key by key", rep, end - begin, violations);
  CHECK(violations.empty());
  INFO(rep.first_unexpected);
  CHECK(rep.errors_before_fault.empty());
  for (Op op : {Op::kLock, Op::kClaim, Op::kRoute}) {
    INFO(to_string(op));
    CHECK(rep.recovery.at(op) <= milliseconds(2000));
    CHECK(rep.errors_after_recovery.count(op) == 0);
  }
  // Everything is on the new node and nothing was left on the old one; the
  // sessions released every routed slot.
  CHECK(unwrap(cluster->node(from).command({"DBSIZE"})) == "0");
  const std::string slots = "fleet:{" + w.ns() + "}:slots:router/p";
  CHECK(eventually([&] {
    auto left = cluster->node(to).command({"HGETALL", slots});
    return left.ok() && left->empty();
  }));
}

}  // namespace
}  // namespace fleet::testing
