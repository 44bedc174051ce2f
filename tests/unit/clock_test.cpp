#include <atomic>
#include <thread>

#include "catch.hpp"
#include "fleet/clock.hpp"
#include "recorder.hpp"

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

}  // namespace
}  // namespace fleet::testing
