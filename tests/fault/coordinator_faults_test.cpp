// The fault suite, in process: three instances take a lock, claim keys and
// route requests (tests/fault/workload.hpp) against a real redis-server
// while it is killed and restarted empty, paused for less and for more than
// the session TTL, or their connections are dropped, stalled or delayed by
// FaultProxies; and one instance crashes. After each scenario the history
// checker finds no violation, Redis holds no slot, every kind of call
// succeeded again within one heartbeat + one reconnect backoff (+ the
// data-loss grace after a restart without persistence) of the fault's end,
// and none failed after that. Each scenario prints what it measured.
#include <cstdio>
#include <thread>

#include "catch.hpp"
#include "recorder.hpp"
#include "workload.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;

// A loaded 2-core machine under a sanitizer schedules late: what one
// bound may take beyond the figures it is made of.
constexpr milliseconds kSlack{700};

std::unique_ptr<RedisServer> private_server() {
  auto s = RedisServer::start();
  REQUIRE(s.ok());
  return *std::move(s);
}

// Runs the workload, applies `fault` (which returns when the fault is
// over), keeps the load on, then checks everything.
void run(const std::string& name, Workload& w, RedisServer& server,
         const std::function<void()>& fault, milliseconds grace = milliseconds(0)) {
  w.start();
  std::this_thread::sleep_for(milliseconds(600));
  const auto begin = History::now();
  fault();
  const auto end = History::now();
  std::this_thread::sleep_for(milliseconds(2500));
  w.stop();

  const auto rep = w.report(begin, end);
  const auto violations = w.history().check();
  w.print("fault scenario", name, rep, end - begin, violations);

  CHECK(violations.empty());
  INFO(rep.first_unexpected);
  CHECK(rep.errors_before_fault.empty());
  CHECK(rep.errors_after_recovery.empty());
  const Timing& t = w.timing();
  const milliseconds bound = t.heartbeat + t.backoff_max + grace + kSlack;
  for (Op op : {Op::kLock, Op::kClaim, Op::kRoute}) {
    INFO(to_string(op));
    CHECK(rep.recovery.at(op) <= bound);
  }
  // What the sessions hold in Redis is what their owners hold: nothing.
  const std::string slots = "fleet:{" + w.ns() + "}:slots:router/p";
  CHECK(eventually([&] {
    auto left = server.command({"HGETALL", slots});
    return left.ok() && left->empty();
  }));
  for (int i = 0; i < w.instances(); ++i) {
    auto sid = w.coordinator(i).session_id();
    auto held = server.command({"HLEN", "fleet:{" + w.ns() + "}:slotsess:" + sid});
    REQUIRE(held.ok());
    CHECK(*held == "0");
  }
}

TEST_CASE("Redis killed and restarted empty", "[fault]") {
  auto server = private_server();
  Workload w(*server, 3, false);
  run(
      "redis SIGKILL + restart empty", w, *server,
      [&] {
        server->kill();
        w.history().data_lost(History::now());
        std::this_thread::sleep_for(milliseconds(500));
        REQUIRE(server->restart().ok());
      },
      2 * w.timing().heartbeat);
  for (int i = 0; i < w.instances(); ++i) CHECK(w.coordinator(i).data_losses() == 1);
}

TEST_CASE("Redis paused for less than the session TTL", "[fault]") {
  auto server = private_server();
  Workload w(*server, 3, false);
  run("redis SIGSTOP 500 ms (TTL 1000 ms)", w, *server, [&] {
    server->pause();
    std::this_thread::sleep_for(milliseconds(500));
    server->resume();
  });
  for (int i = 0; i < w.instances(); ++i) CHECK(w.coordinator(i).data_losses() == 0);
}

TEST_CASE("Redis paused for longer than the session TTL", "[fault]") {
  auto server = private_server();
  Workload w(*server, 3, false);
  run("redis SIGSTOP 2000 ms (TTL 1000 ms)", w, *server, [&] {
    server->pause();
    std::this_thread::sleep_for(milliseconds(2000));
    server->resume();
  });
}

TEST_CASE("every connection reset, three times", "[fault]") {
  auto server = private_server();
  Workload w(*server, 3, true);
  run("proxy drops every connection x3", w, *server, [&] {
    for (int round = 0; round < 3; ++round) {
      for (int i = 0; i < w.instances(); ++i) w.proxy(i).drop();
      std::this_thread::sleep_for(milliseconds(200));
    }
  });
}

TEST_CASE("connections stalled for less than the session TTL", "[fault]") {
  auto server = private_server();
  Workload w(*server, 3, true);
  run("proxy stalls every connection 500 ms", w, *server, [&] {
    for (int i = 0; i < w.instances(); ++i) w.proxy(i).stall(true);
    std::this_thread::sleep_for(milliseconds(500));
    for (int i = 0; i < w.instances(); ++i) w.proxy(i).stall(false);
  });
}

TEST_CASE("one instance stalled for longer than the session TTL", "[fault]") {
  auto server = private_server();
  Workload w(*server, 3, true);
  run("proxy stalls instance 0 for 2000 ms", w, *server, [&] {
    w.proxy(0).stall(true);
    std::this_thread::sleep_for(milliseconds(2000));
    w.proxy(0).stall(false);
  });
}

TEST_CASE("connections delayed beyond the command timeout", "[fault]") {
  auto server = private_server();
  Workload w(*server, 3, true);
  run("proxy delays every connection 400 ms for 1 s (command timeout 300 ms)", w, *server,
      [&] {
        for (int i = 0; i < w.instances(); ++i) w.proxy(i).delay(milliseconds(400));
        std::this_thread::sleep_for(milliseconds(1000));
        for (int i = 0; i < w.instances(); ++i) w.proxy(i).delay(milliseconds(0));
      });
}

TEST_CASE("an instance crashes holding the lock and slots", "[fault]") {
  auto server = private_server();
  Workload w(*server, 3, false);
  const std::string slots = "fleet:{" + w.ns() + "}:slots:router/p";
  w.start();
  std::this_thread::sleep_for(milliseconds(600));
  const auto begin = History::now();
  w.crash(0);
  // Its slots are freed by the others' sweep: within TTL + one heartbeat.
  std::this_thread::sleep_for(w.timing().session_ttl + w.timing().heartbeat + kSlack);
  const auto end = History::now();
  std::this_thread::sleep_for(milliseconds(1000));
  w.stop();
  const auto violations = w.history().check();
  for (const auto& v : violations) std::printf("    %s\n", v.c_str());
  CHECK(violations.empty());
  const auto rep = w.report(begin, end);
  INFO(rep.first_unexpected);
  CHECK(rep.errors_after_recovery.empty());
  CHECK(eventually([&] {
    auto left = server->command({"HGETALL", slots});
    return left.ok() && left->empty();
  }));
  std::printf("fault scenario 'instance crash': %s; survivors' errors after: %zu\n",
              w.history().summary().c_str(), rep.errors_after_recovery.size());
}

}  // namespace
}  // namespace fleet::testing
