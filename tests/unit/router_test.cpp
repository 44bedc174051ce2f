// fleet::router on the in-process backend with a manual clock: every
// policy, capacity, priorities, labels, node states, the circuit breaker,
// waiting for a slot, crashed gateways, and the parsers.
#include <atomic>
#include <deque>
#include <future>
#include <thread>

#include "capture_sink.hpp"
#include "fleet/local_coordinator.hpp"
#include "fleet/router.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;
using namespace fleet::router;

constexpr milliseconds kTtl{300};

// Two or more gateways (sessions with a Router each) on one store.
class Cluster {
 public:
  Cluster() {
    LocalOptions options;
    options.clock = &clock_;
    options.session_ttl = kTtl;
    options.log_sink = quiet_log_sink();
    store_ = LocalStore::create(options).value();
  }

  struct Gateway {
    std::unique_ptr<Coordinator> coordinator;
    std::unique_ptr<Router> router;
  };

  Gateway& add(RouterOptions options = {}) {
    options.background = false;
    if (options.log_sink == nullptr) options.log_sink = &log_;
    Gateway g;
    g.coordinator = LocalCoordinator::connect(store_).value();
    g.router = unwrap(Router::create(*g.coordinator, options));
    gateways_.push_back(std::move(g));
    return gateways_.back();
  }

  // Every gateway's check, with the store's events delivered before and
  // after: what one gateway changed is then in every other's views.
  void refresh_all() {
    store_->drain_events();
    for (auto& g : gateways_) {
      if (g.router) FLEET_REQUIRE_OK(g.router->run_once());
    }
    store_->drain_events();
  }

  ManualClock& clock() { return clock_; }
  std::shared_ptr<LocalStore> store() { return store_; }
  CaptureSink& log() { return log_; }

 private:
  ManualClock clock_;
  CaptureSink log_;
  std::shared_ptr<LocalStore> store_;
  std::deque<Gateway> gateways_;
};

NodeSpec node(const std::string& id, std::int64_t capacity,
              const std::string& region = "", std::optional<double> lat = {},
              std::optional<double> lon = {}) {
  NodeSpec n;
  n.id = id;
  n.address = "127.0.0.1:" + std::to_string(9000 + id.size());
  n.capacity = capacity;
  n.region.name = region;
  n.region.latitude = lat;
  n.region.longitude = lon;
  return n;
}

RouterOptions with_policy(Policy p) {
  RouterOptions o;
  o.name = "llm";
  o.policy = p;
  return o;
}

std::string pick(Router& r, const Hints& h = {}) {
  auto t = r.acquire(h);
  if (!t.ok()) return std::string(absl::StatusCodeToString(t.status().code()));
  return t->node_id;
}

TEST_CASE("least-inflight spreads by load over all gateways and respects capacity",
          "[router]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  auto& b = cl.add(with_policy(Policy::kLeastInflight));
  FLEET_REQUIRE_OK(a.router->add_node(node("n1", 2)));
  FLEET_REQUIRE_OK(a.router->add_node(node("n2", 2)));
  cl.refresh_all();  // b learns the registry

  auto t1 = unwrap(a.router->acquire());
  CHECK(t1.node_id == "n1");  // both idle: the first in a's rotation
  CHECK(t1.address == "127.0.0.1:9002");
  auto t2 = unwrap(b.router->acquire());
  CHECK(t2.node_id == "n2");  // b sees a's request on n1
  // A tie at 1/2 each; a's rotation has moved on to n2, where b's request is.
  auto t3 = unwrap(a.router->acquire());
  CHECK(t3.node_id == "n2");
  CHECK(t3.cluster_inflight == 2);
  CHECK(t3.own_inflight == 1);
  auto t4 = unwrap(b.router->acquire());
  CHECK(t4.node_id == "n1");  // the only room left
  CHECK(t4.cluster_inflight == 2);
  FLEET_REQUIRE_CODE(b.router->acquire(), kResourceExhausted);
  FLEET_REQUIRE_CODE(a.router->acquire(), kResourceExhausted);
  CHECK(a.router->stats().rejections == 1);
  CHECK(a.router->stats().decisions == 2);
  // t3 beside b's t2, and the refusal with only 2 of 4 slots a's own.
  CHECK(a.router->stats().saw_other_gateways == 2);
  // t4 beside a's t1, and the refusal with only 2 of 4 slots b's own.
  CHECK(b.router->stats().saw_other_gateways == 2);

  FLEET_REQUIRE_OK(a.router->release(t1, {true}));
  auto t5 = unwrap(b.router->acquire());
  CHECK(t5.node_id == t1.node_id);  // the only free slot
  FLEET_REQUIRE_CODE(a.router->release(t1, {true}), kFailedPrecondition);  // twice
  FLEET_REQUIRE_CODE(a.router->release(t4, {true}), kFailedPrecondition);  // b's ticket
}

TEST_CASE("capacity 1 nodes: concurrent gateways never overfill", "[router]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kPowerOfTwo));
  auto& b = cl.add(with_policy(Policy::kPowerOfTwo));
  for (int i = 0; i < 3; ++i) {
    FLEET_REQUIRE_OK(a.router->add_node(node("n" + std::to_string(i), 1)));
  }
  cl.refresh_all();
  std::atomic<int> granted{0}, exhausted{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Router& r = *(t % 2 == 0 ? a : b).router;
      for (int i = 0; i < 5; ++i) {
        auto ticket = r.acquire();
        if (ticket.ok()) {
          ++granted;
        } else if (absl::IsResourceExhausted(ticket.status())) {
          ++exhausted;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(granted == 3);
  CHECK(exhausted == 17);
  CHECK(other == 0);
}

TEST_CASE("weighted prefers the faster, healthier node from the gateways' aggregate",
          "[router]") {
  Cluster cl;
  RouterOptions o = with_policy(Policy::kWeighted);
  o.breaker_failures = 100;  // failures here only lower the success rate
  auto& a = cl.add(o);
  auto& b = cl.add(o);
  FLEET_REQUIRE_OK(a.router->add_node(node("slow", 8)));
  FLEET_REQUIRE_OK(a.router->add_node(node("fast", 8)));
  cl.refresh_all();

  // Gateway a measures both nodes: slow takes 400 ms, fast 40 ms.
  for (int i = 0; i < 2; ++i) {
    Ticket t = unwrap(a.router->acquire());
    const bool slow = t.node_id == "slow";
    FLEET_REQUIRE_OK(
        a.router->release(t, {true, std::chrono::microseconds(slow ? 400000 : 40000)}));
  }
  cl.refresh_all();  // a publishes; b reads the aggregate
  auto views = b.router->nodes();
  REQUIRE(views.size() == 2);
  CHECK(views[0].spec.id == "fast");
  REQUIRE(views[0].latency_ms.has_value());
  CHECK(*views[0].latency_ms == Approx(40.0));
  // Both gateways report every registered node (b's in-flight 0 counts);
  // only a has measured its latency.
  CHECK(views[0].reporters == 2);
  // b has measured nothing itself, yet it routes to fast (score 0.1 + n/8
  // with n of its slots in use, against slow's 1.0).
  for (int i = 0; i < 4; ++i) CHECK(pick(*b.router) == "fast");

  // Success rate: p fails every time, q never; q wins although equally fast.
  Cluster cl2;
  auto& x = cl2.add(o);
  FLEET_REQUIRE_OK(x.router->add_node(node("p", 8)));
  FLEET_REQUIRE_OK(x.router->add_node(node("q", 8)));
  for (int i = 0; i < 6; ++i) {
    Ticket t = unwrap(x.router->acquire());
    FLEET_REQUIRE_OK(
        x.router->release(t, {t.node_id == "q", std::chrono::microseconds(10000)}));
  }
  FLEET_REQUIRE_OK(x.router->run_once());
  auto v = x.router->nodes();
  REQUIRE(v.size() == 2);
  REQUIRE(v[0].success_rate.has_value());
  CHECK(*v[0].success_rate < 0.5);  // p failed every time
  CHECK(*v[1].success_rate == Approx(1.0));
  for (int i = 0; i < 3; ++i) CHECK(pick(*x.router) == "q");
}

TEST_CASE("weighted counts free GPU memory and CPU load reported by gateways",
          "[router]") {
  Cluster cl;
  RouterOptions o = with_policy(Policy::kWeighted);
  o.weights.latency = 0;
  o.weights.inflight = 0.01;
  auto& a = cl.add(o);
  FLEET_REQUIRE_OK(a.router->add_node(node("big", 8)));
  FLEET_REQUIRE_OK(a.router->add_node(node("busy", 8)));
  FLEET_REQUIRE_OK(a.router->add_node(node("small", 8)));
  a.router->report_host_metrics("big", 0.1, 40000);
  a.router->report_host_metrics("busy", 0.9, 40000);
  a.router->report_host_metrics("small", 0.1, 8000);
  FLEET_REQUIRE_OK(a.router->run_once());
  CHECK(pick(*a.router) == "big");
  CHECK(pick(*a.router) == "big");
  auto views = a.router->nodes();
  REQUIRE(views[0].gpu_free_mb.has_value());
  CHECK(*views[0].gpu_free_mb == Approx(40000));
  CHECK(*views[1].cpu_load == Approx(0.9));
}

TEST_CASE("region-aware prefers the nearest region under the load limit, else all",
          "[router]") {
  Cluster cl;
  RouterOptions o = with_policy(Policy::kRegionAware);
  o.home = Region{"eu-west", 53.3, -6.3};  // Dublin
  o.region_load_limit = 0.5;
  auto& a = cl.add(o);
  FLEET_REQUIRE_OK(a.router->add_node(node("dub", 4, "eu-west", 53.3, -6.3)));
  FLEET_REQUIRE_OK(a.router->add_node(node("fra", 4, "eu-central", 50.1, 8.7)));
  FLEET_REQUIRE_OK(a.router->add_node(node("nyc", 4, "us-east", 40.7, -74.0)));

  CHECK(pick(*a.router) == "dub");  // 0/4
  CHECK(pick(*a.router) == "dub");  // 1/4
  CHECK(pick(*a.router) == "fra");  // dub at the limit: next nearest
  CHECK(pick(*a.router) == "fra");
  CHECK(pick(*a.router) == "nyc");
  CHECK(pick(*a.router) == "nyc");
  // Every region at 2/4: no region is under the limit, so all count, least
  // loaded first (a tie: the rotation decides, but never beyond capacity).
  for (int i = 0; i < 6; ++i) CHECK(pick(*a.router) != "RESOURCE_EXHAUSTED");
  CHECK(pick(*a.router) == "RESOURCE_EXHAUSTED");

  // A request may bring its own origin.
  Cluster cl2;
  auto& b = cl2.add(o);
  FLEET_REQUIRE_OK(b.router->add_node(node("dub", 4, "eu-west", 53.3, -6.3)));
  FLEET_REQUIRE_OK(b.router->add_node(node("nyc", 4, "us-east", 40.7, -74.0)));
  Hints h;
  h.origin = Region{"", 42.4, -71.1};  // Boston
  CHECK(pick(*b.router, h) == "nyc");
}

TEST_CASE("power-of-two samples two nodes with room and takes the less loaded",
          "[router]") {
  Cluster cl;
  RouterOptions o = with_policy(Policy::kPowerOfTwo);
  o.seed = 42;
  auto& a = cl.add(o);
  FLEET_REQUIRE_OK(a.router->add_node(node("n1", 2)));
  FLEET_REQUIRE_OK(a.router->add_node(node("n2", 2)));
  // With two nodes, both are sampled: it behaves as least-inflight.
  auto t1 = unwrap(a.router->acquire());
  auto t2 = unwrap(a.router->acquire());
  CHECK(t1.node_id != t2.node_id);
  FLEET_REQUIRE_OK(a.router->add_node(node("n3", 2)));
  std::map<std::string, int> count;
  for (int i = 0; i < 4; ++i) ++count[pick(*a.router)];
  CHECK(count == std::map<std::string, int>{{"n1", 1}, {"n2", 1}, {"n3", 2}});
  CHECK(pick(*a.router) == "RESOURCE_EXHAUSTED");
}

TEST_CASE("priority: low-priority requests leave headroom for the others", "[router]") {
  Cluster cl;
  RouterOptions o = with_policy(Policy::kLeastInflight);
  o.low_priority_share = 0.75;
  auto& a = cl.add(o);
  FLEET_REQUIRE_OK(a.router->add_node(node("n", 4)));
  Hints low;
  low.priority = Priority::kLow;
  for (int i = 0; i < 3; ++i) CHECK(pick(*a.router, low) == "n");
  CHECK(pick(*a.router, low) == "RESOURCE_EXHAUSTED");
  Hints high;
  high.priority = Priority::kHigh;
  CHECK(pick(*a.router, high) == "n");
  CHECK(pick(*a.router, high) == "RESOURCE_EXHAUSTED");
}

TEST_CASE("labels, exclusions and node states decide which nodes are eligible",
          "[router]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  auto& b = cl.add(with_policy(Policy::kLeastInflight));
  NodeSpec llama = node("llama-box", 4);
  llama.labels = {"llama3", "mistral"};
  NodeSpec qwen = node("qwen-box", 4);
  qwen.labels = {"qwen"};
  FLEET_REQUIRE_OK(a.router->add_node(llama));
  FLEET_REQUIRE_OK(a.router->add_node(qwen));
  cl.refresh_all();

  Hints h;
  h.label = "qwen";
  CHECK(pick(*b.router, h) == "qwen-box");
  CHECK(pick(*b.router, h) == "qwen-box");
  h.label = "gpt-5";
  CHECK(pick(*b.router, h) == "NOT_FOUND");
  h.label = "llama3";
  h.exclude = {"llama-box"};
  CHECK(pick(*b.router, h) == "UNAVAILABLE");

  FLEET_REQUIRE_OK(a.router->set_node_state("qwen-box", BackendState::kDraining));
  cl.refresh_all();
  CHECK(pick(*b.router) == "llama-box");
  CHECK(pick(*b.router) == "llama-box");
  Hints q;
  q.label = "qwen";
  CHECK(pick(*b.router, q) == "UNAVAILABLE");
  auto views = b.router->nodes();
  REQUIRE(views.size() == 2);
  CHECK(views[1].spec.state == BackendState::kDraining);
  CHECK(views[1].cluster_inflight == 2);  // draining: in-flight ones finish
  FLEET_REQUIRE_CODE(a.router->set_node_state("nope", BackendState::kDown), kNotFound);
  FLEET_REQUIRE_OK(a.router->remove_node("qwen-box"));
  cl.refresh_all();
  CHECK(b.router->nodes().size() == 1);
}

TEST_CASE("a failing node's circuit opens cluster-wide and closes after the cool-down",
          "[router]") {
  Cluster cl;
  RouterOptions o = with_policy(Policy::kLeastInflight);
  o.breaker_failures = 3;
  o.breaker_cooldown = milliseconds(1000);
  auto& a = cl.add(o);
  auto& b = cl.add(o);
  FLEET_REQUIRE_OK(a.router->add_node(node("bad", 8)));
  FLEET_REQUIRE_OK(a.router->add_node(node("good", 8)));
  cl.refresh_all();

  Hints only_bad;
  only_bad.exclude = {"good"};
  for (int i = 0; i < 2; ++i) {
    FLEET_REQUIRE_OK(a.router->release(unwrap(a.router->acquire(only_bad)), {false}));
  }
  FLEET_REQUIRE_OK(a.router->release(unwrap(a.router->acquire(only_bad)), {true}));
  CHECK(pick(*a.router, only_bad) == "bad");  // a success reset the count
  for (int i = 0; i < 3; ++i) {
    FLEET_REQUIRE_OK(a.router->release(unwrap(a.router->acquire(only_bad)), {false}));
  }
  CHECK(a.router->stats().breaker_trips == 1);
  CHECK(pick(*a.router, only_bad) == "UNAVAILABLE");
  cl.refresh_all();  // b reads the shared breaker
  CHECK(pick(*b.router, only_bad) == "UNAVAILABLE");
  for (int i = 0; i < 3; ++i) CHECK(pick(*b.router) == "good");
  auto views = b.router->nodes();
  CHECK(views[0].spec.id == "bad");
  CHECK(views[0].circuit_open);
  CHECK(views[0].circuit_reopens_in == milliseconds(1000));

  cl.clock().advance(milliseconds(999));
  CHECK(pick(*a.router, only_bad) == "UNAVAILABLE");
  cl.clock().advance(milliseconds(1));
  cl.refresh_all();
  CHECK(pick(*b.router, only_bad) == "bad");  // back by itself, for everyone
  // Half-open: a's count is still at the threshold, one more failure re-opens.
  auto t = unwrap(a.router->acquire(only_bad));
  FLEET_REQUIRE_OK(a.router->release(t, {false}));
  CHECK(a.router->stats().breaker_trips == 2);
  CHECK(pick(*a.router, only_bad) == "UNAVAILABLE");
  CHECK(cl.log().contains("failed 3 times in a row"));
}

TEST_CASE("acquire waits for a slot up to hints.wait", "[router]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  FLEET_REQUIRE_OK(a.router->add_node(node("n", 1)));
  auto held = unwrap(a.router->acquire());

  Hints h;
  h.wait = milliseconds(5000);
  auto waiting = std::async(std::launch::async, [&] { return a.router->acquire(h); });
  // Once it has found the node full; the release wakes it, also if it comes
  // before the waiter went to sleep. No time passes on the manual clock.
  while (a.router->stats().waits == 0) std::this_thread::yield();
  FLEET_REQUIRE_OK(a.router->release(held, {true}));
  auto got = waiting.get();
  FLEET_REQUIRE_OK(got.status());
  CHECK(got->node_id == "n");
  CHECK(a.router->stats().waits == 1);

  // Nobody releases: ResourceExhausted once the deadline passes.
  h.wait = milliseconds(100);
  auto timing_out = std::async(std::launch::async, [&] { return a.router->acquire(h); });
  while (a.router->stats().waits == 1) std::this_thread::yield();
  // Advance in steps until it gives up (it re-checks after every step).
  for (int i = 0;
       i < 1000 && timing_out.wait_for(milliseconds(1)) != std::future_status::ready;
       ++i) {
    cl.clock().advance(milliseconds(20));
  }
  FLEET_REQUIRE_CODE(timing_out.get(), kResourceExhausted);
}

TEST_CASE("acquire_async decides like acquire, never waits, and reports through done",
          "[router][async]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  auto& b = cl.add(with_policy(Policy::kLeastInflight));
  FLEET_REQUIRE_OK(a.router->add_node(node("n1", 1)));
  FLEET_REQUIRE_OK(a.router->add_node(node("n2", 1)));
  cl.refresh_all();
  auto held = unwrap(b.router->acquire());  // n1, b's first in its rotation
  REQUIRE(held.node_id == "n1");

  std::vector<absl::StatusOr<Ticket>> got;
  auto done = [&got](absl::StatusOr<Ticket> t) { got.push_back(std::move(t)); };
  FLEET_REQUIRE_OK(a.router->acquire_async({}, done));  // in-process: called back at once
  REQUIRE(got.size() == 1);
  FLEET_REQUIRE_OK(got[0].status());
  CHECK(got[0]->node_id == "n2");  // n1 holds b's request
  CHECK(got[0]->cluster_inflight == 1);
  CHECK(got[0]->own_inflight == 1);

  FLEET_REQUIRE_OK(a.router->acquire_async({}, done));  // both full: at once, no waiting
  REQUIRE(got.size() == 2);
  CHECK(got[1].status().code() == absl::StatusCode::kResourceExhausted);
  CHECK(a.router->stats().decisions == 1);
  CHECK(a.router->stats().rejections == 1);
  CHECK(a.router->stats().saw_other_gateways == 1);  // 1 of 2 slots its own

  Hints wait;
  wait.wait = milliseconds(100);
  FLEET_REQUIRE_OK(a.router->acquire_async(wait, done));
  Hints label;
  label.label = "vision";
  FLEET_REQUIRE_OK(a.router->acquire_async(label, done));
  REQUIRE(got.size() == 4);
  FLEET_REQUIRE_CODE(a.router->acquire_async({}, nullptr), kInvalidArgument);
  CHECK(got.size() == 4);
  CHECK(got[2].status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(got[3].status().code() == absl::StatusCode::kNotFound);

  // Its tickets are released like acquire's.
  FLEET_REQUIRE_OK(a.router->release(*got[0], {true}));
  FLEET_REQUIRE_CODE(a.router->release(*got[0], {true}), kFailedPrecondition);
  CHECK(pick(*a.router) == "n2");
}

TEST_CASE("a gateway waiting for a slot is woken by another gateway's release",
          "[router]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  auto& b = cl.add(with_policy(Policy::kLeastInflight));
  FLEET_REQUIRE_OK(a.router->add_node(node("n", 1)));
  cl.refresh_all();
  auto held = unwrap(a.router->acquire());  // fills the node: a announces releases
  Hints h;
  h.wait = milliseconds(60000);
  auto waiting = std::async(std::launch::async, [&] { return b.router->acquire(h); });
  while (b.router->stats().waits == 0) std::this_thread::yield();
  // The manual clock stands still, so b's poll never fires: only a's
  // announcement can wake it.
  FLEET_REQUIRE_OK(a.router->release(held, {true}));
  auto got = waiting.get();
  FLEET_REQUIRE_OK(got.status());
  CHECK(got->node_id == "n");
}

TEST_CASE("a decision that waited on another gateway's load counts as seeing it",
          "[router]") {
  // Capacities 1, 1, 1 and two gateways: b fills two nodes, a one; a's
  // next request waits for b's release. (It used to count nothing: the
  // grant came when the node held only a's own request.)
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  auto& b = cl.add(with_policy(Policy::kLeastInflight));
  for (const char* id : {"n1", "n2", "n3"}) {
    FLEET_REQUIRE_OK(a.router->add_node(node(id, 1)));
  }
  cl.refresh_all();
  auto b1 = unwrap(b.router->acquire());
  auto b2 = unwrap(b.router->acquire());
  auto a1 = unwrap(a.router->acquire());
  CHECK(a1.cluster_inflight == 1);
  CHECK(a.router->stats().saw_other_gateways == 0);  // an empty node: nothing seen
  Hints h;
  h.wait = milliseconds(60000);
  auto waiting = std::async(std::launch::async, [&] { return a.router->acquire(h); });
  while (a.router->stats().waits == 0) std::this_thread::yield();
  FLEET_REQUIRE_OK(b.router->release(b1, {true}));
  auto a2 = waiting.get();
  FLEET_REQUIRE_OK(a2.status());
  CHECK(a2->node_id == b1.node_id);
  CHECK(a.router->stats().saw_other_gateways == 1);
  CHECK(a.router->stats().decisions == 2);
  FLEET_REQUIRE_OK(b.router->release(b2, {true}));
  FLEET_REQUIRE_OK(a.router->release(a1, {true}));
  FLEET_REQUIRE_OK(a.router->release(*a2, {true}));
}

TEST_CASE("slot_pool() names the Coordinator pool the in-flight counts live in",
          "[router]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  CHECK(a.router->slot_pool() == "router/llm");
  FLEET_REQUIRE_OK(a.router->add_node(node("n", 2)));
  auto t = unwrap(a.router->acquire());
  auto usage = unwrap(a.coordinator->slot_usage(a.router->slot_pool()));
  CHECK(usage == std::map<std::string, std::int64_t>{{"n", 1}});
  FLEET_REQUIRE_OK(a.router->release(t, {true}));
}

TEST_CASE(
    "the worker's check runs on the ManualClock: a gateway's observations "
    "reach the others when the clock passes check_interval",
    "[router][clock]") {
  Cluster cl;
  auto& b = cl.add(with_policy(Policy::kWeighted));  // background = false
  FLEET_REQUIRE_OK(b.router->add_node(node("n", 4)));
  // Gateway a runs its own worker, every hour of the manual clock: if it
  // waited on the real clock, its second check would never come here.
  auto coordinator = LocalCoordinator::connect(cl.store()).value();
  RouterOptions o = with_policy(Policy::kWeighted);
  o.check_interval = std::chrono::hours(1);
  o.log_sink = quiet_log_sink();
  auto a = unwrap(Router::create(*coordinator, o));
  // Its first check runs at once: wait until both gateways report.
  for (int i = 0; i < 5000 && b.router->nodes()[0].reporters < 2; ++i) {
    FLEET_REQUIRE_OK(b.router->run_once());
    std::this_thread::sleep_for(milliseconds(1));
  }
  REQUIRE(b.router->nodes()[0].reporters == 2);
  auto t = unwrap(a->acquire());
  FLEET_REQUIRE_OK(a->release(t, {true, milliseconds(42)}));
  FLEET_REQUIRE_OK(b.router->run_once());
  CHECK_FALSE(b.router->nodes()[0].latency_ms.has_value());  // not published yet
  cl.clock().advance(std::chrono::hours(1));
  bool seen = false;
  for (int i = 0; i < 5000 && !seen; ++i) {
    FLEET_REQUIRE_OK(b.router->run_once());
    auto v = b.router->nodes()[0];
    seen = v.latency_ms.has_value() && *v.latency_ms == 42;
    if (!seen) std::this_thread::sleep_for(milliseconds(1));
  }
  CHECK(seen);
}

TEST_CASE("a crashed gateway's tickets disappear with its session", "[router]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  FLEET_REQUIRE_OK(a.router->add_node(node("n", 2)));
  {
    // Gateway b takes both slots and dies without releasing or leaving.
    auto coordinator = LocalCoordinator::connect(cl.store()).value();
    RouterOptions o = with_policy(Policy::kLeastInflight);
    o.background = false;
    o.log_sink = quiet_log_sink();
    auto router = unwrap(Router::create(*coordinator, o));
    unwrap(router->acquire());
    unwrap(router->acquire());
  }
  CHECK(pick(*a.router) == "RESOURCE_EXHAUSTED");
  cl.clock().advance(kTtl + milliseconds(1));
  auto t = unwrap(a.router->acquire());
  CHECK(t.cluster_inflight == 1);
  CHECK(pick(*a.router) == "n");  // full capacity again
}

TEST_CASE("leave() at shutdown frees the gateway's tickets at once", "[router]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  auto& b = cl.add(with_policy(Policy::kLeastInflight));
  FLEET_REQUIRE_OK(a.router->add_node(node("n", 1)));
  cl.refresh_all();
  unwrap(b.router->acquire());
  CHECK(pick(*a.router) == "RESOURCE_EXHAUSTED");
  FLEET_REQUIRE_OK(b.coordinator->leave());
  CHECK(pick(*a.router) == "n");
}

TEST_CASE("after the backend loses its data the gateways re-register the pool",
          "[router][faults]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  auto& b = cl.add(with_policy(Policy::kLeastInflight));
  FLEET_REQUIRE_OK(a.router->add_node(node("n1", 1)));
  FLEET_REQUIRE_OK(a.router->add_node(node("n2", 2)));
  cl.refresh_all();
  FLEET_REQUIRE_OK(b.router->set_node_state("n2", BackendState::kDraining));
  cl.refresh_all();
  Ticket held = unwrap(a.router->acquire());  // n1: n2 drains
  CHECK(held.node_id == "n1");

  cl.store()->lose_data();
  CHECK(a.coordinator->data_losses() == 1);
  // Both re-register what they knew (the first one's claim wins, the other
  // finds it there); the registry keeps n2's state.
  cl.refresh_all();
  CHECK(cl.log().contains("re-registered 2 nodes"));
  for (Router* r : {a.router.get(), b.router.get()}) {
    auto views = r->nodes();
    REQUIRE(views.size() == 2);
    CHECK(views[0].spec.id == "n1");
    CHECK(views[1].spec.state == BackendState::kDraining);
    // a's request in flight was taken back by its session.
    CHECK(views[0].cluster_inflight == 1);
  }
  CHECK(pick(*b.router) == "RESOURCE_EXHAUSTED");  // n1 is full, n2 drains
  FLEET_REQUIRE_OK(a.router->release(held, {true}));
  CHECK(pick(*b.router) == "n1");
  // Registry changes flow again (watch versions started over with the store).
  FLEET_REQUIRE_OK(a.router->set_node_state("n2", BackendState::kServing));
  cl.refresh_all();
  CHECK(b.router->nodes()[1].spec.state == BackendState::kServing);
}

TEST_CASE("a gateway cut off from the backend: releases hold, nothing is resurrected",
          "[router][faults]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  auto& b = cl.add(with_policy(Policy::kLeastInflight));
  NodeSpec gone = node("gone", 1);
  gone.state = BackendState::kDraining;
  FLEET_REQUIRE_OK(a.router->add_node(node("n", 2)));
  FLEET_REQUIRE_OK(a.router->add_node(gone));
  cl.refresh_all();
  Ticket t1 = unwrap(a.router->acquire());
  Ticket t2 = unwrap(a.router->acquire());
  CHECK(pick(*b.router) == "RESOURCE_EXHAUSTED");  // n is full with a's two

  FLEET_REQUIRE_OK(cl.store()->set_reachable(a.coordinator->session_id(), false));
  FLEET_REQUIRE_CODE(a.router->acquire(), kUnavailable);
  // The release needs no backend: the session frees the slot when it can.
  FLEET_REQUIRE_OK(a.router->release(t1, {true}));
  FLEET_REQUIRE_CODE(a.router->release(t1, {true}), kFailedPrecondition);
  // Meanwhile another gateway removes a node.
  FLEET_REQUIRE_OK(b.router->remove_node("gone"));
  cl.clock().advance(kTtl + milliseconds(1));  // a expires: its slots are freed
  b.router->run_once().IgnoreError();
  CHECK(b.router->nodes()[0].cluster_inflight == 0);
  // Its slots are free for the others.
  FLEET_REQUIRE_OK(b.router->release(unwrap(b.router->acquire()), {true}));

  FLEET_REQUIRE_OK(cl.store()->set_reachable(a.coordinator->session_id(), true));
  cl.refresh_all();
  // a's session took back the one request it still has; the node removed
  // meanwhile stays removed (an expiry is not a data loss).
  auto views = b.router->nodes();
  REQUIRE(views.size() == 1);
  CHECK(views[0].spec.id == "n");
  CHECK(views[0].cluster_inflight == 1);
  CHECK(a.router->nodes().size() == 1);
  FLEET_REQUIRE_OK(a.router->release(t2, {true}));
  b.router->run_once().IgnoreError();
  CHECK(b.router->nodes()[0].cluster_inflight == 0);
}

TEST_CASE("malformed registry entries are skipped with a warning", "[router]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  FLEET_REQUIRE_OK(a.router->add_node(node("ok", 1)));
  unwrap(a.coordinator->put("router/llm/nodes", "broken", "{not json"));
  unwrap(a.coordinator->put("router/llm/nodes", "zero",
                            R"({"address":"h:1","capacity":0})"));
  FLEET_REQUIRE_OK(a.router->run_once());
  auto views = a.router->nodes();
  REQUIRE(views.size() == 1);
  CHECK(views[0].spec.id == "ok");
  CHECK(cl.log().contains("skipping malformed node 'broken'"));
  CHECK(cl.log().contains("skipping malformed node 'zero'"));
  CHECK(pick(*a.router) == "ok");
}

TEST_CASE("an empty pool is Unavailable, bad options are InvalidArgument", "[router]") {
  Cluster cl;
  auto& a = cl.add(with_policy(Policy::kLeastInflight));
  CHECK(pick(*a.router) == "UNAVAILABLE");
  auto coordinator = LocalCoordinator::connect(cl.store()).value();
  RouterOptions o;
  o.background = false;
  o.name = "";
  FLEET_REQUIRE_CODE(Router::create(*coordinator, o), kInvalidArgument);
  o.name = std::string(49, 'p');
  FLEET_REQUIRE_CODE(Router::create(*coordinator, o), kInvalidArgument);
  o.name = "p";
  o.weights.latency = -1;
  FLEET_REQUIRE_CODE(Router::create(*coordinator, o), kInvalidArgument);
  o.weights.latency = 1;
  o.region_load_limit = 1.5;
  FLEET_REQUIRE_CODE(Router::create(*coordinator, o), kInvalidArgument);
  o.region_load_limit = 0.8;
  o.breaker_failures = 0;
  FLEET_REQUIRE_CODE(Router::create(*coordinator, o), kInvalidArgument);
  NodeSpec bad = node("x", 1);
  bad.capacity = 0;
  FLEET_REQUIRE_CODE(a.router->add_node(bad), kInvalidArgument);
}

TEST_CASE("node specs, regions and policies parse, or say what is wrong", "[router]") {
  auto n = unwrap(
      parse_node_spec("10.0.0.7:11434, region=eu-west, lat=53.3, lon=-6.3, capacity=4, "
                      "labels=llama3|qwen, id=gpu-7"));
  CHECK(n.id == "gpu-7");
  CHECK(n.address == "10.0.0.7:11434");
  CHECK(n.region.name == "eu-west");
  CHECK(*n.region.latitude == Approx(53.3));
  CHECK(n.capacity == 4);
  CHECK(n.labels == std::set<std::string>{"llama3", "qwen"});
  CHECK(n.state == BackendState::kServing);
  CHECK(unwrap(parse_node_spec("host:80")).id == "host:80");
  CHECK(unwrap(parse_node_spec("host:80,state=draining")).state ==
        BackendState::kDraining);

  for (const char* bad : {"", "host", "host:0", "host:70000", ":80", "host:80,capacity=0",
                          "host:80,capacity=x", "host:80,lat=1", "host:80,lat=91,lon=0",
                          "host:80,color=red", "host:80,region", "host:80,state=sleeping",
                          "host:80,lat=abc,lon=1"}) {
    INFO(bad);
    FLEET_REQUIRE_CODE(parse_node_spec(bad), kInvalidArgument);
  }
  auto file = parse_node_specs("# pool\n\na:1,capacity=2\n  b:2  \n");
  REQUIRE(file.ok());
  CHECK(file->size() == 2);
  auto bad_file = parse_node_specs("a:1\nb\n");
  FLEET_REQUIRE_CODE(bad_file, kInvalidArgument);
  CHECK(std::string(bad_file.status().message()).find("line 2") != std::string::npos);

  CHECK(unwrap(parse_policy("least-inflight")) == Policy::kLeastInflight);
  CHECK(unwrap(parse_policy("weighted")) == Policy::kWeighted);
  CHECK(unwrap(parse_policy("region")) == Policy::kRegionAware);
  CHECK(unwrap(parse_policy("p2c")) == Policy::kPowerOfTwo);
  FLEET_REQUIRE_CODE(parse_policy("random"), kInvalidArgument);
  auto r = unwrap(parse_region("eu-west,lat=53.3,lon=-6.3"));
  CHECK(r.name == "eu-west");
  CHECK(*r.longitude == Approx(-6.3));
  FLEET_REQUIRE_CODE(parse_region("eu-west,lat=53.3"), kInvalidArgument);
  FLEET_REQUIRE_CODE(parse_region(""), kInvalidArgument);
}

}  // namespace
}  // namespace fleet::testing
