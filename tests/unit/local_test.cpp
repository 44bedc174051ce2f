// LocalCoordinator behaviour beyond the shared contract: construction
// errors, session teardown, and that lock waiters sleep until notified.
#include <atomic>
#include <thread>

#include "fleet/local_coordinator.hpp"
#include "recorder.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;

LocalOptions manual_options(ManualClock& clock) {
  LocalOptions options;
  options.clock = &clock;
  options.log_sink = quiet_log_sink();
  options.session_ttl = milliseconds(300);
  return options;
}

TEST_CASE("LocalStore rejects a non-positive session TTL", "[local]") {
  LocalOptions options;
  options.session_ttl = milliseconds(0);
  FLEET_REQUIRE_CODE(LocalStore::create(options), kInvalidArgument);
  FLEET_REQUIRE_CODE(LocalCoordinator::create(options), kInvalidArgument);
  FLEET_REQUIRE_CODE(LocalCoordinator::connect(nullptr), kInvalidArgument);
}

TEST_CASE("LocalCoordinator::create works with default options", "[local]") {
  auto c = unwrap(LocalCoordinator::create());
  CHECK(c->backend_name() == "local");
  CHECK(c->clock() == real_clock());
  CHECK_FALSE(c->session_id().empty());
  CHECK(unwrap(c->counter_add("x", 2)) == 2);
}

TEST_CASE("a blocked lock() sleeps on the clock until the release wakes it", "[local]") {
  ManualClock clock;
  auto store = unwrap(LocalStore::create(manual_options(clock)));
  auto a = unwrap(LocalCoordinator::connect(store));
  auto b = unwrap(LocalCoordinator::connect(store));
  auto held = unwrap(a->try_lock("L", milliseconds(60000)));
  REQUIRE(held.has_value());
  // The store's expiry thread sleeps on the clock too; wait for it first.
  REQUIRE(eventually([&] { return clock.waiters() == 1; }));
  const int idle_waiters = 1;
  absl::StatusOr<std::optional<Lease>> got;
  std::thread waiter(
      [&] { got = b->lock("L", milliseconds(1000), milliseconds(60000)); });
  // The waiter is asleep on the clock, not spinning.
  REQUIRE(eventually([&] { return clock.waiters() == idle_waiters + 1; }));
  FLEET_REQUIRE_OK(a->release(*held));
  waiter.join();
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  CHECK((*got)->owner == b->session_id());
}

TEST_CASE("a destroyed session's subscriptions stop at once", "[local]") {
  ManualClock clock;
  auto store = unwrap(LocalStore::create(manual_options(clock)));
  auto a = unwrap(LocalCoordinator::connect(store));
  auto b = unwrap(LocalCoordinator::connect(store));
  Recorder<Message> on_b, on_a;
  auto sub_b = unwrap(b->subscribe("c", on_b.callback()));
  auto sub_a = unwrap(a->subscribe("c", on_a.callback()));
  b.reset();
  FLEET_REQUIRE_OK(a->publish("c", "after"));
  REQUIRE(on_a.wait_count(1));
  CHECK(on_b.size() == 0);
  sub_b.cancel();  // a handle outliving its session is harmless
}

TEST_CASE("a subscription may cancel itself from its callback", "[local]") {
  auto c = unwrap(LocalCoordinator::create());
  Recorder<Message> marker;
  std::atomic<int> runs{0};
  Subscription self;
  std::mutex mu;
  {
    std::lock_guard<std::mutex> lock(mu);
    self = unwrap(c->subscribe("c", [&](const Message&) {
      ++runs;
      std::lock_guard<std::mutex> l(mu);
      self.cancel();
    }));
  }
  auto m = unwrap(c->subscribe("marker", marker.callback()));
  FLEET_REQUIRE_OK(c->publish("c", "1"));
  FLEET_REQUIRE_OK(c->publish("c", "2"));
  FLEET_REQUIRE_OK(c->publish("marker", "done"));
  REQUIRE(marker.wait_count(1));
  CHECK(runs == 1);
}

TEST_CASE("a subscription outliving its store is harmless", "[local]") {
  Subscription sub;
  {
    auto c = unwrap(LocalCoordinator::create());
    sub = unwrap(c->subscribe("c", [](const Message&) {}));
  }
  CHECK(sub.active());
  sub.cancel();
  CHECK_FALSE(sub.active());
}

TEST_CASE("entries expire in the background and watchers hear it without reads",
          "[local]") {
  ManualClock clock;
  auto store = unwrap(LocalStore::create(manual_options(clock)));
  auto c = unwrap(LocalCoordinator::connect(store));
  Recorder<WatchEvent> events;
  auto sub = unwrap(c->watch("m", "", events.callback()));
  FLEET_REQUIRE_OK(c->put("m", "k", "v", milliseconds(100)));
  clock.advance(milliseconds(150));  // no call on c: the expiry thread does it
  REQUIRE(events.wait_count(2));
  CHECK(events.events()[1].type == WatchEventType::kExpired);
}

}  // namespace
}  // namespace fleet::testing
