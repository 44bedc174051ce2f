#include <atomic>
#include <thread>

#include "catch.hpp"
#include "internal/dispatcher.hpp"
#include "recorder.hpp"

namespace fleet::testing {
namespace {

using internal::Dispatcher;

TEST_CASE("the dispatcher runs events in posting order", "[dispatcher]") {
  Dispatcher d;
  auto slot = d.new_slot();
  std::vector<int> seen;
  for (int i = 0; i < 100; ++i) d.post(slot, [&seen, i] { seen.push_back(i); });
  d.drain();
  REQUIRE(seen.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(seen[i] == i);
}

TEST_CASE("cancel waits for a running callback and stops later ones", "[dispatcher]") {
  Dispatcher d;
  auto slot = d.new_slot();
  std::atomic<bool> entered{false}, release{false}, finished{false};
  std::atomic<int> runs{0};
  d.post(slot, [&] {
    entered = true;
    while (!release) std::this_thread::yield();
    finished = true;
    ++runs;
  });
  d.post(slot, [&] { ++runs; });
  REQUIRE(eventually([&] { return entered.load(); }));
  std::thread canceller([&] { d.cancel(slot); });
  REQUIRE(eventually([&] { return !slot->active(); }));  // cancel() is waiting
  CHECK_FALSE(finished);
  release = true;
  canceller.join();
  CHECK(finished);  // cancel returned only after the running callback ended
  d.drain();
  CHECK(runs == 1);  // the queued one never ran
}

TEST_CASE("cancel from inside the callback does not deadlock", "[dispatcher]") {
  Dispatcher d;
  auto slot = d.new_slot();
  std::atomic<int> runs{0};
  d.post(slot, [&] {
    ++runs;
    d.cancel(slot);
  });
  d.post(slot, [&] { ++runs; });
  d.drain();
  CHECK(runs == 1);
}

TEST_CASE("other slots keep receiving after one is cancelled", "[dispatcher]") {
  Dispatcher d;
  auto a = d.new_slot();
  auto b = d.new_slot();
  std::atomic<int> a_runs{0}, b_runs{0};
  d.cancel(a);
  d.post(a, [&] { ++a_runs; });
  d.post(b, [&] { ++b_runs; });
  d.drain();
  CHECK(a_runs == 0);
  CHECK(b_runs == 1);
}

TEST_CASE("a dispatcher destroyed from inside its own callback exits cleanly",
          "[dispatcher]") {
  auto d = std::make_unique<Dispatcher>();
  auto slot = d->new_slot();
  std::atomic<bool> done{false};
  d->post(slot, [&] {
    d.reset();  // the owner goes away on the event thread itself
    done = true;
  });
  // Not waiting through d: it is gone by then.
  REQUIRE(eventually([&] { return done.load(); }));
  CHECK(d == nullptr);
}

}  // namespace
}  // namespace fleet::testing
