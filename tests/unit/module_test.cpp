// The module skeleton (src/module/) on the in-process backend: the mirrored
// map's ordering and re-reads, the worker on a ManualClock, requests sent
// from the handler thread, attaching before or after join().
#include <atomic>
#include <future>
#include <map>
#include <thread>

#include "capture_sink.hpp"
#include "fault_coordinator.hpp"
#include "fleet/local_coordinator.hpp"
#include "module/core.hpp"
#include "module/map_mirror.hpp"
#include "module/requests.hpp"
#include "module/worker.hpp"
#include "recorder.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using internal::MapMirror;
using std::chrono::hours;
using std::chrono::milliseconds;

// What a mirror's listener was told, and the map it rebuilds from it.
struct Told {
  std::mutex mu;
  std::vector<std::string> log;  // "+key=value" / "-key" (reread marked "~")
  std::map<std::string, std::string> state;

  MapMirror::Listener listener() {
    return [this](const MapMirror::Change& c) {
      std::lock_guard<std::mutex> lock(mu);
      const char* mark = c.reread ? "~" : "";
      if (c.kind == MapMirror::Kind::kSet) {
        log.push_back(std::string(mark) + "+" + c.key + "=" + c.value);
        state[c.key] = c.value;
      } else {
        log.push_back(std::string(mark) + "-" + c.key);
        state.erase(c.key);
      }
    };
  }
  std::map<std::string, std::string> snapshot() {
    std::lock_guard<std::mutex> lock(mu);
    return state;
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return log.size();
  }
};

struct Local {
  ManualClock clock;
  std::shared_ptr<LocalStore> store;
  Local() {
    LocalOptions o;
    o.clock = &clock;
    o.session_ttl = milliseconds(300);
    o.log_sink = quiet_log_sink();
    store = LocalStore::create(o).value();
  }
  std::unique_ptr<Coordinator> connect() {
    return LocalCoordinator::connect(store).value();
  }
};

TEST_CASE("a mirror tells every entry, then every change, in order",
          "[unit][module][mirror]") {
  Local l;
  auto c = l.connect();
  FLEET_REQUIRE_OK(c->put("m", "a", "1").status());
  Told told;
  MapMirror mirror(*c, "m", "", told.listener());
  FLEET_REQUIRE_OK(mirror.start());
  CHECK(mirror.exact());
  CHECK(told.snapshot() == std::map<std::string, std::string>{{"a", "1"}});
  FLEET_REQUIRE_OK(c->put("m", "b", "2").status());
  FLEET_REQUIRE_OK(c->erase("m", "a").status());
  REQUIRE(eventually([&] { return told.size() == 3; }));
  std::lock_guard<std::mutex> lock(told.mu);
  CHECK(told.log == std::vector<std::string>{"~+a=1", "+b=2", "-a"});
}

TEST_CASE("a change delivered during a re-read is not undone by the read",
          "[unit][module][mirror]") {
  Local l;
  auto inner = l.connect();
  auto writer = l.connect();
  FaultCoordinator c(*inner);
  FLEET_REQUIRE_OK(writer->put("m", "k", "old").status());
  FLEET_REQUIRE_OK(writer->put("m", "gone", "1").status());
  Told told;
  MapMirror mirror(c, "m", "", told.listener());
  FLEET_REQUIRE_OK(mirror.start());
  bool once = false;
  c.set_after_scan([&] {
    if (once) return;
    once = true;
    // The read has "old" in hand; the stream now says "new" and deletes
    // "gone" again after re-creating it.
    FLEET_REQUIRE_OK(writer->put("m", "k", "new").status());
    REQUIRE(eventually([&] { return told.snapshot().at("k") == "new"; }));
  });
  mirror.interrupted();
  FLEET_REQUIRE_OK(mirror.resync());
  CHECK(told.snapshot().at("k") == "new");
  CHECK(mirror.exact());
  // A late event older than what the read told is dropped: offer an old
  // version after a newer one was told.
  const auto gen = mirror.generation();
  CHECK_FALSE(mirror.offer("k", "stale", 1, gen));
  CHECK(told.snapshot().at("k") == "new");
}

TEST_CASE("a re-read tells entries deleted and set while the stream was cut",
          "[unit][module][mirror]") {
  Local l;
  auto reader = l.connect();
  auto writer = l.connect();
  FaultCoordinator c(*reader);
  FLEET_REQUIRE_OK(writer->put("m", "a", "1").status());
  FLEET_REQUIRE_OK(writer->put("m", "b", "1").status());
  Told told;
  MapMirror mirror(c, "m", "", told.listener());
  FLEET_REQUIRE_OK(mirror.start());
  // The reader's session is cut off: its stream hears nothing.
  FLEET_REQUIRE_OK(l.store->set_reachable(reader->session_id(), false));
  FLEET_REQUIRE_OK(writer->erase("m", "a").status());
  FLEET_REQUIRE_OK(writer->put("m", "b", "2").status());
  FLEET_REQUIRE_OK(writer->put("m", "c", "3").status());
  mirror.interrupted();
  FLEET_REQUIRE_CODE(mirror.resync(), kUnavailable);
  CHECK_FALSE(mirror.exact());
  FLEET_REQUIRE_OK(l.store->set_reachable(reader->session_id(), true));
  {
    std::lock_guard<std::mutex> lock(told.mu);
    told.log.clear();
  }
  FLEET_REQUIRE_OK(mirror.resync());
  CHECK(mirror.exact());
  CHECK(told.snapshot() == std::map<std::string, std::string>{{"b", "2"}, {"c", "3"}});
  std::lock_guard<std::mutex> lock(told.mu);
  CHECK(told.log == std::vector<std::string>{"~+b=2", "~+c=3", "~-a"});
}

TEST_CASE("after a data loss the mirror takes versions that start again",
          "[unit][module][mirror]") {
  Local l;
  auto c = l.connect();
  Told told;
  for (int i = 0; i < 5; ++i)
    FLEET_REQUIRE_OK(c->put("m", "x", std::to_string(i)).status());
  FLEET_REQUIRE_OK(c->put("m", "y", "y").status());
  MapMirror mirror(*c, "m", "", told.listener());
  FLEET_REQUIRE_OK(mirror.start());
  l.store->lose_data();
  mirror.forget_versions();
  // Version 1 again: without forget_versions it would look stale.
  FLEET_REQUIRE_OK(c->put("m", "x", "after").status());
  REQUIRE(eventually([&] { return told.snapshot().at("x") == "after"; }));
  FLEET_REQUIRE_OK(mirror.resync());
  CHECK(told.snapshot() == std::map<std::string, std::string>{{"x", "after"}});
}

TEST_CASE("the worker steps when the ManualClock reaches the interval, not before",
          "[unit][module][worker]") {
  ManualClock clock;
  std::atomic<int> steps{0};
  internal::Worker worker(&clock, hours(1), [&] { ++steps; });
  worker.start();
  REQUIRE(eventually([&] { return steps == 1; }));  // the first step: at once
  // A worker that waited on the real clock would not step for an hour.
  std::this_thread::sleep_for(milliseconds(20));
  CHECK(steps == 1);
  clock.advance(hours(1));
  REQUIRE(eventually([&] { return steps == 2; }));
  worker.wake();
  REQUIRE(eventually([&] { return steps == 3; }));
  std::atomic<bool> ran{false};
  worker.post([&] { ran = true; });
  REQUIRE(eventually([&] { return ran.load(); }));
  CHECK(steps == 3);  // a task is not a step
  worker.stop();
}

TEST_CASE("a request sent from the handler thread gets every instance's answer",
          "[unit][module][requests]") {
  Local l;
  auto a = l.connect();
  auto b = l.connect();
  CaptureSink sink;
  internal::Logger log(&sink, LogLevel::kInfo, "test");
  std::unique_ptr<internal::Requests> ra;
  ra = std::make_unique<internal::Requests>(
      *a, "t", log,
      [&](std::string_view topic, std::string_view body) -> absl::StatusOr<std::string> {
        if (topic == "nested") {
          // On the handler thread: ask everyone, this instance included.
          RequestResult r = ra->ask("echo", body, {"A", "B"}, milliseconds(5000));
          if (!r.status.ok()) return r.status;
          std::string out;
          for (const auto& reply : r.replies)
            out += reply.instance + ":" + reply.body + ";";
          return out;
        }
        return std::string("a-") + std::string(body);
      });
  internal::Requests rb(
      *b, "t", log,
      [](std::string_view, std::string_view body) -> absl::StatusOr<std::string> {
        return std::string("b-") + std::string(body);
      });
  FLEET_REQUIRE_OK(ra->attach("A"));
  FLEET_REQUIRE_OK(rb.attach("B"));
  RequestResult r = rb.ask("nested", "x", {"A", "B"}, milliseconds(10000));
  FLEET_REQUIRE_OK(r.status);
  REQUIRE(r.replies.size() == 2);
  CHECK(r.replies[0].instance == "A");
  CHECK(r.replies[0].body == "A:a-x;B:b-x;");
  CHECK(r.replies[1].body == "b-x");
  ra->stop();
}

TEST_CASE("a request's timeout is measured on the Coordinator's clock",
          "[unit][module][requests]") {
  Local l;
  auto a = l.connect();
  CaptureSink sink;
  internal::Logger log(&sink, LogLevel::kInfo, "test");
  internal::Requests ra(
      *a, "t", log,
      [](std::string_view, std::string_view) -> absl::StatusOr<std::string> {
        return std::string("ok");
      });
  FLEET_REQUIRE_OK(ra.attach("A"));
  auto asked = std::async(std::launch::async, [&] {
    return ra.ask("q", "", {"A", "silent"}, hours(1));
  });
  // An hour of manual time, not of real time.
  while (asked.wait_for(milliseconds(5)) != std::future_status::ready) {
    l.clock.advance(hours(1));
  }
  RequestResult r = asked.get();
  FLEET_REQUIRE_CODE(r.status, kDeadlineExceeded);
  CHECK(r.missing == std::vector<std::string>{"silent"});
  REQUIRE(r.replies.size() == 1);
  CHECK(r.replies[0].body == "ok");
}

class CountingHooks : public internal::ModuleHooks {
 public:
  absl::Status attach(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu);
    attached_as = id;
    return absl::OkStatus();
  }
  absl::Status check() override {
    ++checks;
    return absl::OkStatus();
  }
  std::mutex mu;
  std::string attached_as;
  std::atomic<int> checks{0};
};

TEST_CASE("a module created before join attaches when its session joins",
          "[unit][module][core]") {
  Local l;
  auto c = l.connect();
  CountingHooks hooks;
  ModuleOptions o;
  o.background = false;
  o.log_sink = quiet_log_sink();
  internal::ModuleCore core(*c, o, "test", /*names_instance=*/true);
  FLEET_REQUIRE_OK(core.start(&hooks));
  FLEET_REQUIRE_CODE(core.ready(), kFailedPrecondition);
  FLEET_REQUIRE_CODE(core.run_once(), kFailedPrecondition);
  CHECK(hooks.checks == 0);
  InstanceInfo me;
  me.id = "late";
  FLEET_REQUIRE_OK(c->join(me));
  FLEET_REQUIRE_OK(core.run_once());
  CHECK(core.instance_id() == "late");
  CHECK(hooks.attached_as == "late");
  CHECK(hooks.checks == 1);
}

TEST_CASE("a background module attaches by itself once the session joins",
          "[unit][module][core]") {
  Local l;
  auto c = l.connect();
  CountingHooks hooks;
  ModuleOptions o;
  o.check_interval = hours(1);
  o.log_sink = quiet_log_sink();
  internal::ModuleCore core(*c, o, "test", /*names_instance=*/true);
  FLEET_REQUIRE_OK(core.start(&hooks));
  InstanceInfo me;
  me.id = "later";
  FLEET_REQUIRE_OK(c->join(me));
  // The join's membership event wakes the worker: no clock step needed.
  REQUIRE(eventually([&] { return core.attached() && hooks.checks >= 1; }));
  CHECK(core.instance_id() == "later");
  core.stop();
}

TEST_CASE("module options are checked the same way for every module",
          "[unit][module][core]") {
  ModuleOptions o;
  FLEET_REQUIRE_OK(validate_module_options(o, "rooms"));
  o.name = "";
  FLEET_REQUIRE_CODE(validate_module_options(o, "rooms"), kInvalidArgument);
  o.name = std::string(kMaxModuleNameBytes + 1, 'n');
  FLEET_REQUIRE_CODE(validate_module_options(o, "rooms"), kInvalidArgument);
  o.name = std::string(kMaxModuleNameBytes, 'n');
  FLEET_REQUIRE_OK(validate_module_options(o, "rooms"));
  o.check_interval = milliseconds(0);
  FLEET_REQUIRE_CODE(validate_module_options(o, "relay"), kInvalidArgument);
}

}  // namespace
}  // namespace fleet::testing
