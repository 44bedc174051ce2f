// A module's worker: one thread that runs the module's step every
// interval, at once when woken, and the tasks posted to it in between —
// waiting on the Coordinator's Clock, never on the real time, so that a
// ManualClock steps it.
#ifndef FLEET_SRC_MODULE_WORKER_HPP_
#define FLEET_SRC_MODULE_WORKER_HPP_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <thread>

#include "fleet/clock.hpp"
#include "internal/mutex.hpp"

namespace fleet::internal {

class Worker {
 public:
  // `step` runs on the worker thread (after start()); it must not call
  // stop().
  Worker(Clock* clock, std::chrono::milliseconds interval, std::function<void()> step);
  ~Worker();  // stop()
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread and returns once its first step has run and it waits
  // on the clock for the next: so a ManualClock's advance_stepwise() right
  // after it finds the worker's deadline.
  void start();
  // Joins the thread (after the task or step it is running); tasks not run
  // yet are dropped. Idempotent; without start() it only drops tasks.
  void stop();

  // The next step runs at once rather than at the end of the interval.
  void wake();
  // Runs `task` on the worker thread before its next step; without a
  // thread, in the next run_tasks().
  void post(std::function<void()> task);
  // Runs the tasks queued now (and those they queue) on the calling thread.
  void run_tasks();
  // Steps completed by the thread.
  std::uint64_t steps() const;

 private:
  void loop();
  bool pop(std::function<void()>* task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  const std::chrono::milliseconds interval_;
  const std::function<void()> step_;

  mutable Mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;  // the thread reached its first wait
  std::condition_variable started_cv_;
  std::uint64_t steps_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_MODULE_WORKER_HPP_
