// fleet::relay on the in-process backend with a manual clock: replication,
// the safety rules, takeover by exactly one peer, restore and adoption, a
// paused former owner, unknown write outcomes, expiry, topology, data loss.
#include <deque>
#include <thread>

#include "capture_sink.hpp"
#include "fleet/local_coordinator.hpp"
#include "fleet/relay.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;
using namespace fleet::relay;

constexpr milliseconds kTtl{300};

// Waits for the store's event thread to deliver what was written (watch
// events); never for a TTL, which the manual clock drives.
template <typename F>
bool eventually(F f) {
  for (int i = 0; i < 2000; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return f();
}

struct Instance {
  std::string id;
  std::unique_ptr<Coordinator> coordinator;
  std::unique_ptr<Relay> relay;
  std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();
  std::shared_ptr<std::vector<SessionEvent>> events =
      std::make_shared<std::vector<SessionEvent>>();

  std::vector<SessionEvent> seen(SessionEventType type) const {
    std::lock_guard<std::mutex> lock(*mu);
    std::vector<SessionEvent> out;
    for (const auto& e : *events)
      if (e.type == type) out.push_back(e);
    return out;
  }
};

class Fleet {
 public:
  Fleet() {
    LocalOptions options;
    options.clock = &clock_;
    options.session_ttl = kTtl;
    options.log_sink = quiet_log_sink();
    store_ = LocalStore::create(options).value();
  }

  // Driven by run_once() (background false) and a 1 s takeover grace,
  // unless `as_given`.
  Instance& add(const std::string& id, RelayOptions options = {}, bool as_given = false) {
    Instance in;
    in.id = id;
    in.coordinator = LocalCoordinator::connect(store_).value();
    InstanceInfo info;
    info.id = id;
    FLEET_REQUIRE_OK(in.coordinator->join(info));
    if (!as_given) {
      options.background = false;
      options.takeover_grace = milliseconds(1000);
    }
    options.log_sink = &log_;
    options.on_event = [mu = in.mu, events = in.events](const SessionEvent& e) {
      std::lock_guard<std::mutex> lock(*mu);
      events->push_back(e);
    };
    in.relay = unwrap(Relay::create(*in.coordinator, options));
    instances_.push_back(std::move(in));
    return instances_.back();
  }

  // SIGKILL: no leave(); the membership expires one TTL later.
  void kill(Instance& in) {
    in.relay.reset();
    in.coordinator.reset();
  }

  // Lets the TTL pass and the survivors notice.
  void expire() {
    clock_.advance(kTtl * 2);
    for (auto& in : instances_) {
      if (in.coordinator) (void)in.coordinator->members();  // the store expires lazily
    }
  }

  // Every instance's check, with the store's events delivered before and
  // after (what one instance changed is then in every other's views).
  void run_all() {
    store_->drain_events();
    for (auto& in : instances_) {
      if (in.relay) FLEET_REQUIRE_OK(in.relay->run_once());
    }
    store_->drain_events();
  }

  ManualClock& clock() { return clock_; }
  LocalStore& store() { return *store_; }
  CaptureSink& log() { return log_; }

 private:
  ManualClock clock_;
  CaptureSink log_;
  std::shared_ptr<LocalStore> store_;
  std::deque<Instance> instances_;
};

TEST_CASE(
    "the worker's check runs on the ManualClock: sessions whose chosen taker "
    "is idle are taken once the grace has passed",
    "[relay][clock]") {
  Fleet f;
  auto& a = f.add("a");
  auto& idle = f.add("b");  // run_once() never called: it takes nothing
  RelayOptions o;
  o.check_interval = std::chrono::hours(1);
  o.takeover_grace = std::chrono::hours(2);
  auto& worker = f.add("c", o, /*as_given=*/true);
  constexpr int kSessions = 40;
  for (int i = 0; i < kSessions; ++i) {
    FLEET_REQUIRE_OK(a.relay->create_session("s" + std::to_string(i), "{}").status());
  }
  REQUIRE(eventually([&] { return worker.relay->counts().foreign == kSessions; }));
  f.kill(a);
  // Each step of the clock runs one check at least.
  auto next_check = [&](std::chrono::nanoseconds step) {
    const auto before = worker.relay->stats().checks;
    f.clock().advance(step);
    REQUIRE(eventually([&] { return worker.relay->stats().checks > before; }));
  };
  // The expiry wakes c's check at once: it takes the sessions rendezvous
  // gives it; b's wait for the grace.
  next_check(kTtl * 2);
  REQUIRE(eventually([&] { return worker.relay->counts().own > 0; }));
  // An hour: still within the grace. If the worker waited on the real
  // clock, no further check would come at all.
  next_check(std::chrono::hours(1));
  CHECK(worker.relay->counts().own < static_cast<std::size_t>(kSessions));
  next_check(std::chrono::hours(1) + milliseconds(1));
  REQUIRE(eventually(
      [&] { return worker.relay->counts().own == static_cast<std::size_t>(kSessions); }));
  CHECK(worker.relay->stats().taken == kSessions);
  CHECK(idle.relay->counts().own == 0);
  CHECK(eventually(
      [&] { return worker.seen(SessionEventType::kTaken).size() == kSessions; }));
}

TEST_CASE("sessions replicate as foreign copies, updated in place, deleted everywhere",
          "[relay]") {
  Fleet f;
  auto& a = f.add("a");
  auto& b = f.add("b");
  auto& c = f.add("c");
  for (int i = 0; i < 100; ++i) {
    auto s = unwrap(a.relay->create_session("s" + std::to_string(i), "{\"n\":0}"));
    CHECK(s.owner == "a");
    CHECK(s.version == 1u);
  }
  REQUIRE(eventually([&] { return b.relay->counts().foreign == 100; }));
  REQUIRE(eventually([&] { return c.relay->counts().foreign == 100; }));
  CHECK(a.relay->counts().own == 100);
  CHECK(a.relay->counts().foreign == 0);
  CHECK(b.relay->counts().own == 0);
  CHECK(c.relay->counts().total() == 100);

  auto v2 = unwrap(a.relay->update("s7", "{\"n\":1}"));
  CHECK(v2.version == 2u);
  REQUIRE(eventually([&] { return b.relay->find("s7")->version == 2u; }));
  CHECK(b.relay->find("s7")->document == "{\"n\":1}");
  CHECK(b.relay->find("s7")->fence == v2.fence);
  FLEET_REQUIRE_CODE(a.relay->create_session("s7", "{}"), kAlreadyExists);
  FLEET_REQUIRE_CODE(b.relay->create_session("s7", "{}"), kAlreadyExists);

  FLEET_REQUIRE_OK(a.relay->remove("s7"));
  REQUIRE(eventually([&] { return !b.relay->find("s7") && !c.relay->find("s7"); }));
  CHECK(a.relay->counts().own == 99);
  CHECK(b.relay->counts().foreign == 99);
  FLEET_REQUIRE_CODE(a.relay->remove("s7"), kNotFound);
}

TEST_CASE("a non-owner cannot change or delete a session, forward_remove asks the owner",
          "[relay]") {
  Fleet f;
  auto& a = f.add("a");
  auto& b = f.add("b");
  auto mine = unwrap(a.relay->create_session("call", "{\"x\":1}"));
  REQUIRE(eventually([&] { return b.relay->find("call").has_value(); }));
  FLEET_REQUIRE_CODE(b.relay->remove("call"), kFailedPrecondition);
  FLEET_REQUIRE_CODE(b.relay->update("call", "{}"), kFailedPrecondition);
  CHECK(a.relay->find("call")->document == "{\"x\":1}");
  CHECK(unwrap(a.coordinator->get(bucket_map("default", "call"), "call"))->value ==
        encode_session(mine));
  FLEET_REQUIRE_CODE(a.relay->forward_remove("call"), kFailedPrecondition);
  FLEET_REQUIRE_CODE(b.relay->forward_remove("nope"), kNotFound);

  FLEET_REQUIRE_OK(b.relay->forward_remove("call"));
  REQUIRE(eventually([&] {
    (void)a.relay->run_once();  // the owner handles the request on its thread
    return !b.relay->find("call").has_value();
  }));
  CHECK_FALSE(a.relay->find("call").has_value());
  auto removed = a.seen(SessionEventType::kRemovedOnRequest);
  REQUIRE(removed.size() == 1);
  CHECK(removed[0].session.id == "call");
}

TEST_CASE("a dead owner's sessions are each taken by exactly one live peer", "[relay]") {
  Fleet f;
  auto& a = f.add("a");
  auto& b = f.add("b");
  auto& c = f.add("c");
  std::uint64_t old_fence = 0;
  for (int i = 0; i < 200; ++i) {
    old_fence = unwrap(a.relay->create_session("s" + std::to_string(i), "{}")).fence;
  }
  REQUIRE(eventually([&] {
    return b.relay->counts().foreign == 200 && c.relay->counts().foreign == 200;
  }));
  f.kill(a);
  f.expire();
  f.run_all();
  REQUIRE(eventually([&] {
    f.run_all();
    return b.relay->counts().total() == 200 && c.relay->counts().total() == 200 &&
           b.relay->counts().own + c.relay->counts().own == 200;
  }));
  // Spread by rendezvous hashing: both take a share.
  CHECK(b.relay->counts().own > 50);
  CHECK(c.relay->counts().own > 50);
  CHECK(b.seen(SessionEventType::kTaken).size() == b.relay->counts().own);
  CHECK(c.seen(SessionEventType::kTaken).size() == c.relay->counts().own);
  for (const auto& s : b.relay->own()) {
    CHECK(s.taken_from == "a");
    CHECK(s.fence > old_fence);
    CHECK(s.version == 2u);
    REQUIRE(eventually([&] { return c.relay->find(s.id)->owner == "b"; }));  // b's copy
  }
  // A second round finds nothing left to take.
  f.run_all();
  CHECK(b.relay->counts().own + c.relay->counts().own == 200);
}

TEST_CASE("the chosen taker missing, another peer takes over after the grace",
          "[relay]") {
  Fleet f;
  auto& a = f.add("a");
  auto& b = f.add("b");
  auto& c = f.add("c");
  for (int i = 0; i < 40; ++i)
    FLEET_REQUIRE_OK(a.relay->create_session("s" + std::to_string(i), "{}"));
  REQUIRE(eventually([&] { return b.relay->counts().foreign == 40; }));
  REQUIRE(eventually([&] { return c.relay->counts().foreign == 40; }));
  f.kill(a);
  f.expire();
  // Only b checks (c is stuck): b takes its own share at once...
  FLEET_REQUIRE_OK(b.relay->run_once());
  const auto first = b.relay->counts().own;
  CHECK(first > 0);
  CHECK(first < 40);
  // ... and c's share once the grace passed.
  f.clock().advance(milliseconds(1001));
  FLEET_REQUIRE_OK(b.relay->run_once());
  CHECK(b.relay->counts().own == 40);
  REQUIRE(eventually([&] { return c.relay->counts().foreign == 40; }));
  FLEET_REQUIRE_OK(c.relay->run_once());
  CHECK(c.relay->counts().own == 0);
}

TEST_CASE("a restarted owner learns what it lost and does not resurrect deleted sessions",
          "[relay]") {
  Fleet f;
  auto& a = f.add("a");
  auto& b = f.add("b");
  for (int i = 0; i < 10; ++i)
    FLEET_REQUIRE_OK(a.relay->create_session("s" + std::to_string(i), "{}"));
  REQUIRE(eventually([&] { return b.relay->counts().foreign == 10; }));
  f.kill(a);
  f.expire();
  FLEET_REQUIRE_OK(b.relay->run_once());
  REQUIRE(b.relay->counts().own == 10);
  FLEET_REQUIRE_OK(b.relay->remove("s3"));  // deleted after the takeover

  auto& a2 = f.add("a");  // the same instance id, restarted
  CHECK(a2.relay->restore_report().own == 0);
  CHECK(a2.relay->restore_report().lost == 9);
  CHECK(a2.relay->counts().own == 0);
  CHECK(a2.relay->counts().foreign == 9);
  CHECK_FALSE(a2.relay->find("s3").has_value());
  FLEET_REQUIRE_OK(a2.relay->run_once());
  CHECK(a2.seen(SessionEventType::kLost).size() == 9);
  FLEET_REQUIRE_CODE(a2.relay->update("s1", "{}"), kFailedPrecondition);
  FLEET_REQUIRE_CODE(a2.relay->update("s3", "{}"), kNotFound);
  CHECK(unwrap(b.coordinator->get(bucket_map("default", "s1"), "s1")).has_value());
  CHECK_FALSE(unwrap(b.coordinator->get(bucket_map("default", "s3"), "s3")).has_value());
}

TEST_CASE(
    "a restarted owner adopts its sessions, its paused old incarnation cannot write",
    "[relay]") {
  Fleet f;
  auto& a1 = f.add("a");
  for (int i = 0; i < 5; ++i)
    FLEET_REQUIRE_OK(a1.relay->create_session("s" + std::to_string(i), "{}"));
  const auto old_fence = a1.relay->find("s0")->fence;
  // a1 pauses longer than its TTL (no peer to take over), a2 starts as "a".
  FLEET_REQUIRE_OK(f.store().set_reachable(a1.coordinator->session_id(), false));
  f.expire();
  auto& a2 = f.add("a");
  CHECK(a2.relay->restore_report().own == 5);
  CHECK(a2.relay->counts().own == 5);
  CHECK(a2.relay->find("s0")->fence > old_fence);
  CHECK(a2.relay->find("s0")->version == 2u);
  FLEET_REQUIRE_OK(f.store().set_reachable(a1.coordinator->session_id(), true));
  FLEET_REQUIRE_CODE(a1.relay->update("s0", "{\"zombie\":1}"), kFailedPrecondition);
  FLEET_REQUIRE_CODE(a1.relay->remove("s1"), kFailedPrecondition);
  CHECK(unwrap(a2.coordinator->get(bucket_map("default", "s0"), "s0"))
            ->value.find("zombie") == std::string::npos);
  CHECK(a2.relay->counts().own == 5);
  auto s = unwrap(a2.relay->update("s0", "{\"live\":1}"));
  CHECK(s.version == 3u);
}

TEST_CASE("a paused owner's sessions are taken, resumed, it gets kLost and cannot write",
          "[relay]") {
  Fleet f;
  auto& a = f.add("a");
  auto& b = f.add("b");
  FLEET_REQUIRE_OK(a.relay->create_session("s", "{}"));
  REQUIRE(eventually([&] { return b.relay->find("s").has_value(); }));
  FLEET_REQUIRE_OK(f.store().set_reachable(a.coordinator->session_id(), false));
  f.expire();
  FLEET_REQUIRE_OK(b.relay->run_once());
  REQUIRE(b.relay->counts().own == 1);
  FLEET_REQUIRE_OK(f.store().set_reachable(a.coordinator->session_id(), true));
  // The change stream (or the resync after RECONNECTED) tells a.
  REQUIRE(eventually([&] {
    (void)a.relay->run_once();
    return a.relay->counts().own == 0;
  }));
  CHECK(a.seen(SessionEventType::kLost).size() == 1);
  CHECK(a.relay->find("s")->owner == "b");
  FLEET_REQUIRE_CODE(a.relay->update("s", "{}"), kFailedPrecondition);
}

TEST_CASE("a write whose outcome is unknown is an error, then read back", "[relay]") {
  Fleet f;
  auto& a = f.add("a");
  FLEET_REQUIRE_OK(a.relay->create_session("s", "{\"v\":1}"));
  FLEET_REQUIRE_OK(f.store().set_reachable(a.coordinator->session_id(), false));
  FLEET_REQUIRE_CODE(a.relay->update("s", "{\"v\":2}"), kUnavailable);
  FLEET_REQUIRE_CODE(a.relay->create_session("t", "{}"), kUnavailable);
  FLEET_REQUIRE_OK(f.store().set_reachable(a.coordinator->session_id(), true));
  auto s = unwrap(a.relay->update("s", "{\"v\":3}"));
  CHECK(s.version == 2u);  // the failed write did not happen
  CHECK(unwrap(a.coordinator->get(bucket_map("default", "s"), "s"))->value ==
        encode_session(s));
  FLEET_REQUIRE_CODE(a.relay->update("t", "{}"), kNotFound);  // the create did not happen
  FLEET_REQUIRE_OK(a.relay->create_session("t", "{}"));
}

TEST_CASE("an expired session goes from every instance, the owner is told", "[relay]") {
  Fleet f;
  auto& a = f.add("a");
  auto& b = f.add("b");
  FLEET_REQUIRE_OK(a.relay->create_session("idle", "{}", milliseconds(1000)));
  FLEET_REQUIRE_OK(a.relay->create_session("busy", "{}", milliseconds(1000)));
  REQUIRE(eventually([&] { return b.relay->counts().foreign == 2; }));
  f.clock().advance(milliseconds(600));
  FLEET_REQUIRE_OK(a.relay->update("busy", "{\"n\":1}"));  // restarts its ttl
  f.clock().advance(milliseconds(600));
  (void)a.coordinator->members();  // the store expires entries lazily
  (void)b.coordinator->get(bucket_map("default", "idle"), "idle");
  REQUIRE(eventually([&] { return b.relay->counts().foreign == 1; }));
  CHECK(b.relay->find("busy").has_value());
  REQUIRE(eventually([&] { return a.relay->counts().own == 1; }));
  FLEET_REQUIRE_OK(a.relay->run_once());
  auto expired = a.seen(SessionEventType::kExpired);
  REQUIRE(expired.size() == 1);
  CHECK(expired[0].session.id == "idle");
}

TEST_CASE("peer groups: only instances that replicate a group copy and take it over",
          "[relay]") {
  Fleet f;
  RelayOptions east;
  east.group = "east";
  auto& a = f.add("a", east);
  RelayOptions b_opts;
  b_opts.replicate = {"east"};
  auto& b = f.add("b", b_opts);
  RelayOptions c_opts;
  c_opts.replicate = {"west"};
  auto& c = f.add("c", c_opts);
  for (int i = 0; i < 30; ++i)
    FLEET_REQUIRE_OK(a.relay->create_session("s" + std::to_string(i), "{}"));
  REQUIRE(eventually([&] { return b.relay->counts().foreign == 30; }));
  FLEET_REQUIRE_OK(c.relay->run_once());
  CHECK(c.relay->counts().foreign == 0);
  f.kill(a);
  f.expire();
  f.clock().advance(milliseconds(2000));  // past the grace: only b is eligible anyway
  f.run_all();
  CHECK(b.relay->counts().own == 30);
  CHECK(c.relay->counts().total() == 0);
  CHECK(b.relay->find("s0")->group == "east");
}

TEST_CASE("after the backend lost its data the owner re-publishes its sessions",
          "[relay]") {
  Fleet f;
  auto& a = f.add("a");
  auto& b = f.add("b");
  for (int i = 0; i < 20; ++i)
    FLEET_REQUIRE_OK(a.relay->create_session("s" + std::to_string(i), "{}"));
  REQUIRE(eventually([&] { return b.relay->counts().foreign == 20; }));
  f.store().lose_data();
  REQUIRE(eventually([&] {
    f.run_all();
    return unwrap(a.coordinator->scan(bucket_map("default", "s1"))).size() > 0 &&
           b.relay->counts().foreign == 20;
  }));
  CHECK(a.relay->counts().own == 20);
  std::size_t stored = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    stored += unwrap(a.coordinator->scan("relay/default/s" + std::to_string(i))).size();
  }
  CHECK(stored == 20);
  CHECK(f.log().contains("re-published 20 own sessions"));
  FLEET_REQUIRE_OK(a.relay->update("s1", "{\"after\":1}"));
}

TEST_CASE("bad input: ids, documents, options, malformed records, no membership",
          "[relay]") {
  Fleet f;
  auto& a = f.add("a");
  FLEET_REQUIRE_CODE(a.relay->create_session("", "{}"), kInvalidArgument);
  FLEET_REQUIRE_CODE(a.relay->create_session("bad\nid", "{}"), kInvalidArgument);
  FLEET_REQUIRE_CODE(
      a.relay->create_session("big", std::string(kMaxDocumentBytes + 1, 'x')),
      kInvalidArgument);
  FLEET_REQUIRE_CODE(a.relay->create_session("neg", "{}", milliseconds(-1)),
                     kInvalidArgument);
  FLEET_REQUIRE_CODE(a.relay->update("missing", "{}"), kNotFound);

  // Malformed records planted in a bucket: skipped with a warning.
  FLEET_REQUIRE_OK(
      a.coordinator->put(bucket_map("default", "junk"), "junk", "not a record"));
  FLEET_REQUIRE_OK(a.coordinator->put(bucket_map("default", "junk2"), "junk2",
                                      "fr2\n1:b3:NaN1:11:00:0:2:{}"));
  FLEET_REQUIRE_OK(a.relay->create_session("good", "{}"));
  auto& b = f.add("b");
  CHECK(b.relay->restore_report().malformed == 2);
  CHECK(b.relay->restore_report().foreign == 1);
  CHECK(f.log().contains("skipped a malformed session record 'junk'"));

  auto lone =
      LocalCoordinator::connect(std::shared_ptr<LocalStore>(LocalStore::create().value()))
          .value();
  RelayOptions o;
  o.background = false;
  o.log_sink = quiet_log_sink();
  // Created before join: it starts once the session has joined.
  auto early = unwrap(Relay::create(*lone, o));
  FLEET_REQUIRE_CODE(early->create_session("s", "{}"), kFailedPrecondition);
  FLEET_REQUIRE_CODE(early->run_once(), kFailedPrecondition);
  CHECK(early->instance_id().empty());
  CHECK(early->own().empty());
  InstanceInfo info;
  info.id = "x";
  FLEET_REQUIRE_OK(lone->join(info));
  FLEET_REQUIRE_OK(early->create_session("s", "{}"));
  CHECK(early->instance_id() == "x");
  CHECK(early->counts().own == 1);
  early.reset();
  o.name = "bad name\n";
  FLEET_REQUIRE_CODE(Relay::create(*lone, o), kInvalidArgument);
  o.name = "ok";
  o.replicate = {"a,b"};
  FLEET_REQUIRE_CODE(Relay::create(*lone, o), kInvalidArgument);
  o.replicate = {};
  o.check_interval = milliseconds(0);
  FLEET_REQUIRE_CODE(Relay::create(*lone, o), kInvalidArgument);

  // The record: "fr2\n" and length-prefixed owner, fence, version, ttl,
  // group, taken_from, document.
  auto good = unwrap(decode_session("x", "fr2\n1:a1:71:11:00:0:2:{}"));
  CHECK(good.owner == "a");
  CHECK(good.fence == 7u);
  CHECK(good.document == "{}");
  Session round;
  round.owner = "own\ner";  // any bytes survive
  round.fence = 3;
  round.version = 4;
  round.document = std::string("\0\n\x01", 3);
  auto back = unwrap(decode_session("y", encode_session(round)));
  CHECK(back.owner == round.owner);
  CHECK(back.document == round.document);
  FLEET_REQUIRE_CODE(decode_session("x", "fr2\n1:a1:71:01:00:0:2:{}"),
                     kDataLoss);  // version 0
  FLEET_REQUIRE_CODE(decode_session("x", "fr2\n1:a1:71:12:-50:0:2:{}"),
                     kDataLoss);  // negative ttl
  FLEET_REQUIRE_CODE(decode_session("x", "fr1\na\n1\n1\n0\n\n\n"),
                     kDataLoss);                                      // the old format
  FLEET_REQUIRE_CODE(decode_session("x", "fr2\n1:a1:7"), kDataLoss);  // truncated
  FLEET_REQUIRE_CODE(decode_session("x", "fr2\n1:a1:71:11:00:0:2:{}x"),
                     kDataLoss);  // trailing bytes
  FLEET_REQUIRE_CODE(decode_session("x", "fr2\n1:a1:71:11:00:0:9:{}"),
                     kDataLoss);  // a length beyond the end
}

}  // namespace
}  // namespace fleet::testing
