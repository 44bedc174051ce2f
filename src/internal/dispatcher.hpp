// The event thread of a backend: runs subscriber callbacks one at a time, in
// the order they were posted, never under a backend lock.
#ifndef FLEET_SRC_INTERNAL_DISPATCHER_HPP_
#define FLEET_SRC_INTERNAL_DISPATCHER_HPP_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace fleet::internal {

class Dispatcher {
 public:
  // One per registered callback; cancel() turns it off for good.
  class Slot {
   public:
    bool active() const { return active_.load(); }

   private:
    friend class Dispatcher;
    // Written under the dispatcher's mutex; atomic so active() may be read
    // anywhere.
    std::atomic<bool> active_{true};
  };

  Dispatcher();
  // Drops events not yet delivered and joins the thread. On the event
  // thread itself (the owner was destroyed from inside a callback) it
  // detaches instead: the thread owns its state and exits safely.
  ~Dispatcher();

  // What the destructor does; idempotent. After it returns nothing runs.
  void stop();

  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  std::shared_ptr<Slot> new_slot() { return std::make_shared<Slot>(); }

  // Queues `fn` to run on the event thread unless `slot` is cancelled first.
  void post(std::shared_ptr<Slot> slot, std::function<void()> fn);

  // After it returns, nothing posted for `slot` runs any more and nothing is
  // running — unless called on the event thread (from a callback), where it
  // only prevents further runs.
  void cancel(const std::shared_ptr<Slot>& slot);

  bool on_event_thread() const { return std::this_thread::get_id() == thread_id_; }

  // Blocks until every event posted before the call has run (for tests and
  // orderly shutdown). Returns at once on the event thread.
  void drain();

 private:
  // Everything the event thread touches; the thread holds it too, so it may
  // outlive the Dispatcher when the thread had to be detached.
  struct State {
    std::mutex mu;
    std::condition_variable work_cv;
    std::condition_variable idle_cv;
    std::deque<std::pair<std::shared_ptr<Slot>, std::function<void()>>> queue;
    const Slot* running = nullptr;
    unsigned long long posted = 0;
    unsigned long long done = 0;
    bool stop = false;
  };
  static void run(const std::shared_ptr<State>& state);

  const std::shared_ptr<State> state_ = std::make_shared<State>();
  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_INTERNAL_DISPATCHER_HPP_
