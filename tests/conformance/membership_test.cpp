// Conformance: membership, node state aggregation, counters.
#include <algorithm>
#include <thread>

#include "backend.hpp"
#include "cases.hpp"
#include "recorder.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;

TEST_CASE("join lists the member with its info and notifies watchers",
          "[conformance][membership]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  Recorder<MemberEvent> events;
  auto sub = unwrap(a->watch_members(events.callback()));

  FLEET_REQUIRE_OK(b->join(info("b")));
  auto members = unwrap(a->members());
  REQUIRE(members.size() == 1);
  CHECK(members[0].info.id == "b");
  CHECK(members[0].info.hostname == "host-b");
  CHECK(members[0].info.version == "1.2.3");
  CHECK(members[0].info.metadata.at("zone") == "eu-1");
  CHECK(members[0].session_id == b->session_id());
  CHECK(members[0].info.started_at != Clock::WallTime{});

  REQUIRE(events.wait_count(1));
  CHECK(events.events()[0].type == MemberEventType::kJoined);
  CHECK(events.events()[0].member.info.id == "b");
}

TEST_CASE("instance_id is the id joined under, empty before join and after leave",
          "[conformance][membership]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  CHECK(a->instance_id().empty());
  FLEET_REQUIRE_OK(a->join(info("gw-1")));
  CHECK(a->instance_id() == "gw-1");
  // A refused join leaves it as it was.
  FLEET_REQUIRE_CODE(b->join(info("gw-1")), kAlreadyExists);
  CHECK(b->instance_id().empty());
  FLEET_REQUIRE_CODE(a->join(info("gw-2")), kFailedPrecondition);
  CHECK(a->instance_id() == "gw-1");
  FLEET_REQUIRE_OK(a->leave());
  CHECK(a->instance_id().empty());
  FLEET_REQUIRE_OK(a->join(info("gw-2")));  // another id once it left
  CHECK(a->instance_id() == "gw-2");
}

TEST_CASE("members are listed in id order", "[conformance][membership]") {
  auto backend = make_backend();
  auto x = backend->connect(), y = backend->connect(), z = backend->connect();
  FLEET_REQUIRE_OK(y->join(info("m-2")));
  FLEET_REQUIRE_OK(z->join(info("m-3")));
  FLEET_REQUIRE_OK(x->join(info("m-1")));
  CHECK(member_ids(*x) == std::vector<std::string>{"m-1", "m-2", "m-3"});
}

TEST_CASE("an instance id is held by one live session", "[conformance][membership]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  FLEET_REQUIRE_OK(a->join(info("same")));
  FLEET_REQUIRE_CODE(b->join(info("same")), kAlreadyExists);
  FLEET_REQUIRE_CODE(a->join(info("other")), kFailedPrecondition);
  auto updated = info("same");
  updated.version = "2.0";
  FLEET_REQUIRE_OK(a->join(updated));  // same id again: an update
  auto members = unwrap(b->members());
  REQUIRE(members.size() == 1);
  CHECK(members[0].info.version == "2.0");
}

TEST_CASE("leave removes the member at once and notifies kLeft",
          "[conformance][membership]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  FLEET_REQUIRE_OK(b->join(info("b")));
  Recorder<MemberEvent> events;
  auto sub = unwrap(a->watch_members(events.callback()));
  FLEET_REQUIRE_OK(b->leave());
  CHECK(member_ids(*a).empty());
  REQUIRE(events.wait_count(1));
  CHECK(events.events()[0].type == MemberEventType::kLeft);
  CHECK(events.events()[0].member.info.id == "b");
  FLEET_REQUIRE_OK(b->leave());          // leaving twice is fine
  FLEET_REQUIRE_OK(a->join(info("b")));  // and the id is free again
}

TEST_CASE("a member expires one TTL after its instance dies and observers see kExpired",
          "[conformance][membership]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  FLEET_REQUIRE_OK(a->join(info("a")));
  FLEET_REQUIRE_OK(b->join(info("b")));
  Recorder<MemberEvent> events;
  auto sub = unwrap(a->watch_members(events.callback()));

  b.reset();  // the instance crashes: no leave()
  backend->advance(backend->session_ttl() / 3);
  CHECK(member_ids(*a) == std::vector<std::string>{"a", "b"});

  backend->advance(backend->session_ttl() * 2);
  CHECK(member_ids(*a) == std::vector<std::string>{"a"});
  REQUIRE(events.wait_count(1));
  CHECK(events.events()[0].type == MemberEventType::kExpired);
  CHECK(events.events()[0].member.info.id == "b");
}

TEST_CASE("a live session's membership does not expire", "[conformance][membership]") {
  auto backend = make_backend();
  auto a = backend->connect();
  FLEET_REQUIRE_OK(a->join(info("a")));
  for (int i = 0; i < 6; ++i) backend->advance(backend->session_ttl() / 2);
  CHECK(member_ids(*a) == std::vector<std::string>{"a"});
}

TEST_CASE("node state aggregates sum, avg, min and max over live instances",
          "[conformance][nodes]") {
  auto backend = make_backend();
  auto a = backend->connect(), b = backend->connect(), c = backend->connect();
  FLEET_REQUIRE_OK(
      a->publish_node_state("gpu-1", {{"active", 2}, {"cpu", 0.2}, {"free_mem", 8}}));
  FLEET_REQUIRE_OK(
      b->publish_node_state("gpu-1", {{"active", 3}, {"cpu", 0.4}, {"free_mem", 6}}));
  FLEET_REQUIRE_OK(
      c->publish_node_state("gpu-1", {{"active", 5}, {"cpu", 0.9}, {"free_mem", 7}}));
  AggregationSpec spec;
  spec.metrics = {{"active", Aggregation::kSum},
                  {"cpu", Aggregation::kAvg},
                  {"free_mem", Aggregation::kMin}};
  spec.default_aggregation = Aggregation::kMax;

  auto agg = unwrap(a->aggregate("gpu-1", spec));
  REQUIRE(agg.has_value());
  CHECK(agg->node_id == "gpu-1");
  CHECK(agg->reporters == 3);
  CHECK(agg->metrics.at("active").value == 10);
  CHECK(agg->metrics.at("cpu").value == Approx(0.5));
  CHECK(agg->metrics.at("free_mem").value == 6);
  CHECK(agg->metrics.at("active").reporters == 3);

  spec.metrics.erase("free_mem");  // now the default, kMax
  CHECK(unwrap(a->aggregate("gpu-1", spec))->metrics.at("free_mem").value == 8);

  // Publishing again replaces the session's view.
  FLEET_REQUIRE_OK(c->publish_node_state("gpu-1", {{"active", 1}}));
  agg = unwrap(a->aggregate("gpu-1", spec));
  CHECK(agg->metrics.at("active").value == 6);
  CHECK(agg->metrics.at("cpu").reporters == 2);
}

TEST_CASE("aggregation excludes an expired instance's view", "[conformance][nodes]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  FLEET_REQUIRE_OK(a->publish_node_state("n1", {{"active", 4}}));
  FLEET_REQUIRE_OK(b->publish_node_state("n1", {{"active", 7}}));
  FLEET_REQUIRE_OK(b->publish_node_state("n2", {{"active", 1}}));
  AggregationSpec sum;
  sum.default_aggregation = Aggregation::kSum;
  CHECK(unwrap(a->aggregate("n1", sum))->metrics.at("active").value == 11);
  CHECK(unwrap(a->aggregate_all(sum)).size() == 2);  // (a backend may cache this)

  b.reset();
  backend->advance(backend->session_ttl() * 2);
  // No write happened since: a cached all-nodes result must still drop b.
  auto all = unwrap(a->aggregate_all(sum));
  REQUIRE(all.size() == 1);
  CHECK(all[0].node_id == "n1");
  CHECK(all[0].metrics.at("active").value == 4);
  auto agg = unwrap(a->aggregate("n1", sum));
  REQUIRE(agg.has_value());
  CHECK(agg->metrics.at("active").value == 4);
  CHECK(agg->reporters == 1);
  CHECK_FALSE(unwrap(a->aggregate("n2", sum)).has_value());
}

TEST_CASE("aggregate_all lists every node in id order, leave and remove drop views",
          "[conformance][nodes]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  FLEET_REQUIRE_OK(a->publish_node_state("n-b", {{"x", 1}}));
  FLEET_REQUIRE_OK(a->publish_node_state("n-a", {{"x", 2}}));
  FLEET_REQUIRE_OK(b->publish_node_state("n-c", {{"x", 3}}));
  auto all = unwrap(a->aggregate_all({}));
  REQUIRE(all.size() == 3);
  CHECK(all[0].node_id == "n-a");
  CHECK(all[1].node_id == "n-b");
  CHECK(all[2].node_id == "n-c");

  FLEET_REQUIRE_OK(a->remove_node_state("n-b"));
  FLEET_REQUIRE_OK(a->remove_node_state("never-published"));
  FLEET_REQUIRE_OK(b->leave());
  all = unwrap(a->aggregate_all({}));
  REQUIRE(all.size() == 1);
  CHECK(all[0].node_id == "n-a");
}

TEST_CASE("non-finite metrics are rejected", "[conformance][nodes]") {
  auto backend = make_backend();
  auto a = backend->connect();
  FLEET_REQUIRE_CODE(a->publish_node_state("n", {{"x", std::nan("")}}), kInvalidArgument);
  FLEET_REQUIRE_CODE(a->publish_node_state("n", {{"x", 1.0 / 0.0}}), kInvalidArgument);
  CHECK_FALSE(unwrap(a->aggregate("n", {})).has_value());
}

TEST_CASE("counters add atomically across instances", "[conformance][counters]") {
  auto backend = make_backend();
  constexpr int kThreads = 8, kAdds = 50;
  std::vector<std::unique_ptr<Coordinator>> sessions;
  for (int i = 0; i < kThreads; ++i) sessions.push_back(backend->connect());
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < kAdds; ++j) (void)sessions[i]->counter_add("hits", 1);
    });
  }
  for (auto& t : threads) t.join();
  CHECK(unwrap(sessions[0]->counter_get("hits")) == kThreads * kAdds);
  CHECK(unwrap(sessions[0]->counter_add("hits", -400)) == 0);
  CHECK(unwrap(sessions[0]->counter_get("never-touched")) == 0);
}

TEST_CASE("counter overflow is OutOfRange and leaves the value",
          "[conformance][counters]") {
  auto backend = make_backend();
  auto a = backend->connect();
  const auto max = std::numeric_limits<std::int64_t>::max();
  CHECK(unwrap(a->counter_add("big", max)) == max);
  FLEET_REQUIRE_CODE(a->counter_add("big", 1), kOutOfRange);
  CHECK(unwrap(a->counter_get("big")) == max);
}

TEST_CASE("an owned counter's contribution vanishes with its instance",
          "[conformance][counters]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  CHECK(unwrap(a->owned_counter_add("inflight", 3)) == 3);
  CHECK(unwrap(b->owned_counter_add("inflight", 5)) == 8);
  CHECK(unwrap(b->owned_counter_add("inflight", -1)) == 7);
  CHECK(unwrap(a->owned_counter_get("inflight")) == 7);

  b.reset();  // crashed with 4 requests in flight
  backend->advance(backend->session_ttl() / 3);
  CHECK(unwrap(a->owned_counter_get("inflight")) == 7);
  backend->advance(backend->session_ttl() * 2);
  CHECK(unwrap(a->owned_counter_get("inflight")) == 3);
}

TEST_CASE("leave drops owned counter contributions", "[conformance][counters]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  CHECK(unwrap(a->owned_counter_add("c", 2)) == 2);
  CHECK(unwrap(b->owned_counter_add("c", 9)) == 11);
  FLEET_REQUIRE_OK(b->leave());
  CHECK(unwrap(a->owned_counter_get("c")) == 2);
}

}  // namespace
}  // namespace fleet::testing
