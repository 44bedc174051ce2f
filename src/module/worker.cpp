#include "module/worker.hpp"

#include <utility>

namespace fleet::internal {

Worker::Worker(Clock* clock, std::chrono::milliseconds interval,
               std::function<void()> step)
    : clock_(clock), interval_(interval), step_(std::move(step)) {}

Worker::~Worker() { stop(); }

void Worker::start() {
  thread_ = std::thread([this] { loop(); });
  MutexLock lock(mu_);
  // The thread holds mu_ from setting waiting_ until the clock has it
  // registered as a waiter (it releases mu_ inside the wait).
  while (!waiting_ && !stop_) started_cv_.wait(lock.native());
}

void Worker::stop() {
  std::deque<std::function<void()>> dropped;  // destroyed outside the lock
  {
    MutexLock lock(mu_);
    stop_ = true;
    dropped.swap(tasks_);
  }
  cv_.notify_all();
  started_cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
    thread_.join();
  }
}

void Worker::wake() {
  {
    MutexLock lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void Worker::post(std::function<void()> task) {
  {
    MutexLock lock(mu_);
    if (stop_) return;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_all();
}

bool Worker::pop(std::function<void()>* task) {
  if (tasks_.empty()) return false;
  *task = std::move(tasks_.front());
  tasks_.pop_front();
  return true;
}

void Worker::run_tasks() {
  for (;;) {
    std::function<void()> task;
    {
      MutexLock lock(mu_);
      if (stop_ || !pop(&task)) return;
    }
    task();
  }
}

std::uint64_t Worker::steps() const {
  MutexLock lock(mu_);
  return steps_;
}

void Worker::loop() {
  MutexLock lock(mu_);
  Clock::TimePoint next = clock_->now();
  for (;;) {
    while (!stop_ && tasks_.empty() && !wake_ && clock_->now() < next) {
      if (!waiting_) {
        waiting_ = true;
        started_cv_.notify_all();
      }
      clock_->wait_until(lock.native(), cv_, next);
    }
    if (stop_) return;
    std::function<void()> task;
    if (pop(&task)) {
      lock.unlock();
      task();
      task = nullptr;  // its captures go outside the lock too
      lock.lock();
      continue;
    }
    wake_ = false;
    // The next step is due an interval after this one began: time that
    // passes during the step (a ManualClock advanced meanwhile) counts.
    const Clock::TimePoint began = clock_->now();
    lock.unlock();
    step_();
    lock.lock();
    ++steps_;
    next = began + interval_;
  }
}

}  // namespace fleet::internal
