// The fault suite for fleet::relay, in process: three instances on a real
// redis-server, each owning sessions and writing them all the time, while
// Redis is killed and restarted empty, paused longer than the session TTL,
// its pub/sub connections are dropped, or an instance crashes. Afterwards,
// what Redis holds is exactly what the instances believe: each session has
// one owner, a live instance, whose own copy is the stored one; every other
// instance's foreign copy is the stored one too; and no session was lost.
#include <atomic>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "capture_sink.hpp"
#include "catch.hpp"
#include "fast_options.hpp"
#include "fleet/redis_coordinator.hpp"
#include "fleet/relay.hpp"
#include "redis_server.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using relay::Relay;
using std::chrono::milliseconds;

constexpr int kPerInstance = 20;

struct Instance {
  std::string id;
  std::unique_ptr<Coordinator> coordinator;
  std::unique_ptr<Relay> relay;
};

class Cluster {
 public:
  explicit Cluster(const std::string& ns)
      : server_(unwrap(RedisServer::start())), ns_(ns) {}

  void add(const std::string& id) {
    Instance in;
    in.id = id;
    in.coordinator =
        unwrap(RedisCoordinator::connect(fast_options(server_->url(), &log_, ns_)));
    InstanceInfo info;
    info.id = id;
    FLEET_REQUIRE_OK(in.coordinator->join(info));
    relay::RelayOptions o;
    o.check_interval = milliseconds(50);
    o.takeover_grace = milliseconds(300);
    o.log_sink = &log_;
    in.relay = unwrap(Relay::create(*in.coordinator, o));
    for (int i = 0; i < kPerInstance; ++i) {
      REQUIRE(in.relay->create_session(id + "-s" + std::to_string(i), "{\"n\":0}").ok());
    }
    instances_.push_back(std::move(in));
  }

  // Every instance updates its own sessions, round after round.
  void start_writers() {
    running_ = true;
    for (auto& in : instances_) {
      if (!in.relay) continue;
      writers_.emplace_back([this, r = in.relay.get()] {
        int n = 0;
        while (running_) {
          for (const auto& s : r->own()) {
            if (r->update(s.id, "{\"n\":" + std::to_string(++n) + "}").ok()) {
              ++writes_ok_;
            } else {
              ++writes_failed_;
            }
          }
          std::this_thread::sleep_for(milliseconds(5));
        }
      });
    }
  }
  void stop_writers() {
    running_ = false;
    for (auto& t : writers_) t.join();
    writers_.clear();
  }

  // SIGKILL of an instance: gone without leave().
  void crash(const std::string& id) {
    for (auto& in : instances_) {
      if (in.id != id) continue;
      in.relay.reset();
      in.coordinator.reset();
    }
  }

  // What Redis holds: session id -> record.
  std::map<std::string, relay::Session> stored() {
    std::map<std::string, relay::Session> out;
    for (std::size_t b = 0; b < relay::kBuckets; ++b) {
      // Values hold newlines, so not HGETALL (the reply is joined by '\n').
      auto keys = server_->command(
          {"HKEYS", "fleet:{" + ns_ + "}:map:relay/default/s" + std::to_string(b)});
      if (!keys.ok()) return {};
      std::size_t start = 0;
      while (start < keys->size()) {
        std::size_t end = keys->find('\n', start);
        if (end == std::string::npos) end = keys->size();
        const std::string key = keys->substr(start, end - start);
        start = end + 1;
        if (key.empty()) continue;
        auto v = server_->command(
            {"HGET", "fleet:{" + ns_ + "}:map:relay/default/s" + std::to_string(b), key});
        if (!v.ok()) return {};
        auto s = relay::decode_session(key, v->substr(v->find(':') + 1));
        if (s.ok()) out[key] = *s;
      }
    }
    return out;
  }

  // Empty when Redis and every live instance agree; else what differs.
  std::string differences() {
    auto records = stored();
    std::set<std::string> live;
    for (auto& in : instances_) {
      if (in.relay) live.insert(in.id);
    }
    std::string diff;
    if (records.size() != expected_) {
      diff += "stored " + std::to_string(records.size()) + " sessions, expected " +
              std::to_string(expected_) + "; ";
    }
    for (const auto& [id, s] : records) {
      if (live.count(s.owner) == 0) diff += id + " owned by gone " + s.owner + "; ";
    }
    for (auto& in : instances_) {
      if (!in.relay) continue;
      std::map<std::string, relay::Session> own, foreign;
      for (auto& s : in.relay->own()) own[s.id] = s;
      for (auto& s : in.relay->foreign()) foreign[s.id] = s;
      for (const auto& [id, s] : records) {
        auto& mine = s.owner == in.id ? own : foreign;
        auto it = mine.find(id);
        if (it == mine.end()) {
          diff += in.id + " lacks " + id + "; ";
        } else if (it->second.version != s.version || it->second.document != s.document ||
                   it->second.owner != s.owner) {
          diff += in.id + " has a stale " + id + "; ";
        }
        own.erase(id);
        foreign.erase(id);
      }
      for (const auto& [id, s] : own)
        diff += in.id + " believes it owns unstored " + id + "; ";
      for (const auto& [id, s] : foreign) diff += in.id + " keeps unstored " + id + "; ";
    }
    return diff;
  }

  // Waits (bounded) until differences() is empty; returns the last one.
  std::string settle(milliseconds limit = milliseconds(15000)) {
    const auto until = std::chrono::steady_clock::now() + limit;
    std::string d;
    while (std::chrono::steady_clock::now() < until) {
      d = differences();
      if (d.empty()) return d;
      std::this_thread::sleep_for(milliseconds(50));
    }
    return differences();
  }

  RedisServer& server() { return *server_; }
  // The log lines that name one of the sessions `diff` mentions, to say why.
  std::string explain(const std::string& diff) const {
    std::string out;
    for (const auto& line : log_.lines()) {
      for (const auto& in : instances_) {
        const auto at = diff.find(in.id + "-s");
        if (at == std::string::npos) continue;
        const std::string id = diff.substr(at, diff.find(';', at) - at);
        if (line.find(id) != std::string::npos ||
            line.find("[relay] relay") != std::string::npos ||
            line.find("lost its data") != std::string::npos ||
            line.find("connection state") != std::string::npos) {
          out += line + "\n";
          break;
        }
      }
    }
    return out;
  }
  void set_expected(std::size_t n) { expected_ = n; }
  long writes_ok() const { return writes_ok_; }
  long writes_failed() const { return writes_failed_; }
  Instance& instance(std::size_t i) { return instances_[i]; }

 private:
  CaptureSink log_;
  std::unique_ptr<RedisServer> server_;
  std::string ns_;
  std::vector<Instance> instances_;
  std::vector<std::thread> writers_;
  std::atomic<bool> running_{false};
  std::atomic<long> writes_ok_{0}, writes_failed_{0};
  std::size_t expected_ = 3 * kPerInstance;
};

void report(const std::string& name, Cluster& c) {
  std::printf(
      "relay fault '%s': %ld writes ok, %ld failed (errors, never reported as done)\n",
      name.c_str(), c.writes_ok(), c.writes_failed());
}

TEST_CASE("relay: Redis killed and restarted empty, owners re-publish, nothing lost",
          "[fault][relay]") {
  Cluster c("relay-restart");
  for (const char* id : {"a", "b", "c"}) c.add(id);
  REQUIRE(c.settle() == "");
  c.start_writers();
  std::this_thread::sleep_for(milliseconds(300));
  c.server().kill();
  std::this_thread::sleep_for(milliseconds(200));
  REQUIRE(c.server().restart().ok());
  std::this_thread::sleep_for(milliseconds(1500));
  c.stop_writers();
  const std::string diff = c.settle();
  INFO(c.explain(diff));
  CHECK(diff == "");
  report("restart empty", c);
  CHECK(c.writes_failed() > 0);
}

TEST_CASE("relay: Redis paused for longer than the session TTL", "[fault][relay]") {
  Cluster c("relay-pause");
  for (const char* id : {"a", "b", "c"}) c.add(id);
  REQUIRE(c.settle() == "");
  c.start_writers();
  std::this_thread::sleep_for(milliseconds(300));
  c.server().pause();
  std::this_thread::sleep_for(milliseconds(900));  // 3 session TTLs
  c.server().resume();
  std::this_thread::sleep_for(milliseconds(1500));
  c.stop_writers();
  CHECK(c.settle() == "");
  report("paused 3 TTLs", c);
}

TEST_CASE("relay: pub/sub connections dropped while owners write", "[fault][relay]") {
  Cluster c("relay-pubsub");
  for (const char* id : {"a", "b", "c"}) c.add(id);
  REQUIRE(c.settle() == "");
  c.start_writers();
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(milliseconds(200));
    REQUIRE(c.server().command({"CLIENT", "KILL", "TYPE", "pubsub"}).ok());
  }
  std::this_thread::sleep_for(milliseconds(500));
  c.stop_writers();
  CHECK(c.settle() == "");
  report("pub/sub dropped 3 times", c);
}

TEST_CASE("relay: an instance crashes while all write, its sessions move, once each",
          "[fault][relay]") {
  Cluster c("relay-crash");
  for (const char* id : {"a", "b", "c"}) c.add(id);
  REQUIRE(c.settle() == "");
  c.start_writers();
  std::this_thread::sleep_for(milliseconds(300));
  c.stop_writers();  // its writer must not outlive it
  c.crash("a");
  c.start_writers();
  std::this_thread::sleep_for(milliseconds(1000));  // TTL 300 ms + sweep + check
  c.stop_writers();
  CHECK(c.settle() == "");
  std::size_t b = c.instance(1).relay->counts().own,
              cc = c.instance(2).relay->counts().own;
  CHECK(b + cc == 3 * kPerInstance);
  CHECK(b > kPerInstance);
  CHECK(cc > kPerInstance);
  report("instance crashed", c);
}

}  // namespace
}  // namespace fleet::testing
