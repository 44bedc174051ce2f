#include <atomic>
#include <thread>

#include "catch.hpp"
#include "fleet/clock.hpp"
#include "fleet/lease_guard.hpp"
#include "fleet/local_coordinator.hpp"
#include "recorder.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;

TEST_CASE("ManualClock moves only when advanced", "[clock]") {
  ManualClock clock;
  const auto t0 = clock.now();
  const auto w0 = clock.wall_now();
  CHECK(clock.now() == t0);
  clock.advance(milliseconds(250));
  CHECK(clock.now() - t0 == milliseconds(250));
  CHECK(clock.wall_now() - w0 == milliseconds(250));
  clock.advance(milliseconds(-5));  // ignored
  CHECK(clock.now() - t0 == milliseconds(250));
}

TEST_CASE("ManualClock wakes a waiter when its deadline is reached, not before",
          "[clock]") {
  ManualClock clock;
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> woke{false};
  const auto deadline = clock.now() + milliseconds(100);
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (clock.now() < deadline) clock.wait_until(lock, cv, deadline);
    woke = true;
  });
  REQUIRE(eventually([&] { return clock.waiters() == 1; }));
  clock.advance(milliseconds(99));
  CHECK(clock.waiters() == 1);
  CHECK_FALSE(woke);
  clock.advance(milliseconds(1));
  waiter.join();
  CHECK(woke);
  CHECK(clock.waiters() == 0);
}

TEST_CASE("ManualClock::wait_until returns at once for a past deadline", "[clock]") {
  ManualClock clock;
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  clock.wait_until(lock, cv, clock.now());
  CHECK(lock.owns_lock());
  CHECK(clock.waiters() == 0);
}

TEST_CASE("a ManualClock waiter can also be woken by its condition variable", "[clock]") {
  ManualClock clock;
  std::mutex mu;
  std::condition_variable cv;
  bool flag = false;
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!flag) clock.wait_until(lock, cv, clock.now() + std::chrono::hours(1));
  });
  REQUIRE(eventually([&] { return clock.waiters() == 1; }));
  {
    std::lock_guard<std::mutex> lock(mu);
    flag = true;
  }
  cv.notify_all();
  waiter.join();
  CHECK(clock.waiters() == 0);
}

TEST_CASE("the real clock's wait_until returns after the deadline", "[clock]") {
  Clock* clock = real_clock();
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  const auto deadline = clock->now() + milliseconds(5);
  while (clock->now() < deadline) clock->wait_until(lock, cv, deadline);
  CHECK(clock->now() >= deadline);
}

TEST_CASE("advance_stepwise stops at every deadline on the way and lets the waiter act",
          "[clock]") {
  ManualClock clock;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Clock::TimePoint> woke;  // when the ticker ran, on the clock
  std::atomic<bool> stop{false};
  const auto start = clock.now();
  std::thread ticker([&] {
    std::unique_lock<std::mutex> lock(mu);
    auto next = clock.now() + milliseconds(100);
    while (!stop) {
      if (clock.now() < next) {
        clock.wait_until(lock, cv, next);
        continue;
      }
      woke.push_back(clock.now());
      next = clock.now() + milliseconds(100);
    }
  });
  REQUIRE(eventually([&] { return clock.waiters() == 1; }));
  const int stops = clock.advance_stepwise(milliseconds(1000));
  CHECK(stops == 10);
  {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
    cv.notify_all();
  }
  clock.advance(milliseconds(100));
  ticker.join();
  REQUIRE(woke.size() >= 10);
  for (std::size_t i = 0; i < 10; ++i) {
    CHECK(woke[i] - start == milliseconds(100) * static_cast<int>(i + 1));
  }
}

TEST_CASE("a LeaseGuard on a ManualClock: advance_stepwise keeps it, a jump loses it",
          "[clock]") {
  ManualClock clock;
  LocalOptions o;
  o.clock = &clock;
  o.log_sink = quiet_log_sink();
  auto c = unwrap(LocalCoordinator::create(o));
  const milliseconds ttl(3000);
  {
    auto lease = unwrap(c->try_lock("job", ttl));
    REQUIRE(lease.has_value());
    LeaseGuard guard(*c, *lease);
    // Ten TTLs of manual time: the guard renews at each third of one.
    clock.advance_stepwise(ttl * 10);
    CHECK(guard.held());
    CHECK(guard.renewals() >= 29);
  }
  {
    auto lease = unwrap(c->try_lock("job", ttl));
    REQUIRE(lease.has_value());
    std::atomic<bool> lost{false};
    LeaseGuard guard(*c, *lease, [&](const absl::Status&) { lost = true; });
    // One jump past the TTL: the guard wakes after the lease expired.
    clock.advance(ttl * 2);
    REQUIRE(eventually([&] { return lost.load(); }));
    CHECK_FALSE(guard.held());
  }
}

}  // namespace
}  // namespace fleet::testing
