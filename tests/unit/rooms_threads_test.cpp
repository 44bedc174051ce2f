// fleet::rooms' threads, on the in-process backend: callbacks run on the
// Rooms' own threads — so a callback may send a request and get every
// instance's answer, and a slow callback holds up nothing else on its
// Coordinator — and the check loop waits on the Coordinator's clock.
#include <atomic>
#include <deque>
#include <future>
#include <thread>

#include "capture_sink.hpp"
#include "fleet/local_coordinator.hpp"
#include "fleet/rooms.hpp"
#include "fleet/router.hpp"
#include "internal/rendezvous.hpp"
#include "recorder.hpp"
#include "slow_callback_case.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using namespace fleet::rooms;
using std::chrono::milliseconds;

constexpr milliseconds kTtl{300};

struct Node {
  std::string id;
  std::unique_ptr<Coordinator> coordinator;
  std::unique_ptr<Rooms> rooms;
};

class Fleet {
 public:
  Fleet() {
    LocalOptions o;
    o.clock = &clock_;
    o.session_ttl = kTtl;
    o.log_sink = quiet_log_sink();
    store_ = LocalStore::create(o).value();
  }
  std::unique_ptr<Coordinator> joined(const std::string& id) {
    auto c = LocalCoordinator::connect(store_).value();
    InstanceInfo info;
    info.id = id;
    FLEET_REQUIRE_OK(c->join(info));
    return c;
  }
  // `o` as given, but for the log sink; hosts rooms when `host`.
  Node& add(const std::string& id, bool host, RoomsOptions o) {
    Node n;
    n.id = id;
    n.coordinator = joined(id);
    if (host) o.host = NodeInfo{id + ":7880", "", 0, NodeState::kServing};
    o.log_sink = getenv("DBG") ? stderr_log_sink() : &log_;
    n.rooms = unwrap(Rooms::create(*n.coordinator, o));
    nodes_.push_back(std::move(n));
    return nodes_.back();
  }
  void kill(Node& n) {
    n.rooms.reset();
    n.coordinator.reset();
  }
  ManualClock& clock() { return clock_; }

 private:
  ManualClock clock_;
  CaptureSink log_;
  std::shared_ptr<LocalStore> store_;
  std::deque<Node> nodes_;
};

std::string bodies(const RequestResult& r) {
  std::string out;
  for (const auto& reply : r.replies) out += reply.instance + "=" + reply.body + ";";
  return out;
}

TEST_CASE(
    "request() sent from on_message and from on_request gets every instance's "
    "answer",
    "[rooms][threads]") {
  Fleet f;
  // Each Rooms' own pointer, for its callbacks (set once created).
  std::map<std::string, std::atomic<Rooms*>> self;
  for (const char* id : {"a", "b", "c"}) self[id] = nullptr;
  std::promise<RequestResult> from_message;
  std::atomic<bool> asked{false};
  auto options = [&](const std::string& id) {
    RoomsOptions o;
    o.background = false;
    o.on_request = [&self, id](std::string_view topic,
                               std::string_view) -> absl::StatusOr<std::string> {
      if (topic == "nested" && id == "a") {
        // On a's request thread, which must answer a itself: inline.
        RequestResult r = self[id].load()->request("ping", "", milliseconds(5000));
        if (!r.status.ok()) return r.status;
        return bodies(r);
      }
      return "pong-" + id;
    };
    if (id == "a") {
      o.on_message = [&self, &from_message, &asked](const Delivery&) {
        if (asked.exchange(true)) return;
        from_message.set_value(self["a"].load()->request("ping", "", milliseconds(5000)));
      };
    }
    return o;
  };
  auto& a = f.add("a", true, options("a"));
  auto& b = f.add("b", false, options("b"));
  auto& c = f.add("c", false, options("c"));
  self["a"] = a.rooms.get();
  self["b"] = b.rooms.get();
  self["c"] = c.rooms.get();
  unwrap(a.rooms->join("r", "alice"));
  unwrap(b.rooms->join("r", "bob"));

  FLEET_REQUIRE_OK(b.rooms->broadcast("r", "hi"));
  auto got = from_message.get_future();
  REQUIRE(got.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  RequestResult r = got.get();
  FLEET_REQUIRE_OK(r.status);
  CHECK(bodies(r) == "a=pong-a;b=pong-b;c=pong-c;");

  RequestResult nested = c.rooms->request("nested", "", milliseconds(10000));
  FLEET_REQUIRE_OK(nested.status);
  REQUIRE(nested.replies.size() == 3);
  CHECK(nested.replies[0].body == "a=pong-a;b=pong-b;c=pong-c;");
  CHECK(nested.replies[1].body == "pong-b");
}

TEST_CASE(
    "a callback that blocks holds up no lock grant, membership event or router "
    "decision on its Coordinator",
    "[rooms][threads]") {
  Fleet f;
  auto a = f.joined("a");
  auto b = f.joined("b");
  slow_callback_holds_nothing_up(
      *a, *b, [&] { return f.joined("d"); }, quiet_log_sink());
}

TEST_CASE(
    "the worker's check runs on the ManualClock: a dead node's rooms move once "
    "the grace has passed",
    "[rooms][clock]") {
  Fleet f;
  // The survivor rendezvous chooses to clean up after "dead" stays idle
  // (no worker, never run): the other one moves the rooms after the grace.
  std::string idle = "s1", busy = "s2";
  if (internal::rendezvous_weight("dead", "s2") >
      internal::rendezvous_weight("dead", "s1")) {
    std::swap(idle, busy);
  }
  RoomsOptions passive;
  passive.background = false;
  auto& dead = f.add("dead", true, passive);
  REQUIRE(unwrap(dead.rooms->assign("r")).node == "dead");  // the only node yet
  f.add(idle, true, passive);
  RoomsOptions worker;
  worker.check_interval = std::chrono::hours(1);
  worker.takeover_grace = std::chrono::hours(2);
  auto& survivor = f.add(busy, false, worker);
  REQUIRE(unwrap(survivor.rooms->join("r", "carol")).node == "dead");
  auto placed_on = [&] {
    auto p = unwrap(survivor.coordinator->get(placement_map("default"), "r"));
    return p ? unwrap(decode_placement("r", p->value)).node : std::string();
  };
  // Once the survivor has noticed, each step of the clock is one check.
  auto next_check = [&](std::chrono::nanoseconds step) {
    const auto before = survivor.rooms->stats().checks;
    f.clock().advance(step);
    REQUIRE(eventually([&] { return survivor.rooms->stats().checks > before; }));
  };
  f.kill(dead);
  next_check(kTtl * 2);  // "dead" expires: its member event runs a check at once
  CHECK(placed_on() == "dead");
  next_check(std::chrono::hours(1));  // still within the grace
  CHECK(placed_on() == "dead");
  // Past the grace: the next check (an hour of manual time later) moves it.
  // A worker waiting on the real clock would never get there.
  f.clock().advance(std::chrono::hours(1) + milliseconds(1));
  REQUIRE(eventually([&] { return placed_on() == idle; }));
}

}  // namespace
}  // namespace fleet::testing
