#include "internal/dispatcher.hpp"

namespace fleet::internal {

Dispatcher::Dispatcher()
    : thread_([state = state_] { run(state); }), thread_id_(thread_.get_id()) {}

Dispatcher::~Dispatcher() { stop(); }

void Dispatcher::stop() {
  std::deque<std::pair<std::shared_ptr<Slot>, std::function<void()>>> dropped;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
    dropped.swap(state_->queue);  // destroyed below, outside the mutex
  }
  state_->work_cv.notify_all();
  state_->idle_cv.notify_all();
  if (!thread_.joinable()) return;
  if (on_event_thread()) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

void Dispatcher::post(std::shared_ptr<Slot> slot, std::function<void()> fn) {
  // Once queued, the event may run and destroy this Dispatcher (its owner
  // going away inside a callback): touch only our own reference after that.
  const std::shared_ptr<State> state = state_;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->stop || !slot->active_) return;
    state->queue.emplace_back(std::move(slot), std::move(fn));
    ++state->posted;
  }
  state->work_cv.notify_one();
}

void Dispatcher::cancel(const std::shared_ptr<Slot>& slot) {
  std::unique_lock<std::mutex> lock(state_->mu);
  slot->active_ = false;
  if (on_event_thread()) return;
  state_->idle_cv.wait(lock, [&] { return state_->running != slot.get(); });
}

void Dispatcher::drain() {
  if (on_event_thread()) return;
  std::unique_lock<std::mutex> lock(state_->mu);
  const auto target = state_->posted;
  state_->idle_cv.wait(lock, [&] { return state_->stop || state_->done >= target; });
}

void Dispatcher::run(const std::shared_ptr<State>& state) {
  State& s = *state;
  std::unique_lock<std::mutex> lock(s.mu);
  for (;;) {
    s.work_cv.wait(lock, [&] { return s.stop || !s.queue.empty(); });
    if (s.stop) break;
    auto item = std::move(s.queue.front());
    s.queue.pop_front();
    const bool active = item.first->active_;
    if (active) s.running = item.first.get();
    lock.unlock();
    if (active) item.second();
    item = {};  // captures are destroyed outside the mutex: they may cancel slots
    lock.lock();
    s.running = nullptr;
    ++s.done;
    s.idle_cv.notify_all();
  }
  s.idle_cv.notify_all();
}

}  // namespace fleet::internal
