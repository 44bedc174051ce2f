// fleet::rooms on a real redis-server: placement races between 8 instances,
// broadcasts counted per instance, and the fault suite — Redis restarted
// empty, paused longer than the TTL, pub/sub dropped, an instance killed —
// while members join, leave and broadcast all the time. Afterwards what
// Redis holds is exactly what the instances believe: each instance's
// members are stored under it and nothing else is; every room with members
// sits on a live node; every instance locates every room where Redis says.
#include <atomic>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "capture_sink.hpp"
#include "catch.hpp"
#include "fast_options.hpp"
#include "fleet/redis_coordinator.hpp"
#include "fleet/rooms.hpp"
#include "redis_server.hpp"
#include "slow_callback_case.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using namespace fleet::rooms;
using std::chrono::milliseconds;

constexpr int kRooms = 5;
constexpr int kMembersPerInstance = 8;

struct Instance {
  std::string id;
  std::unique_ptr<Coordinator> coordinator;
  std::unique_ptr<Rooms> rooms;
  std::atomic<long> delivered{0}, gaps{0}, reconnect_gaps{0}, out_of_order{0};
  std::mutex mu;  // on_message runs on the event thread and the sender's
  std::map<std::string, std::uint64_t> last_seq;
};

class Cluster {
 public:
  explicit Cluster(const std::string& ns, RedisServer* shared = nullptr) : ns_(ns) {
    if (shared == nullptr) {
      own_server_ = unwrap(RedisServer::start());
      server_ = own_server_.get();
    } else {
      server_ = shared;
    }
    observer_ =
        unwrap(RedisCoordinator::connect(fast_options(server_->url(), &log_, ns_)));
  }
  ~Cluster() {
    stop_churn();
    for (auto& in : instances_) {
      in->rooms.reset();
      in->coordinator.reset();
    }
  }

  Instance& add(const std::string& id, bool host) {
    auto in = std::make_unique<Instance>();
    in->id = id;
    in->coordinator =
        unwrap(RedisCoordinator::connect(fast_options(server_->url(), &log_, ns_)));
    InstanceInfo info;
    info.id = id;
    FLEET_REQUIRE_OK(in->coordinator->join(info));
    RoomsOptions o;
    if (host) o.host = NodeInfo{id + ":7880", "", 0, NodeState::kServing};
    o.check_interval = milliseconds(50);
    o.takeover_grace = milliseconds(300);
    o.log_sink = &log_;
    Instance* raw = in.get();
    o.on_message = [raw](const Delivery& d) {
      std::lock_guard<std::mutex> lock(raw->mu);
      auto& last = raw->last_seq[d.sender];
      if (d.sequence != last + 1) ++raw->out_of_order;
      last = d.sequence;
      ++raw->delivered;
    };
    o.on_gap = [raw](const Gap& g) {
      ++raw->gaps;
      if (g.sender.empty()) ++raw->reconnect_gaps;
    };
    in->rooms = unwrap(Rooms::create(*in->coordinator, o));
    instances_.push_back(std::move(in));
    return *instances_.back();
  }

  // Members of every instance join and leave rooms and broadcast, all the time.
  void start_churn() {
    running_ = true;
    for (auto& in : instances_) {
      if (!in->rooms) continue;
      threads_.emplace_back([this, r = in->rooms.get(), id = in->id] {
        std::mt19937 rng(std::hash<std::string>{}(id));
        std::map<std::string, std::string> where;  // member -> room
        while (running_) {
          const std::string who = id + "-u" + std::to_string(rng() % kMembersPerInstance);
          auto it = where.find(who);
          if (it != where.end()) {
            if (rng() % 3 == 0) {
              if (r->leave(it->second, who).ok()) where.erase(it);
            } else if (r->broadcast(it->second, "hello", BroadcastOptions{who, {}})
                           .ok()) {
              ++broadcasts_ok_;
            } else {
              ++failures_;
            }
          } else {
            const std::string room = "r" + std::to_string(rng() % kRooms);
            if (r->join(room, who).ok()) {
              where[who] = room;
              ++joins_ok_;
            } else {
              ++failures_;
            }
          }
          std::this_thread::sleep_for(milliseconds(2));
        }
      });
    }
  }
  void stop_churn() {
    running_ = false;
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  void crash(const std::string& id) {
    for (auto& in : instances_) {
      if (in->id != id) continue;
      in->rooms.reset();
      in->coordinator.reset();
    }
  }

  // Empty when Redis and every live instance agree; else what differs.
  std::string differences() {
    std::set<std::string> live;
    for (auto& in : instances_)
      if (in->rooms) live.insert(in->id);
    auto placements = observer_->scan(placement_map("default"));
    if (!placements.ok()) return "cannot read placements";
    std::map<std::string, Placement> placed;
    for (const auto& e : *placements) {
      auto p = decode_placement(e.key, e.entry.value);
      if (p.ok()) placed[e.key] = *p;
    }
    std::string diff;
    std::map<std::string, std::set<std::string>> stored_by_instance;  // "room/identity"
    for (int r = 0; r < kRooms; ++r) {
      const std::string room = "r" + std::to_string(r);
      auto entries = observer_->scan(room_map("default", room), "p\n");
      if (!entries.ok()) return "cannot read room " + room;
      for (const auto& e : *entries) {
        auto p = decode_participant(e.key, e.entry.value);
        if (!p.ok()) continue;
        stored_by_instance[p->instance].insert(room + "/" + p->identity);
        if (live.count(p->instance) == 0) {
          diff += room + "/" + p->identity + " stored under gone " + p->instance + "; ";
        }
      }
      const bool has_members = !entries->empty();
      auto it = placed.find(room);
      if (has_members && it == placed.end()) diff += room + " has members, no node; ";
      if (it != placed.end() && live.count(it->second.node) == 0) {
        diff += room + " on gone node " + it->second.node + "; ";
      }
      for (auto& in : instances_) {
        if (!in->rooms) continue;
        auto where = in->rooms->locate(room);
        if (!where.ok()) return in->id + " cannot locate";
        const std::string got = where->has_value() ? (*where)->node : "-";
        const std::string want = it != placed.end() ? it->second.node : "-";
        if (got != want)
          diff += in->id + " locates " + room + " on " + got + " not " + want + "; ";
      }
    }
    for (auto& in : instances_) {
      if (!in->rooms) continue;
      std::set<std::string> believed;
      for (int r = 0; r < kRooms; ++r) {
        const std::string room = "r" + std::to_string(r);
        for (const auto& id : in->rooms->local_members(room))
          believed.insert(room + "/" + id);
      }
      if (believed != stored_by_instance[in->id]) {
        diff += in->id + " believes " + std::to_string(believed.size()) + " members, " +
                std::to_string(stored_by_instance[in->id].size()) + " stored; ";
      }
      auto index = observer_->scan("rooms/default/at/" + in->id);
      if (index.ok() && index->size() != believed.size()) {
        diff += in->id + " index holds " + std::to_string(index->size()) + "; ";
      }
    }
    return diff;
  }

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

  void report(const std::string& name) {
    std::printf("rooms fault '%s': %ld joins ok, %ld broadcasts ok, %ld calls failed\n",
                name.c_str(), joins_ok_.load(), broadcasts_ok_.load(), failures_.load());
  }

  RedisServer& server() { return *server_; }
  Instance& instance(std::size_t i) { return *instances_[i]; }
  CaptureSink& log() { return log_; }
  long failures() const { return failures_; }

 private:
  CaptureSink log_;
  std::unique_ptr<RedisServer> own_server_;
  RedisServer* server_;
  std::string ns_;
  std::unique_ptr<Coordinator> observer_;
  std::vector<std::unique_ptr<Instance>> instances_;
  std::vector<std::thread> threads_;
  std::atomic<bool> running_{false};
  std::atomic<long> joins_ok_{0}, broadcasts_ok_{0}, failures_{0};
};

std::string unique_ns(const std::string& name) {
  static int n = 0;
  return "rooms-" + name + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

TEST_CASE("8 instances on Redis assign the same 1000 rooms at once: one node each",
          "[rooms]") {
  Cluster c(unique_ns("race"), &shared_redis_server());
  std::vector<Instance*> all;
  for (int i = 0; i < 4; ++i) all.push_back(&c.add("node" + std::to_string(i), true));
  for (int i = 0; i < 4; ++i) all.push_back(&c.add("edge" + std::to_string(i), false));
  std::vector<std::map<int, std::string>> got(all.size());
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < all.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        const int r = static_cast<int>((i + t * 125) % 1000);
        auto p = all[t]->rooms->assign("room-" + std::to_string(r));
        if (p.ok()) {
          got[t][r] = p->node;
        } else {
          ++errors;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(errors == 0);
  std::map<std::string, int> per_node;
  for (int r = 0; r < 1000; ++r) {
    for (std::size_t t = 1; t < all.size(); ++t) REQUIRE(got[t][r] == got[0][r]);
    ++per_node[got[0][r]];
  }
  CHECK(per_node.size() == 4);
  // Every instance locates every room on that node (cache or not).
  for (auto* in : all) {
    for (int r = 0; r < 1000; r += 7) {
      auto p = unwrap(in->rooms->locate("room-" + std::to_string(r)));
      REQUIRE(p.has_value());
      CHECK(p->node == got[0][r]);
      CHECK(p->generation == 1u);
    }
  }
}

TEST_CASE(
    "on Redis, a rooms callback that blocks holds up no lock grant, membership "
    "event or router decision on its Coordinator",
    "[rooms][threads]") {
  RedisServer& redis = shared_redis_server();
  const std::string ns = unique_ns("slow");
  CaptureSink log;
  auto joined = [&](const std::string& id) {
    auto c = unwrap(RedisCoordinator::connect(fast_options(redis.url(), &log, ns)));
    InstanceInfo info;
    info.id = id;
    FLEET_REQUIRE_OK(c->join(info));
    return c;
  };
  auto a = joined("a");
  auto b = joined("b");
  slow_callback_holds_nothing_up(
      *a, *b, [&] { return joined("d"); }, &log);
}

TEST_CASE("broadcasts on Redis reach only instances with members, in order, none lost",
          "[rooms]") {
  Cluster c(unique_ns("bc"), &shared_redis_server());
  auto& a = c.add("a", true);
  auto& b = c.add("b", false);
  auto& d = c.add("d", false);
  auto& idle = c.add("idle", false);
  for (int i = 0; i < 50; ++i) {
    unwrap(a.rooms->join("big", "a" + std::to_string(i)));
    unwrap(b.rooms->join("big", "b" + std::to_string(i)));
    unwrap(d.rooms->join("big", "d" + std::to_string(i)));
  }
  unwrap(idle.rooms->join("other", "x"));
  constexpr int kEach = 500;
  std::vector<std::thread> senders;
  std::atomic<int> failed{0};  // Catch's assertions are not for other threads
  for (auto* in : {&a, &b, &d}) {
    senders.emplace_back([in, &failed] {
      for (int i = 0; i < kEach; ++i)
        failed += in->rooms->broadcast("big", "m").ok() ? 0 : 1;
    });
  }
  for (auto& t : senders) t.join();
  REQUIRE(failed == 0);
  for (auto* in : {&a, &b, &d}) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (in->delivered < 3 * kEach && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(5));
    }
    CHECK(in->delivered == 3 * kEach);
    CHECK(in->rooms->stats().broadcasts_received == 2u * kEach);
    CHECK(in->gaps == 0);
    CHECK(in->out_of_order == 0);  // 1, 2, 3, ... from each sender
  }
  CHECK(idle.rooms->stats().broadcasts_received == 0);
  CHECK(idle.delivered == 0);
}

TEST_CASE("rooms: Redis killed and restarted empty, everything re-published",
          "[fault][rooms]") {
  Cluster c(unique_ns("restart"));
  c.add("a", true);
  c.add("b", true);
  c.add("c", false);
  c.start_churn();
  std::this_thread::sleep_for(milliseconds(400));
  c.server().kill();
  std::this_thread::sleep_for(milliseconds(200));
  REQUIRE(c.server().restart().ok());
  std::this_thread::sleep_for(milliseconds(1500));
  c.stop_churn();
  const std::string diff = c.settle();
  CHECK(diff == "");
  CHECK(c.failures() > 0);
  CHECK(c.log().contains("lost its data: re-published"));
  c.report("restart empty");
}

TEST_CASE("rooms: Redis paused for longer than the session TTL", "[fault][rooms]") {
  Cluster c(unique_ns("pause"));
  c.add("a", true);
  c.add("b", true);
  c.add("c", false);
  c.start_churn();
  std::this_thread::sleep_for(milliseconds(300));
  c.server().pause();
  std::this_thread::sleep_for(milliseconds(900));  // 3 TTLs
  c.server().resume();
  std::this_thread::sleep_for(milliseconds(1500));
  c.stop_churn();
  CHECK(c.settle() == "");
  c.report("paused 3 TTLs");
}

TEST_CASE("rooms: Redis paused for less than the TTL", "[fault][rooms]") {
  Cluster c(unique_ns("blip"));
  c.add("a", true);
  c.add("b", false);
  c.start_churn();
  std::this_thread::sleep_for(milliseconds(300));
  c.server().pause();
  std::this_thread::sleep_for(milliseconds(150));
  c.server().resume();
  std::this_thread::sleep_for(milliseconds(500));
  c.stop_churn();
  CHECK(c.settle() == "");
  c.report("paused half a TTL");
}

TEST_CASE("rooms: pub/sub dropped: caches dropped, rooms that may have missed reported",
          "[fault][rooms]") {
  Cluster c(unique_ns("pubsub"));
  auto& a = c.add("a", true);
  auto& b = c.add("b", false);
  c.start_churn();
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(milliseconds(200));
    REQUIRE(c.server().command({"CLIENT", "KILL", "TYPE", "pubsub"}).ok());
  }
  std::this_thread::sleep_for(milliseconds(500));
  c.stop_churn();
  CHECK(c.settle() == "");
  for (auto* in : {&a, &b}) {
    CHECK(in->rooms->stats().cache_drops >= 1);
    CHECK(in->reconnect_gaps >= 1);
  }
  c.report("pub/sub dropped 3 times");
}

TEST_CASE("rooms: an instance killed mid-churn: its members leave, its rooms move once",
          "[fault][rooms]") {
  Cluster c(unique_ns("crash"));
  c.add("a", true);
  c.add("b", true);
  c.add("c", false);
  c.start_churn();
  std::this_thread::sleep_for(milliseconds(400));
  c.stop_churn();
  c.crash("a");
  c.start_churn();
  std::this_thread::sleep_for(milliseconds(1200));  // TTL 300 ms + sweep + check
  c.stop_churn();
  CHECK(c.settle() == "");
  CHECK(c.log().contains("instance 'a' is gone"));
  c.report("instance killed");
}

}  // namespace
}  // namespace fleet::testing
