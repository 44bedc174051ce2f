// The router's policies as a pure function (src/router/policy.hpp): pool
// view and hints in, SlotRequest (or the error) out. No backend, no clock.
#include <map>

#include "router/policy.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using namespace fleet::router;
using namespace fleet::router::internal_router;
using std::chrono::milliseconds;

NodeSpec spec(const std::string& id, std::int64_t capacity, std::string region = {},
              std::set<std::string> labels = {},
              BackendState state = BackendState::kServing) {
  NodeSpec n;
  n.id = id;
  n.address = id + ":80";
  n.capacity = capacity;
  n.region.name = std::move(region);
  n.labels = std::move(labels);
  n.state = state;
  return n;
}

NodeAggregate observed(const std::string& id, std::map<std::string, double> metrics) {
  NodeAggregate a;
  a.node_id = id;
  a.reporters = 1;
  for (const auto& [k, v] : metrics) a.metrics[k] = AggregatedMetric{v, 1};
  return a;
}

struct Pool {
  std::map<std::string, NodeSpec> registry;
  std::map<std::string, NodeAggregate> aggregates;
  std::map<std::string, milliseconds> open;

  void add(NodeSpec n) { registry[n.id] = std::move(n); }
  absl::StatusOr<SlotRequest> compose(const RouterOptions& o, const Hints& h,
                                      std::optional<milliseconds>* changes = nullptr) {
    PoolView view{&registry, &aggregates, &open};
    SlotRequest r;
    std::optional<milliseconds> unused;
    absl::Status st = compose_request(o, h, view, &r, changes ? changes : &unused);
    if (!st.ok()) return st;
    return r;
  }
};

std::vector<std::string> targets(const SlotRequest& r) {
  std::vector<std::string> out;
  for (const auto& c : r.candidates) out.push_back(c.target);
  return out;
}

TEST_CASE("policy: which nodes are candidates, and the errors when none is",
          "[unit][router][policy]") {
  struct Row {
    const char* what;
    std::vector<NodeSpec> nodes;
    std::map<std::string, milliseconds> open;
    Hints hints;
    absl::StatusCode code;
    std::vector<std::string> candidates;
  };
  Hints gpu;
  gpu.label = "gpu";
  Hints skip_a;
  skip_a.exclude = {"a"};
  Hints unknown_label;
  unknown_label.label = "tpu";
  const std::vector<Row> rows = {
      {"all serving",
       {spec("a", 1), spec("b", 2)},
       {},
       {},
       absl::StatusCode::kOk,
       {"a", "b"}},
      {"an empty pool", {}, {}, {}, absl::StatusCode::kUnavailable, {}},
      {"draining and down are left out",
       {spec("a", 1, "", {}, BackendState::kDraining),
        spec("b", 1, "", {}, BackendState::kDown), spec("c", 1)},
       {},
       {},
       absl::StatusCode::kOk,
       {"c"}},
      {"none serving",
       {spec("a", 1, "", {}, BackendState::kDraining)},
       {},
       {},
       absl::StatusCode::kUnavailable,
       {}},
      {"an open circuit",
       {spec("a", 1), spec("b", 1)},
       {{"a", milliseconds(5)}},
       {},
       absl::StatusCode::kOk,
       {"b"}},
      {"a closed circuit (zero left)",
       {spec("a", 1)},
       {{"a", milliseconds(0)}},
       {},
       absl::StatusCode::kOk,
       {"a"}},
      {"excluded",
       {spec("a", 1), spec("b", 1)},
       {},
       skip_a,
       absl::StatusCode::kOk,
       {"b"}},
      {"by label",
       {spec("a", 1, "", {"gpu"}), spec("b", 1)},
       {},
       gpu,
       absl::StatusCode::kOk,
       {"a"}},
      {"no node has the label",
       {spec("a", 1)},
       {},
       unknown_label,
       absl::StatusCode::kNotFound,
       {}},
      {"the label's only node is out",
       {spec("a", 1, "", {"gpu"}, BackendState::kDown), spec("b", 1)},
       {},
       gpu,
       absl::StatusCode::kUnavailable,
       {}},
  };
  for (const auto& row : rows) {
    INFO(row.what);
    Pool pool;
    for (const auto& n : row.nodes) pool.add(n);
    pool.open = row.open;
    RouterOptions o;
    auto r = pool.compose(o, row.hints);
    REQUIRE(r.status().code() == row.code);
    if (r.ok()) CHECK(targets(*r) == row.candidates);
  }
}

TEST_CASE("policy: each policy's request shape", "[unit][router][policy]") {
  Pool pool;
  pool.add(spec("a", 4, "eu"));
  pool.add(spec("b", 4, "us"));
  RouterOptions o;
  SECTION("least in-flight: load only") {
    o.policy = Policy::kLeastInflight;
    auto r = unwrap(pool.compose(o, {}));
    CHECK(r.sample == 0);
    CHECK(r.load_weight == 1.0);
    CHECK(r.tier_load_limit == 1.0);
    CHECK(r.candidates[0].score == 0);
  }
  SECTION("power of two: sample 2") {
    o.policy = Policy::kPowerOfTwo;
    CHECK(unwrap(pool.compose(o, {})).sample == 2);
  }
  SECTION("region aware: the origin's region is tier 0, the limit applies") {
    o.policy = Policy::kRegionAware;
    o.region_load_limit = 0.5;
    Region us;
    us.name = "us";
    o.home = us;
    auto r = unwrap(pool.compose(o, {}));
    CHECK(r.tier_load_limit == 0.5);
    CHECK(r.candidates[0].tier == 1);  // a: eu, far
    CHECK(r.candidates[1].tier == 0);  // b: us
    Hints from_eu;
    Region eu;
    eu.name = "eu";
    from_eu.origin = eu;  // a request's origin overrides home
    auto r2 = unwrap(pool.compose(o, from_eu));
    CHECK(r2.candidates[0].tier == 0);
    CHECK(r2.candidates[1].tier == 1);
  }
  SECTION("low priority gets a share of each capacity, at least 1") {
    o.low_priority_share = 0.5;
    Hints low;
    low.priority = Priority::kLow;
    pool.add(spec("c", 1));
    auto r = unwrap(pool.compose(o, low));
    CHECK(r.candidates[0].capacity == 2);
    CHECK(r.candidates[2].capacity == 1);
  }
}

TEST_CASE("policy: weighted scores from the gateways' observations",
          "[unit][router][policy]") {
  Pool pool;
  pool.add(spec("fast", 4));
  pool.add(spec("slow", 4));
  pool.add(spec("new", 4));  // nobody measured it yet
  pool.aggregates["fast"] =
      observed("fast", {{kLatency, 10}, {kSuccess, 1}, {kCpu, 0.1}});
  pool.aggregates["slow"] =
      observed("slow", {{kLatency, 40}, {kSuccess, 0.5}, {kCpu, 0.9}});
  RouterOptions o;
  o.policy = Policy::kWeighted;
  o.weights = Weights{1.0, 2.0, 0.5, 0.0, 3.0};
  auto r = unwrap(pool.compose(o, {}));
  CHECK(r.load_weight == 3.0);
  // fast: 1*10/40 + 2*(1-1) + 0.5*0.1 ; slow: 1*40/40 + 2*0.5 + 0.5*0.9
  CHECK(r.candidates[0].score == Approx(0.25 + 0.05));
  // new: the means (latency 25, success 0.75, cpu 0.5)
  CHECK(r.candidates[1].score == Approx(25.0 / 40 + 2 * 0.25 + 0.5 * 0.5));
  CHECK(r.candidates[2].score == Approx(1.0 + 1.0 + 0.45));
}

TEST_CASE("policy: a request changes when the first open circuit closes",
          "[unit][router][policy]") {
  Pool pool;
  pool.add(spec("a", 1));
  pool.add(spec("b", 1));
  pool.add(spec("c", 1));
  pool.open = {{"a", milliseconds(700)}, {"b", milliseconds(300)}};
  std::optional<milliseconds> changes;
  auto r = unwrap(pool.compose(RouterOptions{}, {}, &changes));
  CHECK(targets(r) == std::vector<std::string>{"c"});
  REQUIRE(changes.has_value());
  CHECK(*changes == milliseconds(300));
  pool.open.clear();
  unwrap(pool.compose(RouterOptions{}, {}, &changes));
  CHECK_FALSE(changes.has_value());
}

TEST_CASE("policy: region distances", "[unit][router][policy]") {
  Region paris{"paris", 48.8566, 2.3522}, berlin{"berlin", 52.52, 13.405},
      nowhere{"nowhere", std::nullopt, std::nullopt};
  CHECK(distance_km(paris, berlin) == Approx(878).epsilon(0.01));
  CHECK(region_distance(paris, paris) == 0);
  CHECK(region_distance(paris, nowhere) == 1e9);
}

}  // namespace
}  // namespace fleet::testing
