// fleet::Subscription — the handle that keeps a callback registered.
//
// Every Coordinator method that registers a callback (subscribe, watch,
// watch_members, observe_leader, watch_connection) returns a Subscription.
// Destroying it, or calling cancel(), unregisters the callback:
//
//   {
//     fleet::Subscription sub = coordinator->subscribe("news", on_news).value();
//     ...                              // on_news runs on fleet's event thread
//   }                                  // unsubscribed here
//
// After cancel() returns, the callback is not running and will not run
// again — except when cancel() is called from inside that same callback,
// where it returns at once and the callback is simply not called again.
// Move-only; not safe to use one handle from several threads at once.
#ifndef FLEET_SUBSCRIPTION_HPP_
#define FLEET_SUBSCRIPTION_HPP_

#include <functional>
#include <utility>

namespace fleet {

class Subscription {
 public:
  Subscription() = default;
  // For backends: `cancel` unregisters the callback with the guarantee above.
  explicit Subscription(std::function<void()> cancel) : cancel_(std::move(cancel)) {}
  ~Subscription() { cancel(); }

  Subscription(Subscription&& other) noexcept
      : cancel_(std::exchange(other.cancel_, nullptr)) {}
  Subscription& operator=(Subscription&& other) noexcept {
    if (this != &other) {
      cancel();
      cancel_ = std::exchange(other.cancel_, nullptr);
    }
    return *this;
  }
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // True until cancel() (or the destructor, or a move) ran.
  bool active() const { return static_cast<bool>(cancel_); }

  void cancel() {
    if (auto c = std::exchange(cancel_, nullptr)) c();
  }

 private:
  std::function<void()> cancel_;
};

}  // namespace fleet

#endif  // FLEET_SUBSCRIPTION_HPP_
