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

  // Moves time forward by `d` (negative values are ignored) and wakes the
  // waiters whose deadline has passed.
  void advance(std::chrono::nanoseconds d);

  // Number of threads currently blocked in wait_until(); lets a test wait
  // until a background thread has gone to sleep before advancing time.
  int waiters() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace fleet

#endif  // FLEET_CLOCK_HPP_
