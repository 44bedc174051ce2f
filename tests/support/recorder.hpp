// Collects events delivered on a backend's event thread so a test can wait
// for them, bounded in real time (events are asynchronous on every backend).
#ifndef FLEET_TESTS_SUPPORT_RECORDER_HPP_
#define FLEET_TESTS_SUPPORT_RECORDER_HPP_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

namespace fleet::testing {

// How long a test waits for an event that should come. Generous: only a
// failing test ever waits this long.
inline constexpr std::chrono::seconds kEventWait{10};

template <typename T>
class Recorder {
 public:
  std::function<void(const T&)> callback() {
    return [this](const T& event) {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(event);
      cv_.notify_all();
    };
  }

  // Waits until pred(events) holds; returns whether it did.
  bool wait_for(const std::function<bool(const std::vector<T>&)>& pred,
                std::chrono::milliseconds limit = kEventWait) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return pred(events_); });
  }

  bool wait_count(std::size_t n, std::chrono::milliseconds limit = kEventWait) {
    return wait_for([n](const std::vector<T>& e) { return e.size() >= n; }, limit);
  }

  std::vector<T> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<T> events_;
};

// Polls `cond` (a cheap read of state that another thread changes) until it
// holds or `limit` passes, in real time. For state that has no event.
bool eventually(const std::function<bool()>& cond,
                std::chrono::milliseconds limit = kEventWait);

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_RECORDER_HPP_
