// StopAfter: calls `stop` once `limit` has passed, unless destroyed first.
// The example servers use it to bound how long they run (--max-seconds).
#ifndef FLEET_EXAMPLES_STOP_AFTER_HPP_
#define FLEET_EXAMPLES_STOP_AFTER_HPP_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

class StopAfter {
 public:
  StopAfter(std::chrono::seconds limit, std::function<void()> stop)
      : thread_([this, limit, stop = std::move(stop)] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, limit, [this] { return done_; })) stop();
        }) {}
  ~StopAfter() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  StopAfter(const StopAfter&) = delete;
  StopAfter& operator=(const StopAfter&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the rest is ready
};

#endif  // FLEET_EXAMPLES_STOP_AFTER_HPP_
