// fleet::Clock — the only place fleet reads the time or waits for it.
//
// Every timed behaviour in fleet (TTL expiry in the in-process backend, lock
// timeouts, lease renewal, heartbeats) asks a Clock. Production code uses
// real_clock(); tests inject a ManualClock and move time forward by hand, so
// a 5 s TTL expires in microseconds and deterministically:
//
//   fleet::ManualClock clock;
//   fleet::LocalOptions options;
//   options.clock = &clock;
//   auto coordinator = fleet::LocalCoordinator::create(options).value();
//   clock.advance(std::chrono::seconds(6));   // every 5 s TTL has now expired
//
// Thread safety: all methods of both clocks may be called from any thread.
#ifndef FLEET_CLOCK_HPP_
#define FLEET_CLOCK_HPP_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

namespace fleet {

class Clock {
 public:
  // Monotonic time, used for every deadline and TTL.
  using TimePoint = std::chrono::steady_clock::time_point;
  // Wall-clock time, used only for display (started_at, last_heartbeat).
  using WallTime = std::chrono::system_clock::time_point;

  virtual ~Clock() = default;

  virtual TimePoint now() const = 0;
  virtual WallTime wall_now() const = 0;

  // Blocks on `cv` (whose mutex `lock` holds) until it is notified or this
  // clock reaches `deadline`. Like std::condition_variable::wait_until it may
  // return spuriously, so callers loop on their own condition and on
  // `now() >= deadline`. `lock` is held again on return.
  virtual void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                          TimePoint deadline) = 0;
};

// The process-wide real clock (steady_clock / system_clock). The result
// belongs to fleet and must never be deleted.
Clock* real_clock();

// A clock that only moves when told to. Starts at an arbitrary fixed point.
// advance() wakes every wait_until() whose deadline has been reached, before
// it returns; work those waiters then do (expiring entries, renewing leases)
// happens on their own threads, after advance() has returned.
class ManualClock final : public Clock {
 public:
  ManualClock();
  ~ManualClock() override;

  ManualClock(const ManualClock&) = delete;
  ManualClock& operator=(const ManualClock&) = delete;

  TimePoint now() const override;
  WallTime wall_now() const override;
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  TimePoint deadline) override;

  // Moves time forward by `d` (negative values are ignored) in one jump and
  // wakes the waiters whose deadline has passed. A waiter that meant to act
  // before a later deadline — a LeaseGuard renewing at ttl/3 — wakes only
  // after the jump, and finds its lease expired: use advance_stepwise().
  void advance(std::chrono::nanoseconds d);

  // Moves time forward by `d` the way real time passes for the waiters: it
  // stops at each waiter's deadline on the way, wakes it, and lets the woken
  // threads act and wait again (up to `settle` of real time each stop)
  // before moving on. So a LeaseGuard renews on time, and a module's worker
  // runs each check it would have run. Returns the number of stops.
  //
  //   fleet::LeaseGuard guard(*coordinator, **lease);   // ttl 3 s
  //   clock.advance_stepwise(std::chrono::seconds(30)); // renewed all along
  //   assert(guard.held());
  int advance_stepwise(std::chrono::nanoseconds d, std::chrono::milliseconds settle =
                                                       std::chrono::milliseconds(1000));

  // Number of threads currently blocked in wait_until() — fleet's own
  // (the in-process backend's expiry thread, module workers, lease guards)
  // as well as the test's. To move time past what a thread will do, use
  // advance_stepwise() rather than waiting for this to reach a number.
  int waiters() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace fleet

#endif  // FLEET_CLOCK_HPP_
