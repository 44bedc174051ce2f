// The Redis backend beyond the shared contract: unreachable Redis,
// fallback, restarts, malformed data, authentication, binary-safe names.
// Every case runs against a real redis-server started by the harness.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "capture_sink.hpp"
#include "fast_options.hpp"
#include "fleet/local_coordinator.hpp"
#include "fleet/names.hpp"
#include "fleet/redis_coordinator.hpp"
#include "fleet/router.hpp"
#include "recorder.hpp"
#include "redis_server.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;

// acquire_slot_async, waited for (bounded).
absl::StatusOr<std::optional<SlotGrant>> acquire_async(Coordinator& c,
                                                       std::string_view pool,
                                                       const SlotRequest& r) {
  Recorder<absl::StatusOr<std::optional<SlotGrant>>> result;
  const absl::Status st = c.acquire_slot_async(
      pool, r,
      [cb = result.callback()](absl::StatusOr<std::optional<SlotGrant>> g) { cb(g); });
  FLEET_REQUIRE_OK(st);
  REQUIRE(result.wait_count(1));
  return result.events().front();
}

int unused_port() {
  // Start and stop a server to learn a port that nothing listens on now.
  auto s = RedisServer::start();
  REQUIRE(s.ok());
  const int port = (*s)->port();
  (*s)->stop();
  return port;
}

TEST_CASE("unreachable Redis: Unavailable within the connect timeout, or fallback",
          "[redis]") {
  CaptureSink sink;
  const std::string url = "redis://127.0.0.1:" + std::to_string(unused_port()) + "/0";
  auto options = fast_options(url, &sink, "unreachable");
  const auto start = std::chrono::steady_clock::now();
  auto c = create_coordinator(options);
  const auto took = std::chrono::steady_clock::now() - start;
  FLEET_REQUIRE_CODE(c, kUnavailable);
  CHECK(took < options.connect_timeout + std::chrono::seconds(2));  // never a hang
  CHECK(std::string(c.status().message()).find("127.0.0.1") != std::string::npos);

  options.fallback_to_local = true;
  auto local = create_coordinator(options);
  REQUIRE(local.ok());
  CHECK((*local)->backend_name() == "local");
  CHECK(sink.contains("falling back to the in-process backend"));
  CHECK(unwrap((*local)->counter_add("c", 2)) == 2);

  // Fallback is only for an unreachable Redis, never for a bad URL.
  options.url = "redis://127.0.0.1:notaport";
  FLEET_REQUIRE_CODE(create_coordinator(options), kInvalidArgument);
}

// A loopback listener that is not Redis: it accepts and says nothing (the
// kernel completes the handshake from the backlog), or answers every
// connection with `reply` and closes. Stopped (closed) by its destructor.
class NotRedis {
 public:
  explicit NotRedis(std::string reply = {}) : reply_(std::move(reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    if (reply_.empty()) return;
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;  // closed
        (void)!::write(c, reply_.data(), reply_.size());
        ::close(c);
      }
    });
  }
  ~NotRedis() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

 private:
  const std::string reply_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST_CASE("a server that accepts and never answers: Unavailable in time, or fallback",
          "[redis]") {
  NotRedis stalled;
  CaptureSink sink;
  auto options = fast_options(stalled.url(), &sink, "stalled");
  auto start = std::chrono::steady_clock::now();
  auto c = create_coordinator(options);
  FLEET_REQUIRE_CODE(c, kUnavailable);
  CHECK(std::chrono::steady_clock::now() - start <
        options.connect_timeout + std::chrono::seconds(1));
  CHECK(std::string(c.status().message()) ==
        "Redis at " + stalled.url() +
            " accepted the connection but did not answer within " +
            std::to_string(options.command_timeout.count()) +
            " ms (stopped, overloaded, or not a Redis server)");

  options.fallback_to_local = true;
  start = std::chrono::steady_clock::now();
  auto local = create_coordinator(options);
  REQUIRE(local.ok());
  CHECK(std::chrono::steady_clock::now() - start <
        options.connect_timeout + std::chrono::seconds(1));
  CHECK((*local)->backend_name() == "local");
  CHECK(sink.contains("did not answer within"));
}

TEST_CASE("a server that answers with something else than RESP is named and described",
          "[redis]") {
  NotRedis web("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
  auto options = fast_options(web.url(), quiet_log_sink(), "not-resp");
  options.url.insert(std::string("redis://").size(), "u:topsecret@");
  auto c = create_coordinator(options);
  FLEET_REQUIRE_CODE(c, kUnavailable);
  const std::string m(c.status().message());
  CHECK(m.find("answered with something that is not the Redis protocol (RESP)") !=
        std::string::npos);
  CHECK(m.find("127.0.0.1:" + std::to_string(web.port())) != std::string::npos);
  CHECK(m.find("topsecret") == std::string::npos);
}

TEST_CASE("invalid Redis options are InvalidArgument", "[redis]") {
  RedisOptions o = fast_options(shared_redis_server().url(), quiet_log_sink(), "opts");
  o.namespace_name = "has{brace}";
  FLEET_REQUIRE_CODE(RedisCoordinator::connect(o), kInvalidArgument);
  o.namespace_name = "ok";
  o.session_ttl = o.heartbeat_interval;
  FLEET_REQUIRE_CODE(RedisCoordinator::connect(o), kInvalidArgument);
  o.session_ttl = milliseconds(300);
  o.pool_size = 0;
  FLEET_REQUIRE_CODE(RedisCoordinator::connect(o), kInvalidArgument);
  o.pool_size = 2;
  o.url = "redis://127.0.0.1:" + std::to_string(shared_redis_server().port()) + "/99999";
  FLEET_REQUIRE_CODE(RedisCoordinator::connect(o), kInvalidArgument);
}

TEST_CASE(
    "Redis killed and restarted: SUSPENDED, LOST, RECONNECTED, everything delivers again",
    "[redis][restart]") {
  auto server = RedisServer::start();
  REQUIRE(server.ok());
  auto options = fast_options((*server)->url(), quiet_log_sink(), "restart");
  auto c = unwrap(RedisCoordinator::connect(options));
  auto other = unwrap(RedisCoordinator::connect(options));
  InstanceInfo me;
  me.id = "survivor";
  FLEET_REQUIRE_OK(c->join(me));

  Recorder<ConnectionState> states, other_states;
  auto s1 =
      unwrap(c->watch_connection([cb = states.callback()](ConnectionState s) { cb(s); }));
  auto s0 = unwrap(other->watch_connection(
      [cb = other_states.callback()](ConnectionState s) { cb(s); }));
  Recorder<Message> messages;
  auto s2 = unwrap(c->subscribe("news", messages.callback()));
  Recorder<WatchEvent> changes;
  auto s3 = unwrap(c->watch("rooms", "", changes.callback()));
  REQUIRE(states.wait_count(1));

  (*server)->kill();  // a crash, not a clean shutdown
  REQUIRE(states.wait_for([](const auto& e) { return e.size() >= 2; }));
  CHECK(states.events()[1] == ConnectionState::kSuspended);
  FLEET_REQUIRE_CODE(c->counter_add("x", 1), kUnavailable);
  // Down for longer than the session TTL: our membership is gone.
  REQUIRE(states.wait_for([](const auto& e) { return e.size() >= 3; }));
  CHECK(states.events()[2] == ConnectionState::kLost);

  REQUIRE((*server)->restart().ok());
  REQUIRE(states.wait_for([](const auto& e) { return e.size() >= 4; }));
  CHECK(states.events()[3] == ConnectionState::kReconnected);
  CHECK(c->connection_state() == ConnectionState::kReconnected);
  // The other session recovers on its own backoff schedule.
  REQUIRE(other_states.wait_for([](const auto& e) {
    return !e.empty() && e.back() == ConnectionState::kReconnected;
  }));

  // Scripts reloaded: the restarted Redis had an empty script cache, so
  // the sessions must have sent SCRIPT LOAD (after a NOSCRIPT) to it.
  auto stats = unwrap((*server)->command({"INFO", "commandstats"}));
  CHECK(stats.find("cmdstat_script|load:calls=") != std::string::npos);
  // Membership re-established by the session itself.
  auto members = unwrap(other->members());
  REQUIRE(members.size() == 1);
  CHECK(members[0].info.id == "survivor");

  // Subscriptions and watches deliver again.
  FLEET_REQUIRE_OK(other->publish("news", "after restart"));
  REQUIRE(messages.wait_count(1));
  CHECK(messages.events()[0].payload == "after restart");
  FLEET_REQUIRE_OK(other->put("rooms", "r1", "n1"));
  REQUIRE(changes.wait_count(1));
  CHECK(changes.events()[0].key == "r1");
}

TEST_CASE("a dropped pub/sub connection is SUSPENDED, then RECONNECTED once resubscribed",
          "[redis][pubsub]") {
  RedisServer& server = shared_redis_server();
  CaptureSink sink;
  auto c =
      unwrap(RedisCoordinator::connect(fast_options(server.url(), &sink, "pubsubdrop")));
  auto writer =
      unwrap(RedisCoordinator::connect(fast_options(server.url(), &sink, "pubsubdrop")));
  InstanceInfo me;
  me.id = "watcher";
  FLEET_REQUIRE_OK(c->join(me));
  Recorder<ConnectionState> states;
  auto watch =
      unwrap(c->watch_connection([cb = states.callback()](ConnectionState s) { cb(s); }));
  Recorder<WatchEvent> changes;
  auto w = unwrap(c->watch("m", "", changes.callback()));
  REQUIRE(states.wait_count(1));
  // Kill only the subscriber connections: heartbeats keep working.
  REQUIRE(server.command({"CLIENT", "KILL", "TYPE", "pubsub"}).ok());
  REQUIRE(states.wait_for([](const auto& e) {
    auto s = std::find(e.begin(), e.end(), ConnectionState::kSuspended);
    return s != e.end() &&
           std::find(s, e.end(), ConnectionState::kReconnected) != e.end();
  }));
  auto seen = states.events();
  CHECK(std::find(seen.begin(), seen.end(), ConnectionState::kLost) == seen.end());
  // Membership was never touched: no re-join.
  CHECK(unwrap(c->members()).size() == 1);
  // Subscriptions are back.
  FLEET_REQUIRE_OK(writer->put("m", "k", "after"));
  REQUIRE(changes.wait_count(1));
  CHECK(changes.events().back().value == "after");
}

TEST_CASE("malformed data planted in fleet's keys is skipped or DataLoss, never a crash",
          "[redis][malformed]") {
  RedisServer& server = shared_redis_server();
  CaptureSink sink;
  auto options = fast_options(server.url(), &sink, "planted");
  auto c = unwrap(RedisCoordinator::connect(options));
  InstanceInfo me;
  me.id = "good";
  FLEET_REQUIRE_OK(c->join(me));
  FLEET_REQUIRE_OK(c->publish_node_state("n1", {{"load", 2}}));
  FLEET_REQUIRE_OK(c->put("m", "ok", "fine"));
  const std::string p = "fleet:{planted}:";

  // A garbage member record held by our (live) session id.
  REQUIRE(server.command({"HSET", p + "members", "ghost", "not a record"}).ok());
  REQUIRE(server.command({"HSET", p + "member_session", "ghost", c->session_id()}).ok());
  auto members = unwrap(c->members());
  REQUIRE(members.size() == 1);
  CHECK(members[0].info.id == "good");
  CHECK(sink.contains("malformed member record"));

  // Garbage node views: unparsable, non-numeric, infinite.
  REQUIRE(
      server.command({"HSET", p + "node:n1", c->session_id(), "load\tNaN\nload\tinf\n"})
          .ok());
  auto other = unwrap(RedisCoordinator::connect(options));
  FLEET_REQUIRE_OK(other->publish_node_state("n1", {{"load", 5}}));
  AggregationSpec sum;
  sum.default_aggregation = Aggregation::kSum;
  auto agg = unwrap(c->aggregate("n1", sum));
  REQUIRE(agg.has_value());
  CHECK(agg->metrics.at("load").value == 5);
  CHECK(sink.contains("skipped"));
  REQUIRE(server.command({"SET", p + "node:n2", "a string, not a hash"}).ok());
  REQUIRE(server.command({"SADD", p + "nodes", "n2"}).ok());
  auto all = unwrap(c->aggregate_all(sum));
  REQUIRE(all.size() == 1);
  CHECK(all[0].node_id == "n1");

  // Map entries: no version, wrong type, oversized.
  REQUIRE(server.command({"HSET", p + "map:m", "bad", "no version here"}).ok());
  FLEET_REQUIRE_CODE(c->get("m", "bad"), kDataLoss);
  FLEET_REQUIRE_CODE(c->compare_and_set("m", "bad", "x", "y"), kDataLoss);
  // A batch that would read it applies nothing, not even the ops before.
  FLEET_REQUIRE_CODE(
      c->apply("m", {MapOp::put("before", "v"), MapOp::compare_and_set("bad", "x", "y")}),
      kDataLoss);
  CHECK_FALSE(unwrap(c->get("m", "before")).has_value());
  auto entries = unwrap(c->scan("m"));
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].key == "ok");
  REQUIRE(server.command({"SET", p + "map:wrongtype", "x"}).ok());
  FLEET_REQUIRE_CODE(c->get("wrongtype", "k"), kDataLoss);
  FLEET_REQUIRE_CODE(c->put("wrongtype", "k", "v"), kDataLoss);
  FLEET_REQUIRE_CODE(c->apply("wrongtype", {MapOp::put("k", "v")}), kDataLoss);
  REQUIRE(server
              .command({"HSET", p + "map:m", "huge",
                        "1:" + std::string(kMaxValueBytes + 1, 'x')})
              .ok());
  FLEET_REQUIRE_CODE(c->get("m", "huge"), kDataLoss);

  // Counters and leader records.
  REQUIRE(server.command({"HSET", p + "counters", "c", "twelve"}).ok());
  FLEET_REQUIRE_CODE(c->counter_get("c"), kDataLoss);
  FLEET_REQUIRE_CODE(c->counter_add("c", 1), kDataLoss);
  REQUIRE(server.command({"HSET", p + "lock:E:boss", "owner", "x", "fence", "zz"}).ok());
  FLEET_REQUIRE_CODE(c->leader("boss"), kDataLoss);
  REQUIRE(server.command({"SET", p + "owned:o", "not a hash"}).ok());
  FLEET_REQUIRE_CODE(c->owned_counter_add("o", 1), kDataLoss);

  // Planted pub/sub payloads are skipped with a warning.
  Recorder<Message> got;
  auto sub = unwrap(c->subscribe("chan", got.callback()));
  REQUIRE(server.command({"PUBLISH", p + "chan:chan", "garbage without fields"}).ok());
  FLEET_REQUIRE_OK(other->publish("chan", "real"));
  REQUIRE(got.wait_count(1));
  CHECK(got.events()[0].payload == "real");
  CHECK(sink.contains("malformed message"));
  CHECK(got.size() == 1);

  // Slot pools: a non-integer count is DataLoss for a decision that needs
  // it, and skipped with a warning by slot_usage; a wrong type is DataLoss.
  SlotRequest slots;
  slots.candidates = {SlotCandidate{"bad", 2, 0, 0}, SlotCandidate{"fine", 2, 0, 0}};
  REQUIRE(server.command({"HSET", p + "slots:pool", "bad", "many"}).ok());
  FLEET_REQUIRE_CODE(c->acquire_slot("pool", slots), kDataLoss);
  FLEET_REQUIRE_CODE(acquire_async(*c, "pool", slots), kDataLoss);
  slots.candidates.erase(slots.candidates.begin());
  auto grant = unwrap(c->acquire_slot("pool", slots));
  REQUIRE(grant.has_value());
  CHECK(grant->target == "fine");
  CHECK(unwrap(c->slot_usage("pool")) ==
        std::map<std::string, std::int64_t>{{"fine", 1}});
  CHECK(sink.contains("skipping malformed slot count of 'bad'"));
  REQUIRE(server.command({"SET", p + "slots:wrong", "not a hash"}).ok());
  FLEET_REQUIRE_CODE(c->acquire_slot("wrong", slots), kDataLoss);
  FLEET_REQUIRE_CODE(acquire_async(*c, "wrong", slots), kDataLoss);
  FLEET_REQUIRE_CODE(c->slot_usage("wrong"), kDataLoss);

  // After all that, the session still works.
  CHECK(unwrap(c->counter_add("fresh", 3)) == 3);
}

TEST_CASE("a session swept while cut off takes its slots back before it takes more",
          "[redis][slots]") {
  RedisServer& server = shared_redis_server();
  CaptureSink sink;
  auto options = fast_options(server.url(), &sink, "swept");
  // No heartbeat within the test: the decisions below must be the first to
  // find the session gone. A heartbeat between the deletions and the
  // decision would let the agent re-establish the session first, and the
  // decision would be granted instead of coming back stale (seen in CI).
  // Stale decisions ask the agent for a sync, so nothing waits for a beat.
  options.heartbeat_interval = std::chrono::seconds(30);
  options.session_ttl = std::chrono::seconds(90);
  auto c = unwrap(RedisCoordinator::connect(options));
  Recorder<ConnectionState> states;
  auto watch =
      unwrap(c->watch_connection([cb = states.callback()](ConnectionState s) { cb(s); }));
  SlotRequest r;
  r.candidates = {SlotCandidate{"n", 4, 0, 0}};
  REQUIRE(unwrap(c->acquire_slot("p", r)).has_value());
  // What sweep.lua does to a session that expired while it was cut off.
  const std::string p = "fleet:{swept}:";
  const std::string sid = c->session_id();
  REQUIRE(server.command({"ZREM", p + "sessions", sid}).ok());
  REQUIRE(server.command({"HDEL", p + "epochs", sid}).ok());
  REQUIRE(server.command({"DEL", p + "slotsess:" + sid, p + "slots:p"}).ok());
  // The next decision finds the session gone; the agent re-establishes it
  // (LOST, then the sync takes the held slot back) and the decision is
  // made after that: the node counts both.
  auto g = unwrap(c->acquire_slot("p", r));
  REQUIRE(g.has_value());
  CHECK(g->used == 2);
  CHECK(unwrap(c->slot_usage("p")) == std::map<std::string, std::int64_t>{{"n", 2}});
  REQUIRE(states.wait_for([](const auto& e) {
    return std::find(e.begin(), e.end(), ConnectionState::kLost) != e.end();
  }));
  CHECK(unwrap(server.command({"HGET", p + "slotsess:" + sid, "1:pn"})) == "2");
  // Both are ours to release, and then nothing is left.
  FLEET_REQUIRE_OK(c->release_slot("p", "n"));
  FLEET_REQUIRE_OK(c->release_slot("p", "n"));
  FLEET_REQUIRE_CODE(c->release_slot("p", "n"), kFailedPrecondition);
  CHECK(unwrap(c->slot_usage("p")).empty());
  // The same through the async path: a stale decision is Unavailable, and
  // the one after the agent's sync is granted on the re-taken count.
  REQUIRE(unwrap(c->acquire_slot("p", r)).has_value());
  REQUIRE(server.command({"ZREM", p + "sessions", sid}).ok());
  REQUIRE(server.command({"HDEL", p + "epochs", sid}).ok());
  REQUIRE(server.command({"DEL", p + "slotsess:" + sid, p + "slots:p"}).ok());
  FLEET_REQUIRE_CODE(acquire_async(*c, "p", r), kUnavailable);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto again = acquire_async(*c, "p", r);
    if (again.ok()) {
      REQUIRE(again->has_value());
      CHECK((*again)->used == 2);
      break;
    }
    FLEET_REQUIRE_CODE(again, kUnavailable);
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

TEST_CASE("acquire_slot_async: Unavailable while Redis is down, working after a restart",
          "[redis][slots][async][restart]") {
  auto server = RedisServer::start();
  REQUIRE(server.ok());
  auto c = unwrap(RedisCoordinator::connect(
      fast_options((*server)->url(), quiet_log_sink(), "async-restart")));
  SlotRequest r;
  r.candidates = {SlotCandidate{"n", 100, 0, 0}};
  auto first = unwrap(acquire_async(*c, "p", r));
  REQUIRE(first.has_value());
  CHECK(first->used == 1);

  (*server)->kill();
  const auto asked = std::chrono::steady_clock::now();
  FLEET_REQUIRE_CODE(acquire_async(*c, "p", r), kUnavailable);
  // The connection's failure, or the reconnect's: well within the timeouts.
  CHECK(std::chrono::steady_clock::now() - asked < std::chrono::seconds(3));
  FLEET_REQUIRE_CODE(acquire_async(*c, "p", r), kUnavailable);

  // Restarted empty: the lane reconnects (after its backoff) and meets
  // NOSCRIPT, then sends the script's body.
  REQUIRE((*server)->restart().ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::optional<SlotGrant> again;
  for (;;) {
    auto g = acquire_async(*c, "p", r);
    if (g.ok()) {
      again = *g;
      break;
    }
    // Down until the reconnect, then stale until the agent re-establishes
    // the session in the empty Redis, then the data-loss grace.
    FLEET_REQUIRE_CODE(g, kUnavailable);
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(milliseconds(20));
  }
  REQUIRE(again.has_value());
  // The restarted Redis forgot the first slot; the session took it back.
  CHECK(again->used == 2);
  CHECK(c->data_losses() == 1);
  auto stats = unwrap((*server)->command({"INFO", "commandstats"}));
  CHECK(stats.find("cmdstat_eval:calls=") != std::string::npos);
}

TEST_CASE("acquire_slot_async calls still pending at destruction are called back once",
          "[redis][slots][async]") {
  RedisServer& server = shared_redis_server();
  auto c = unwrap(RedisCoordinator::connect(
      fast_options(server.url(), quiet_log_sink(), "async-teardown")));
  SlotRequest r;
  r.candidates = {SlotCandidate{"n", 1'000'000, 0, 0}};
  constexpr int kCalls = 2000;
  std::atomic<int> calls{0}, granted{0}, cancelled{0}, other{0};
  for (int i = 0; i < kCalls; ++i) {
    (void)c->acquire_slot_async("p", r, [&](absl::StatusOr<std::optional<SlotGrant>> g) {
      ++calls;
      if (g.ok() && g->has_value()) {
        ++granted;
      } else if (absl::IsCancelled(g.status())) {
        ++cancelled;
      } else {
        ++other;
      }
    });
  }
  c.reset();  // most are still queued or in flight
  CHECK(calls == kCalls);
  CHECK(granted + cancelled == kCalls);
  CHECK(other == 0);
}

TEST_CASE("Router::acquire_async on Redis: two gateways share the capacity exactly",
          "[redis][router][async]") {
  RedisServer& server = shared_redis_server();
  auto options = fast_options(server.url(), quiet_log_sink(), "async-router");
  struct Gateway {
    std::unique_ptr<Coordinator> coordinator;
    std::unique_ptr<router::Router> router;
  };
  std::vector<Gateway> gateways(2);
  for (auto& g : gateways) {
    g.coordinator = unwrap(RedisCoordinator::connect(options));
    router::RouterOptions ro;
    ro.name = "llm";
    ro.background = false;
    ro.log_sink = quiet_log_sink();
    g.router = unwrap(router::Router::create(*g.coordinator, ro));
  }
  for (const char* id : {"n1", "n2", "n3"}) {
    router::NodeSpec spec;
    spec.id = id;
    spec.address = "127.0.0.1:1";
    spec.capacity = 2;
    FLEET_REQUIRE_OK(gateways[0].router->add_node(spec));
  }
  for (auto& g : gateways) FLEET_REQUIRE_OK(g.router->run_once());

  Recorder<absl::StatusOr<router::Ticket>> results;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        (void)gateways[static_cast<std::size_t>(t % 2)].router->acquire_async(
            {}, [cb = results.callback()](absl::StatusOr<router::Ticket> ticket) {
              cb(ticket);
            });
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(results.wait_count(40));
  std::map<std::string, std::set<std::int64_t>> inflight;
  int exhausted = 0;
  for (const auto& r : results.events()) {
    if (r.ok()) {
      inflight[r->node_id].insert(r->cluster_inflight);
    } else {
      CHECK(r.status().code() == absl::StatusCode::kResourceExhausted);
      ++exhausted;
    }
  }
  CHECK(exhausted == 34);  // 40 decisions, 6 slots
  const std::set<std::int64_t> one_two = {1, 2};
  CHECK(inflight == std::map<std::string, std::set<std::int64_t>>{
                        {"n1", one_two}, {"n2", one_two}, {"n3", one_two}});
  CHECK(gateways[0].router->stats().decisions + gateways[1].router->stats().decisions ==
        6);
  CHECK(unwrap(gateways[1].coordinator->slot_usage("router/llm")) ==
        std::map<std::string, std::int64_t>{{"n1", 2}, {"n2", 2}, {"n3", 2}});
}

TEST_CASE(
    "requirepass: the right password works, wrong ones are Unauthenticated, never logged",
    "[redis][auth]") {
  const std::string password = "Zq9-very-secret-pw";
  auto server = RedisServer::start({{"--requirepass", password}, 0});
  REQUIRE(server.ok());
  const std::string host = "127.0.0.1:" + std::to_string((*server)->port());
  CaptureSink sink;

  auto in_url = fast_options("redis://:" + password + "@" + host + "/0", &sink, "auth");
  auto c = unwrap(RedisCoordinator::connect(in_url));
  CHECK(unwrap(c->counter_add("n", 1)) == 1);

  auto in_options = fast_options("redis://" + host + "/0", &sink, "auth");
  in_options.password = password;
  CHECK(unwrap(unwrap(RedisCoordinator::connect(in_options))->counter_get("n")) == 1);

  ::setenv("FLEET_REDIS_PASSWORD", password.c_str(), 1);
  auto from_env =
      RedisCoordinator::connect(fast_options("redis://" + host + "/0", &sink, "auth"));
  ::unsetenv("FLEET_REDIS_PASSWORD");
  REQUIRE(from_env.ok());

  std::vector<std::string> errors;
  auto wrong = RedisCoordinator::connect(
      fast_options("redis://:wrong-" + password + "@" + host + "/0", &sink, "auth"));
  FLEET_REQUIRE_CODE(wrong, kUnauthenticated);
  errors.push_back(std::string(wrong.status().message()));
  auto missing =
      RedisCoordinator::connect(fast_options("redis://" + host + "/0", &sink, "auth"));
  FLEET_REQUIRE_CODE(missing, kUnauthenticated);
  errors.push_back(std::string(missing.status().message()));
  auto unreachable = RedisCoordinator::connect(fast_options(
      "redis://:" + password + "@127.0.0.1:" + std::to_string(unused_port()) + "/0",
      &sink, "auth"));
  FLEET_REQUIRE_CODE(unreachable, kUnavailable);
  errors.push_back(std::string(unreachable.status().message()));

  for (const auto& e : errors) {
    INFO(e);
    CHECK(e.find(password) == std::string::npos);
    CHECK(e.find("Zq9") == std::string::npos);
  }
  CHECK(errors[2].find(":***@") != std::string::npos);  // redacted, yet useful
  for (const auto& line : sink.lines()) {
    INFO(line);
    CHECK(line.find("Zq9") == std::string::npos);
  }
}

TEST_CASE("ACL users: a full user works, a restricted one is PermissionDenied",
          "[redis][auth]") {
  auto server = RedisServer::start(
      {{"--user", "default", "off",   "--user", "fleetapp", "on",    ">app-pw-123",
        "~*",     "&*",      "+@all", "--user", "reader",   "on",    ">reader-pw-456",
        "~*",     "&*",      "-@all", "+ping",  "+auth",    "+hello"},
       0});
  REQUIRE(server.ok());
  const std::string host = "127.0.0.1:" + std::to_string((*server)->port());
  CaptureSink sink;
  auto ok = RedisCoordinator::connect(
      fast_options("redis://fleetapp:app-pw-123@" + host + "/0", &sink, "acl"));
  REQUIRE(ok.ok());
  CHECK(unwrap((*ok)->counter_add("n", 5)) == 5);

  auto denied = RedisCoordinator::connect(
      fast_options("redis://reader:reader-pw-456@" + host + "/0", &sink, "acl"));
  FLEET_REQUIRE_CODE(denied, kPermissionDenied);
  auto wrong = RedisCoordinator::connect(
      fast_options("redis://fleetapp:nope@" + host + "/0", &sink, "acl"));
  FLEET_REQUIRE_CODE(wrong, kUnauthenticated);
  for (const auto& text :
       {std::string(denied.status().message()), std::string(wrong.status().message())}) {
    CHECK(text.find("app-pw-123") == std::string::npos);
    CHECK(text.find("reader-pw-456") == std::string::npos);
  }
  for (const auto& line : sink.lines()) {
    CHECK(line.find("pw-") == std::string::npos);
  }
}

TEST_CASE("names with spaces, braces and binary keys are stored and found exactly",
          "[redis][names]") {
  RedisServer& server = shared_redis_server();
  auto c = unwrap(
      RedisCoordinator::connect(fast_options(server.url(), quiet_log_sink(), "names")));
  const std::string lock_name = "lock {with} braces and spaces";
  auto lease = unwrap(c->try_lock(lock_name, milliseconds(5000)));
  REQUIRE(lease.has_value());
  CHECK(lease->name == lock_name);
  FLEET_REQUIRE_OK(c->release(*lease));

  const std::string injection = std::string("k\r\n*1\r\n$8\r\nFLUSHALL\r\n\0\xff", 24);
  FLEET_REQUIRE_OK(c->put("map {x} y", injection, injection));
  CHECK(unwrap(c->get("map {x} y", injection))->value == injection);
  FLEET_REQUIRE_OK(c->put("map {x} y", "k", "other"));
  auto all = unwrap(c->scan("map {x} y"));
  REQUIRE(all.size() == 2);
  CHECK(all[0].key == "k");
  CHECK(all[1].key == injection);
  // The key is one hash field under the namespace: nothing else was created.
  CHECK(unwrap(server.command({"HLEN", "fleet:{names}:map:map {x} y"})) == "2");

  Recorder<Message> got;
  auto sub = unwrap(c->subscribe("chan {1} two", got.callback()));
  FLEET_REQUIRE_OK(c->publish("chan {1} two", injection));
  REQUIRE(got.wait_count(1));
  CHECK(got.events()[0].payload == injection);
  FLEET_REQUIRE_OK(c->publish_node_state("node with spaces {eu}", {{"m x", 1.5}}));
  auto agg = unwrap(c->aggregate("node with spaces {eu}", {}));
  REQUIRE(agg.has_value());
  CHECK(agg->metrics.at("m x").value == 1.5);
}

}  // namespace
}  // namespace fleet::testing
