#include "fleet/clock.hpp"

#include <algorithm>
#include <list>
#include <thread>
#include <vector>

namespace fleet {
namespace {

class RealClock final : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
  WallTime wall_now() const override { return std::chrono::system_clock::now(); }
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  TimePoint deadline) override {
    cv.wait_until(lock, deadline);
  }
};

}  // namespace

Clock* real_clock() {
  static RealClock* clock =
      new RealClock();  // never destroyed: used by detached work at exit
  return clock;
}

// A waiter registers (its mutex, its condition variable, its deadline) while
// holding its own mutex, then blocks on its condition variable. advance()
// wakes a due waiter by locking the waiter's mutex before notifying, so the
// wakeup cannot fall between the waiter's deadline check and its wait. To
// avoid a lock-order inversion (waiter: own mutex -> state mutex), advance()
// never holds the state mutex while taking a waiter's mutex; instead it marks
// the waiter `firing`, and a waiter only unregisters (and lets its mutex and
// condition variable go) once no advance() is firing it.
struct ManualClock::State {
  struct Waiter {
    std::mutex* mu;
    std::condition_variable* cv;
    TimePoint deadline;
    std::thread::id thread;
    std::uint64_t seq;  // registration order
    bool fired = false;
    int firing = 0;
  };

  mutable std::mutex mu;
  std::condition_variable firing_done;
  std::condition_variable registered;  // a waiter registered (advance_stepwise)
  std::uint64_t next_seq = 0;
  TimePoint now{std::chrono::hours(24 * 365)};
  WallTime wall{std::chrono::hours(24 * 365 * 50)};  // ~2020, fixed
  std::list<Waiter> waiters;
};

ManualClock::ManualClock() : state_(std::make_shared<State>()) {}
ManualClock::~ManualClock() = default;

Clock::TimePoint ManualClock::now() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->now;
}

Clock::WallTime ManualClock::wall_now() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return state_->wall;
}

int ManualClock::waiters() const {
  std::lock_guard<std::mutex> g(state_->mu);
  return static_cast<int>(state_->waiters.size());
}

void ManualClock::wait_until(std::unique_lock<std::mutex>& lock,
                             std::condition_variable& cv, TimePoint deadline) {
  State& s = *state_;
  std::list<State::Waiter>::iterator it;
  {
    std::lock_guard<std::mutex> g(s.mu);
    if (s.now >= deadline) return;
    it = s.waiters.insert(s.waiters.end(),
                          State::Waiter{lock.mutex(), &cv, deadline,
                                        std::this_thread::get_id(), s.next_seq++});
  }
  s.registered.notify_all();
  cv.wait(lock);
  lock.unlock();
  {
    std::unique_lock<std::mutex> g(s.mu);
    s.firing_done.wait(g, [&] { return it->firing == 0; });
    s.waiters.erase(it);
  }
  lock.lock();
}

void ManualClock::advance(std::chrono::nanoseconds d) {
  if (d.count() <= 0) return;
  State& s = *state_;
  std::vector<State::Waiter*> due;
  {
    std::lock_guard<std::mutex> g(s.mu);
    s.now += d;
    s.wall += std::chrono::duration_cast<WallTime::duration>(d);
    for (auto& w : s.waiters) {
      if (!w.fired && w.deadline <= s.now) {
        w.fired = true;
        ++w.firing;
        due.push_back(&w);
      }
    }
  }
  for (State::Waiter* w : due) {
    std::lock_guard<std::mutex> g(*w->mu);
    w->cv->notify_all();
  }
  if (!due.empty()) {
    std::lock_guard<std::mutex> g(s.mu);
    for (State::Waiter* w : due) --w->firing;
    s.firing_done.notify_all();
  }
}

int ManualClock::advance_stepwise(std::chrono::nanoseconds d,
                                  std::chrono::milliseconds settle) {
  if (d.count() <= 0) return 0;
  State& s = *state_;
  TimePoint target;
  {
    std::lock_guard<std::mutex> g(s.mu);
    target = s.now + d;
  }
  int stops = 0;
  for (;;) {
    TimePoint next;
    std::vector<std::thread::id> due;
    std::uint64_t seq;
    std::chrono::nanoseconds step;
    {
      std::lock_guard<std::mutex> g(s.mu);
      next = target;
      for (const auto& w : s.waiters) {
        if (!w.fired && w.deadline < next) next = w.deadline;
      }
      for (const auto& w : s.waiters) {
        if (!w.fired && w.deadline <= next) due.push_back(w.thread);
      }
      seq = s.next_seq;
      step = next - s.now;
    }
    advance(std::max(step, std::chrono::nanoseconds(1)));
    ++stops;
    if (!due.empty()) {
      // Real time: how long the woken threads may take to act and wait
      // again (one that ends, or blocks on something else, uses it up).
      std::unique_lock<std::mutex> g(s.mu);
      s.registered.wait_for(g, settle, [&] {
        for (const auto& id : due) {
          const bool again = std::any_of(
              s.waiters.begin(), s.waiters.end(),
              [&](const State::Waiter& w) { return w.thread == id && w.seq >= seq; });
          if (!again) return false;
        }
        return true;
      });
    }
    if (next >= target) break;
  }
  return stops;
}

}  // namespace fleet
