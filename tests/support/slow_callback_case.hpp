// One case run on both backends (tests/unit/rooms_threads_test.cpp and
// tests/redis/rooms_test.cpp): a Rooms callback that blocks holds up no lock
// grant, no membership event and no router decision on its Coordinator,
// because module callbacks run on the module's own thread.
#ifndef FLEET_TESTS_SUPPORT_SLOW_CALLBACK_CASE_HPP_
#define FLEET_TESTS_SUPPORT_SLOW_CALLBACK_CASE_HPP_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>

#include "catch.hpp"
#include "fleet/rooms.hpp"
#include "fleet/router.hpp"
#include "recorder.hpp"
#include "status.hpp"

namespace fleet::testing {

// A gate a callback waits at until the test opens it (10 s at most).
class Gate {
 public:
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::seconds(10), [this] { return open_; });
  }
  bool wait_entered() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [this] { return entered_; });
  }
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, open_ = false;
};

// `a` and `b` have joined as "a" and "b"; `join_d` joins a third instance.
inline void slow_callback_holds_nothing_up(
    Coordinator& a, Coordinator& b,
    const std::function<std::unique_ptr<Coordinator>()>& join_d, LogSink* log) {
  using std::chrono::milliseconds;
  Gate gate;
  std::atomic<int> delivered{0};
  rooms::RoomsOptions slow;
  slow.background = false;
  slow.log_sink = log;
  slow.host = rooms::NodeInfo{"a:7880", "", 0, rooms::NodeState::kServing};
  slow.on_message = [&](const rooms::Delivery&) {
    if (delivered++ == 0) gate.wait();  // the first one blocks until opened
  };
  auto ra = unwrap(rooms::Rooms::create(a, slow));
  rooms::RoomsOptions plain;
  plain.background = false;
  plain.log_sink = log;
  auto rb = unwrap(rooms::Rooms::create(b, plain));
  unwrap(ra->join("r", "alice"));
  unwrap(rb->join("r", "bob"));
  Recorder<MemberEvent> members;
  auto watch = unwrap(a.watch_members(members.callback()));
  router::RouterOptions ro;
  ro.background = false;
  ro.log_sink = log;
  auto router = unwrap(router::Router::create(a, ro));
  router::NodeSpec spec;
  spec.id = spec.address = "backend:1";
  FLEET_REQUIRE_OK(router->add_node(spec));

  FLEET_REQUIRE_OK(rb->broadcast("r", "first"));
  REQUIRE(gate.wait_entered());
  // a's callback is blocked now. A lock b releases is granted to a lock()
  // waiting on a's Coordinator...
  auto held = unwrap(b.try_lock("l", milliseconds(60000)));
  REQUIRE(held.has_value());
  auto waiter = std::async(std::launch::async, [&] {
    return a.lock("l", milliseconds(60000), milliseconds(60000));
  });
  FLEET_REQUIRE_OK(b.release(*held));
  REQUIRE(waiter.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  auto granted = unwrap(waiter.get());
  REQUIRE(granted.has_value());
  FLEET_REQUIRE_OK(a.release(*granted));
  // ...a membership event reaches a's watcher (the Coordinator's event
  // thread is free)...
  auto d = join_d();
  REQUIRE(members.wait_for([](const std::vector<MemberEvent>& e) {
    return !e.empty() && e.back().member.info.id == "d";
  }));
  // ...and the router decides.
  auto ticket = unwrap(router->acquire());
  CHECK(ticket.node_id == "backend:1");
  FLEET_REQUIRE_OK(router->release(ticket, {true}));
  CHECK(delivered == 1);
  gate.open();
  FLEET_REQUIRE_OK(rb->broadcast("r", "second"));
  REQUIRE(eventually([&] { return delivered == 2; }));
}

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_SLOW_CALLBACK_CASE_HPP_
