// Conformance: faults. A session cut off from the backend, calls whose
// outcome is unknown, the backend losing its data. After each, what the
// backend holds of a session's session-bound state is exactly what its
// owner holds (coordinator.hpp, "Faults"), and leases are never re-created.
#include <algorithm>
#include <thread>

#include "backend.hpp"
#include "cases.hpp"
#include "recorder.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using Usage = std::map<std::string, std::int64_t>;

SlotRequest one_target(const std::string& target, std::int64_t capacity) {
  SlotRequest r;
  r.candidates = {SlotCandidate{target, capacity, 0, 0}};
  return r;
}

std::optional<double> load_of(Coordinator& c, const std::string& node) {
  auto a = unwrap(c.aggregate(node, AggregationSpec{}));
  if (!a || a->metrics.count("load") == 0) return std::nullopt;
  return a->metrics.at("load").value;
}

// The states a session reported, waited for up to kEventWait.
bool saw(Recorder<ConnectionState>& states, std::vector<ConnectionState> want) {
  return states.wait_for([&](const std::vector<ConnectionState>& got) {
    auto it = got.begin();
    for (ConnectionState s : want) {
      it = std::find(it, got.end(), s);
      if (it == got.end()) return false;
      ++it;
    }
    return true;
  });
}

TEST_CASE("a session cut off past its TTL expires, then comes back with its record",
          "[conformance][faults]") {
  auto backend = make_backend();
  auto observer = backend->connect();
  auto a = backend->connect_cuttable();
  FLEET_REQUIRE_OK(a->join(info("a")));
  FLEET_REQUIRE_OK(a->publish_node_state("n", {{"load", 1}}));
  REQUIRE(unwrap(a->owned_counter_add("inflight", 3)) == 3);
  REQUIRE(unwrap(a->acquire_slot("p", one_target("t", 4))).has_value());
  REQUIRE(unwrap(a->acquire_slot("p", one_target("t", 4))).has_value());
  auto lease = unwrap(a->try_lock("L", backend->lease_ttl()));
  REQUIRE(lease.has_value());
  Recorder<ConnectionState> states;
  auto sub = unwrap(a->watch_connection(states.callback()));
  Recorder<MemberEvent> members;
  auto msub = unwrap(observer->watch_members(members.callback()));

  backend->cut(*a);
  REQUIRE(saw(states, {ConnectionState::kConnected, ConnectionState::kSuspended}));
  // While cut off: a release is taken by the record (OK, no retry needed),
  // a view is recorded (Unavailable: nobody sees it yet), and a decision
  // takes nothing.
  FLEET_REQUIRE_OK(a->release_slot("p", "t"));
  CHECK(!a->publish_node_state("n", {{"load", 2}}).ok());
  CHECK(!a->acquire_slot("p", one_target("t", 4)).ok());
  CHECK(!a->owned_counter_add("inflight", 10).ok());

  backend->advance(backend->session_ttl() * 3);
  REQUIRE(saw(states, {ConnectionState::kSuspended, ConnectionState::kLost}));
  // Everyone else sees it gone, with everything it held.
  REQUIRE(eventually([&] { return member_ids(*observer).empty(); }));
  REQUIRE(members.wait_for([](const auto& e) {
    return !e.empty() && e.back().type == MemberEventType::kExpired;
  }));
  CHECK(!load_of(*observer, "n").has_value());
  CHECK(unwrap(observer->owned_counter_get("inflight")) == 0);
  CHECK(unwrap(observer->slot_usage("p")).empty());

  backend->heal(*a);
  REQUIRE(saw(states, {ConnectionState::kLost, ConnectionState::kReconnected}));
  CHECK(a->connection_state() == ConnectionState::kReconnected);
  // Back as its owner holds it: the member, the view published while cut
  // off, the contribution (without the failed +10), one slot (two taken,
  // one released while cut off; the failed decision took none).
  REQUIRE(
      eventually([&] { return member_ids(*observer) == std::vector<std::string>{"a"}; }));
  REQUIRE(members.wait_for([](const auto& e) {
    return !e.empty() && e.back().type == MemberEventType::kJoined;
  }));
  CHECK(load_of(*observer, "n") == 2.0);
  CHECK(unwrap(observer->owned_counter_get("inflight")) == 3);
  REQUIRE(eventually([&] {
    return unwrap(observer->slot_usage("p")) == Usage{{"t", 1}};
  }));
  // The lock was not re-created: its lease is gone, and someone else may
  // take it, with a higher fence.
  FLEET_REQUIRE_CODE(a->renew(*lease), kAborted);
  auto other = unwrap(observer->try_lock("L", backend->lease_ttl()));
  REQUIRE(other.has_value());
  CHECK(other->fence > lease->fence);
  CHECK(a->data_losses() == 0);  // an expiry is not a data loss

  // And it works as before.
  FLEET_REQUIRE_OK(a->release_slot("p", "t"));
  FLEET_REQUIRE_CODE(a->release_slot("p", "t"), kFailedPrecondition);
  CHECK(unwrap(observer->slot_usage("p")).empty());
}

TEST_CASE("calls that fail while cut off take nothing, even if the backend ran them",
          "[conformance][faults]") {
  auto backend = make_backend();
  auto observer = backend->connect();
  auto a = backend->connect_cuttable();
  REQUIRE(unwrap(a->acquire_slot("p", one_target("t", 10))).has_value());
  REQUIRE(unwrap(a->owned_counter_add("c", 1)) == 1);

  backend->cut(*a);
  // On Redis these time out and reach Redis at the heal, where they may
  // run: the session must undo them. In-process they fail at once.
  CHECK(!a->acquire_slot("p", one_target("t", 10)).ok());
  CHECK(!a->acquire_slot("p", one_target("t", 10)).ok());
  CHECK(!a->owned_counter_add("c", 5).ok());
  backend->heal(*a);

  // Exactly what the owner holds: one slot, a contribution of 1.
  REQUIRE(eventually([&] {
    auto g = a->acquire_slot("p", one_target("t", 10));
    if (!g.ok()) return false;  // re-establishing
    if (!g->has_value()) return false;
    FLEET_REQUIRE_OK(a->release_slot("p", "t"));
    return true;
  }));
  REQUIRE(eventually([&] {
    return unwrap(observer->slot_usage("p")) == Usage{{"t", 1}} &&
           unwrap(observer->owned_counter_get("c")) == 1;
  }));
  // It stays that way (nothing arrives late and lands).
  backend->advance(backend->session_ttl());
  CHECK(unwrap(observer->slot_usage("p")) == Usage{{"t", 1}});
  CHECK(unwrap(observer->owned_counter_get("c")) == 1);
  FLEET_REQUIRE_OK(a->release_slot("p", "t"));
  CHECK(unwrap(observer->slot_usage("p")).empty());
}

TEST_CASE("after the backend loses its data, sessions re-establish what they hold",
          "[conformance][faults]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  FLEET_REQUIRE_OK(a->join(info("a")));
  FLEET_REQUIRE_OK(b->join(info("b")));
  FLEET_REQUIRE_OK(a->publish_node_state("n", {{"load", 4}}));
  REQUIRE(unwrap(b->owned_counter_add("inflight", 2)) == 2);
  REQUIRE(unwrap(a->acquire_slot("p", one_target("t", 2))).has_value());
  auto lease = unwrap(a->try_lock("L", std::chrono::seconds(30)));
  REQUIRE(lease.has_value());
  REQUIRE(unwrap(a->put("rooms", "r1", "a")).version > 0);
  Recorder<ConnectionState> states;
  auto sub = unwrap(a->watch_connection(states.callback()));

  backend->lose_data();
  REQUIRE(saw(states, {ConnectionState::kLost, ConnectionState::kReconnected}));
  REQUIRE(eventually([&] { return b->data_losses() == 1; }));
  CHECK(a->data_losses() == 1);
  // Session-bound state: back.
  REQUIRE(eventually([&] {
    auto m = b->members();
    auto agg = b->aggregate("n", AggregationSpec{});
    auto owned = b->owned_counter_get("inflight");
    auto usage = b->slot_usage("p");
    return m.ok() && m->size() == 2 && agg.ok() && agg->has_value() &&
           (*agg)->metrics.at("load").value == 4.0 && owned.ok() && *owned == 2 &&
           usage.ok() && *usage == Usage{{"t", 1}};
  }));
  CHECK(member_ids(*b) == std::vector<std::string>{"a", "b"});
  // The rest is gone, and not silently re-created: the map entry, the lock
  // (whose fencing tokens still grow).
  CHECK(!unwrap(b->get("rooms", "r1")).has_value());
  FLEET_REQUIRE_CODE(a->renew(*lease), kAborted);
  auto again = unwrap(b->try_lock("L", backend->lease_ttl()));
  REQUIRE(again.has_value());
  CHECK(again->fence > lease->fence);
  // Capacity counts the slot taken back: one more fits, then none.
  REQUIRE(eventually([&] {
    auto g = b->acquire_slot("p", one_target("t", 2));
    return g.ok() && g->has_value() && (*g)->used == 2;
  }));
  CHECK(!unwrap(b->acquire_slot("p", one_target("t", 2))).has_value());
}

}  // namespace
}  // namespace fleet::testing
