#include "internal/dispatcher.hpp"

namespace fleet::internal {

Dispatcher::Dispatcher() {
  std::unique_lock<std::mutex> lock(mu_);
  thread_ = std::thread([this] { run(); });
  thread_id_ = thread_.get_id();
}

Dispatcher::~Dispatcher() { stop(); }

void Dispatcher::stop() {
  std::deque<std::pair<std::shared_ptr<Slot>, std::function<void()>>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    dropped.swap(queue_);  // destroyed below, outside mu_
  }
  work_cv_.notify_all();
  if (!thread_.joinable()) return;
  if (on_event_thread()) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

void Dispatcher::post(std::shared_ptr<Slot> slot, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ || !slot->active_) return;
    queue_.emplace_back(std::move(slot), std::move(fn));
    ++posted_;
  }
  work_cv_.notify_one();
}

void Dispatcher::cancel(const std::shared_ptr<Slot>& slot) {
  std::unique_lock<std::mutex> lock(mu_);
  slot->active_ = false;
  if (on_event_thread()) return;
  idle_cv_.wait(lock, [&] { return running_ != slot.get(); });
}

void Dispatcher::drain() {
  if (on_event_thread()) return;
  std::unique_lock<std::mutex> lock(mu_);
  const auto target = posted_;
  idle_cv_.wait(lock, [&] { return stop_ || done_ >= target; });
}

void Dispatcher::run() {
  std::unique_lock<std::mutex> lock(mu_);
  // thread_id_ is written by the constructor under mu_ after the thread
  // started; taking mu_ here orders that write before any read below.
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) break;
    auto item = std::move(queue_.front());
    queue_.pop_front();
    const bool active = item.first->active_;
    if (active) running_ = item.first.get();
    lock.unlock();
    if (active) item.second();
    item = {};  // captures are destroyed outside mu_: they may cancel slots
    lock.lock();
    running_ = nullptr;
    ++done_;
    idle_cv_.notify_all();
  }
  idle_cv_.notify_all();
}

}  // namespace fleet::internal
