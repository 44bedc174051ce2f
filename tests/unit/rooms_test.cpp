// fleet::rooms on the in-process backend with a manual clock: placement
// races, a node dying, the locate cache, room state, broadcasts with gaps,
// requests with a silent instance, data loss, bad input.
#include <atomic>
#include <deque>
#include <future>
#include <thread>

#include "capture_sink.hpp"
#include "fleet/local_coordinator.hpp"
#include "fleet/rooms.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;
using namespace fleet::rooms;

constexpr milliseconds kTtl{300};

template <typename F>
bool eventually(F f) {
  for (int i = 0; i < 3000; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return f();
}

struct Seen {
  std::mutex mu;
  std::vector<RoomEvent> room_events;
  std::vector<Delivery> deliveries;
  std::vector<Gap> gaps;
  std::vector<ParticipantEvent> participants;
  std::vector<std::string> disconnects;

  std::size_t count(RoomEventType t, const std::string& cause = {}) {
    std::lock_guard<std::mutex> lock(mu);
    std::size_t n = 0;
    for (const auto& e : room_events)
      n += e.type == t && (cause.empty() || e.cause == cause);
    return n;
  }
  std::size_t delivered() {
    std::lock_guard<std::mutex> lock(mu);
    return deliveries.size();
  }
};

struct Instance {
  std::string id;
  std::unique_ptr<Coordinator> coordinator;
  std::unique_ptr<Rooms> rooms;
  std::shared_ptr<Seen> seen = std::make_shared<Seen>();
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

  Instance& add(const std::string& id, std::optional<NodeInfo> host,
                RoomsOptions options = {}) {
    Instance in;
    in.id = id;
    in.coordinator = LocalCoordinator::connect(store_).value();
    InstanceInfo info;
    info.id = id;
    FLEET_REQUIRE_OK(in.coordinator->join(info));
    options.host = std::move(host);
    options.background = false;
    options.log_sink = &log_;
    options.takeover_grace = milliseconds(1000);
    auto seen = in.seen;
    options.on_room_event = [seen](const RoomEvent& e) {
      std::lock_guard<std::mutex> lock(seen->mu);
      seen->room_events.push_back(e);
    };
    options.on_message = [seen](const Delivery& d) {
      std::lock_guard<std::mutex> lock(seen->mu);
      seen->deliveries.push_back(d);
    };
    options.on_gap = [seen](const Gap& g) {
      std::lock_guard<std::mutex> lock(seen->mu);
      seen->gaps.push_back(g);
    };
    options.on_participant = [seen](const ParticipantEvent& e) {
      std::lock_guard<std::mutex> lock(seen->mu);
      seen->participants.push_back(e);
    };
    options.on_disconnect = [seen](std::string_view identity) -> std::size_t {
      std::lock_guard<std::mutex> lock(seen->mu);
      seen->disconnects.emplace_back(identity);
      return 1;
    };
    in.rooms = unwrap(Rooms::create(*in.coordinator, options));
    instances_.push_back(std::move(in));
    return instances_.back();
  }

  Instance& add_node(const std::string& id, std::int64_t max_rooms = 0,
                     std::string region = {}) {
    NodeInfo n;
    n.address = id + ".example:7880";
    n.max_rooms = max_rooms;
    n.region = std::move(region);
    return add(id, n);
  }

  void kill(Instance& in) {
    in.rooms.reset();
    in.coordinator.reset();
  }

  void expire() {
    clock_.advance(kTtl * 2);
    for (auto& in : instances_) {
      if (in.coordinator) (void)in.coordinator->members();
    }
  }

  // Every instance's check, with the store's events delivered before and
  // after (what one instance changed is then in every other's views).
  void run_all() {
    store_->drain_events();
    for (auto& in : instances_) {
      if (in.rooms) FLEET_REQUIRE_OK(in.rooms->run_once());
    }
    store_->drain_events();
  }

  // Runs `call` — a request that waits for its timeout on the manual clock
  // — while moving the clock on in small steps.
  template <typename F>
  auto advancing(F call) {
    auto result = std::async(std::launch::async, call);
    while (result.wait_for(milliseconds(5)) != std::future_status::ready) {
      clock_.advance(milliseconds(20));
    }
    return result.get();
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

std::string room_name(int i) { return "room-" + std::to_string(i); }

TEST_CASE("8 instances assigning the same 1000 rooms at once agree on one node each",
          "[rooms]") {
  Fleet f;
  std::vector<Instance*> all;
  for (int i = 0; i < 4; ++i) all.push_back(&f.add_node("node" + std::to_string(i)));
  for (int i = 0; i < 4; ++i) all.push_back(&f.add("edge" + std::to_string(i), {}));
  // Every instance knows the 4 nodes before the race: those live when it
  // started (read then, not only at its first check: found by this test
  // under load) and the later ones from the change stream.
  for (auto* in : all) {
    const bool four = eventually([&] { return in->rooms->nodes().size() == 4; });
    if (!four) {
      std::string seen;
      for (const auto& n : in->rooms->nodes()) seen += n.id + " ";
      FAIL_CHECK(in->id << " sees " << seen);
    }
  }
  std::vector<std::map<std::string, std::string>> got(all.size());
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (std::size_t t = 0; t < all.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        // Each instance walks the rooms from another starting point.
        const int r = static_cast<int>((i + t * 125) % 1000);
        auto p = all[t]->rooms->assign(room_name(r));
        if (!p.ok()) {
          ++errors;
          continue;
        }
        got[t][room_name(r)] = p->node;
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(errors == 0);
  std::map<std::string, int> per_node;
  for (int i = 0; i < 1000; ++i) {
    const std::string& node = got[0][room_name(i)];
    for (std::size_t t = 1; t < all.size(); ++t) REQUIRE(got[t][room_name(i)] == node);
    for (auto* in : all) {
      auto located = unwrap(in->rooms->locate(room_name(i)));
      REQUIRE(located.has_value());
      REQUIRE(located->node == node);
      REQUIRE(located->generation == 1u);
    }
    ++per_node[node];
  }
  CHECK(per_node.size() == 4);  // the load spread over every node
  for (const auto& [node, n] : per_node) CHECK(n > 100);
  // Every room was claimed once: 1000 kAssigned events reach each instance.
  for (auto* in : all) {
    REQUIRE(
        eventually([&] { return in->seen->count(RoomEventType::kAssigned) == 1000; }));
  }
}

TEST_CASE("a dead node's rooms are moved once each, everyone hears it, none stay",
          "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add_node("b");
  auto& c = f.add_node("c");
  auto& edge = f.add("edge", {});
  // 30 rooms on a, each with a participant connected to the edge.
  std::vector<std::string> on_a;
  std::size_t joined = 0;
  for (int i = 0; on_a.size() < 30; ++i, ++joined) {
    auto p = unwrap(edge.rooms->join(room_name(i), "user" + std::to_string(i)));
    if (p.node == "a") on_a.push_back(room_name(i));
  }
  // And one empty-but-placed room on a... that only a's member kept alive.
  auto mine = unwrap(a.rooms->join("only-a", "alice"));
  f.kill(a);
  f.expire();
  f.run_all();
  // Exactly one survivor moved each room (generation 2, from a).
  std::size_t moved = 0;
  for (auto* in : {&b, &c, &edge}) moved += in->rooms->stats().rooms_moved_here;
  CHECK(moved == on_a.size());
  for (const auto& room : on_a) {
    auto st = unwrap(edge.rooms->state(room));
    REQUIRE(st.placement.has_value());
    CHECK(st.placement->node != "a");
    CHECK(st.placement->generation == 2u);
    CHECK(st.placement->previous_node == "a");
    CHECK(st.placement->cause == "node-died");
    REQUIRE(st.participants.size() == 1);
    CHECK(st.participants[0].instance == "edge");
  }
  // a's own member left with it, and its room, now empty, was released.
  REQUIRE(eventually([&] { return !unwrap(b.rooms->locate("only-a")).has_value(); }));
  CHECK(unwrap(b.rooms->state("only-a")).participants.empty());
  CHECK(mine.node != "");
  for (auto* in : {&b, &c, &edge}) {
    REQUIRE(eventually([&] {
      return in->seen->count(RoomEventType::kMoved, "node-died") == on_a.size();
    }));
  }
  // Every room with a member is on b or c now.
  REQUIRE(eventually(
      [&] { return b.rooms->hosted().size() + c.rooms->hosted().size() == joined; }));
  // a's record is gone: it is no longer a node anyone sees.
  for (const auto& n : edge.rooms->nodes()) CHECK(n.id != "a");
  f.run_all();  // a second check changes nothing
  moved = 0;
  for (auto* in : {&b, &c, &edge}) moved += in->rooms->stats().rooms_moved_here;
  CHECK(moved == on_a.size());
  CHECK(f.log().contains("room moved: room="));
}

TEST_CASE("the chosen survivor moves the rooms, the others wait out the grace",
          "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add_node("b");
  auto& c = f.add_node("c");
  FLEET_REQUIRE_OK(b.rooms->set_node_state(NodeState::kDraining));
  FLEET_REQUIRE_OK(c.rooms->set_node_state(NodeState::kDraining));
  // a sees b and c, both draining (not merely not yet).
  REQUIRE(eventually([&] {
    int draining = 0;
    for (const auto& n : a.rooms->nodes())
      draining += n.id != "a" && n.info.state == NodeState::kDraining;
    return draining == 2;
  }));
  for (int i = 0; i < 5; ++i) CHECK(unwrap(a.rooms->join(room_name(i), "u")).node == "a");
  FLEET_REQUIRE_OK(b.rooms->set_node_state(NodeState::kServing));
  FLEET_REQUIRE_OK(c.rooms->set_node_state(NodeState::kServing));
  // A fourth instance keeps members in the rooms so they are moved, not released.
  auto& edge = f.add("edge", {});
  for (int i = 0; i < 5; ++i) unwrap(edge.rooms->join(room_name(i), "v"));
  f.kill(a);
  f.expire();
  // Only one of the three survivors is the chosen one: run each once.
  std::size_t moved = 0;
  for (auto* in : {&b, &c, &edge}) {
    FLEET_REQUIRE_OK(in->rooms->run_once());
    moved += in->rooms->stats().rooms_moved_here;
  }
  CHECK(moved == 5);
  std::size_t movers = 0;
  for (auto* in : {&b, &c, &edge}) movers += in->rooms->stats().rooms_moved_here > 0;
  CHECK(movers == 1);
}

TEST_CASE("a room stays on its live node, draining and full nodes get no new rooms",
          "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a", 2);
  auto& b = f.add_node("b");
  FLEET_REQUIRE_OK(b.rooms->set_node_state(NodeState::kDraining));
  REQUIRE(eventually([&] {
    for (const auto& n : a.rooms->nodes())
      if (n.id == "b") return n.info.state == NodeState::kDraining;
    return false;
  }));
  CHECK(unwrap(a.rooms->assign("r1")).node == "a");
  CHECK(unwrap(b.rooms->assign("r2")).node == "a");
  REQUIRE(eventually([&] { return a.rooms->hosted().size() == 2; }));
  f.run_all();  // a publishes its count
  REQUIRE(eventually([&] {
    for (const auto& n : b.rooms->nodes())
      if (n.id == "a") return n.stats.rooms == 2;
    return false;
  }));
  // a is full (max_rooms 2) and b draining: no node for a third room.
  auto none = b.rooms->assign("r3");
  FLEET_REQUIRE_CODE(none, kResourceExhausted);
  CHECK(std::string(none.status().message()).find("at max_rooms") != std::string::npos);
  // A room on a draining node stays there until migrated.
  FLEET_REQUIRE_OK(b.rooms->set_node_state(NodeState::kServing));
  REQUIRE(eventually([&] {
    for (const auto& n : a.rooms->nodes())
      if (n.id == "b") return n.info.state == NodeState::kServing;
    return false;
  }));
  CHECK(unwrap(a.rooms->assign("r3")).node == "b");
  FLEET_REQUIRE_OK(b.rooms->set_node_state(NodeState::kDraining));
  CHECK(unwrap(a.rooms->assign("r3")).node == "b");
  CHECK(unwrap(a.rooms->assign("r1")).node == "a");
  // Migrating a's rooms: b is draining, so there is nowhere to go (for now).
  REQUIRE(eventually([&] {
    for (const auto& n : a.rooms->nodes())
      if (n.id == "b") return n.info.state == NodeState::kDraining;
    return false;
  }));
  FLEET_REQUIRE_CODE(a.rooms->migrate("r1"), kUnavailable);
  FLEET_REQUIRE_OK(b.rooms->set_node_state(NodeState::kServing));
  REQUIRE(eventually([&] {
    for (const auto& n : a.rooms->nodes())
      if (n.id == "b") return n.info.state == NodeState::kServing;
    return false;
  }));
  CHECK(unwrap(a.rooms->migrate_all()) == 2);
  REQUIRE(eventually([&] { return a.rooms->hosted().empty(); }));
  auto r1 = unwrap(b.rooms->locate("r1"));
  REQUIRE(r1.has_value());
  CHECK(r1->node == "b");
  CHECK(r1->cause == "migrated");
  CHECK(r1->generation == 2u);
  FLEET_REQUIRE_CODE(a.rooms->migrate("nowhere"), kNotFound);
  FLEET_REQUIRE_CODE(a.rooms->migrate("r1", "ghost"), kFailedPrecondition);
}

TEST_CASE("nodes of this instance's region are preferred", "[rooms]") {
  Fleet f;
  f.add_node("eu1", 0, "eu");
  f.add_node("us1", 0, "us");
  RoomsOptions o;
  o.region = "us";
  auto& edge = f.add("edge", {}, o);
  for (int i = 0; i < 20; ++i)
    CHECK(unwrap(edge.rooms->assign(room_name(i))).node == "us1");
  CHECK(f.log().contains("in region 'us'"));
}

TEST_CASE("locate answers from the cache, never the old node after the invalidation",
          "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add_node("b");
  auto& edge = f.add("edge", {});
  auto p = unwrap(a.rooms->assign("r"));
  auto first = unwrap(edge.rooms->locate("r"));
  REQUIRE(first.has_value());
  CHECK(first->node == p.node);
  const auto misses = edge.rooms->stats().locate_misses;
  for (int i = 0; i < 100; ++i) CHECK(unwrap(edge.rooms->locate("r"))->node == p.node);
  CHECK(edge.rooms->stats().locate_misses == misses);
  CHECK(edge.rooms->stats().locate_hits >= 100);
  const std::string other = p.node == "a" ? "b" : "a";
  auto m = unwrap(a.rooms->migrate("r", other));
  CHECK(m.node == other);
  // Once the move's event arrived, every locate says the new node.
  REQUIRE(eventually([&] { return edge.seen->count(RoomEventType::kMoved) == 1; }));
  for (int i = 0; i < 100; ++i) CHECK(unwrap(edge.rooms->locate("r"))->node == other);
  (void)b;

  // A cut-off session may have missed invalidations: its cache goes.
  FLEET_REQUIRE_OK(f.store().set_reachable(edge.coordinator->session_id(), false));
  REQUIRE(eventually([&] {
    return edge.coordinator->connection_state() == ConnectionState::kSuspended;
  }));
  FLEET_REQUIRE_OK(a.rooms->migrate("r", p.node));  // missed by the edge
  FLEET_REQUIRE_OK(f.store().set_reachable(edge.coordinator->session_id(), true));
  REQUIRE(eventually([&] {
    return edge.coordinator->connection_state() == ConnectionState::kReconnected;
  }));
  REQUIRE(eventually([&] { return edge.rooms->stats().cache_drops >= 1; }));
  const auto misses2 = edge.rooms->stats().locate_misses;
  CHECK(unwrap(edge.rooms->locate("r"))->node == p.node);
  CHECK(edge.rooms->stats().locate_misses == misses2 + 1);
  CHECK_FALSE(unwrap(edge.rooms->locate("never-assigned")).has_value());
}

TEST_CASE("room state: participants with their instance, metadata, flags, cleanup",
          "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add("b", {});
  unwrap(a.rooms->join("r", "alice", "{\"name\":\"Alice\"}"));
  unwrap(b.rooms->join("r", "bob"));
  FLEET_REQUIRE_OK(b.rooms->set_metadata("r", "standup"));
  FLEET_REQUIRE_OK(a.rooms->set_flag("r", "screen_share", "on"));
  auto st = unwrap(b.rooms->state("r"));
  REQUIRE(st.participants.size() == 2);
  CHECK(st.participants[0].identity == "alice");
  CHECK(st.participants[0].instance == "a");
  CHECK(st.participants[0].metadata == "{\"name\":\"Alice\"}");
  CHECK(st.participants[1].identity == "bob");
  CHECK(st.participants[1].instance == "b");
  CHECK(st.metadata == "standup");
  CHECK(st.flags.at("screen_share") == "on");
  REQUIRE(st.placement.has_value());
  CHECK(st.placement->node == "a");
  // a hears bob join (its member shares the room).
  REQUIRE(eventually([&] {
    std::lock_guard<std::mutex> lock(a.seen->mu);
    for (const auto& e : a.seen->participants)
      if (e.type == ParticipantEventType::kJoined && e.participant.identity == "bob" &&
          e.participant.instance == "b")
        return true;
    return false;
  }));
  FLEET_REQUIRE_CODE(b.rooms->leave("r", "alice"), kNotFound);  // not b's member
  FLEET_REQUIRE_CODE(a.rooms->release("r"), kFailedPrecondition);
  FLEET_REQUIRE_OK(b.rooms->leave("r", "bob"));
  CHECK(unwrap(a.rooms->locate("r")).has_value());
  FLEET_REQUIRE_OK(a.rooms->leave("r", "alice"));
  // The last one out releases the room: placement and state are gone.
  auto empty = unwrap(b.rooms->state("r"));
  CHECK_FALSE(empty.placement.has_value());
  CHECK(empty.participants.empty());
  CHECK(empty.metadata.empty());
  CHECK(empty.flags.empty());
  REQUIRE(eventually([&] { return b.seen->count(RoomEventType::kReleased) == 1; }));
}

TEST_CASE("broadcasts reach members on every instance in order, and only those instances",
          "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add("b", {});
  auto& c = f.add("c", {});
  auto& idle = f.add("idle", {});
  for (int i = 0; i < 20; ++i) {
    unwrap(a.rooms->join("r", "a" + std::to_string(i)));
    unwrap(b.rooms->join("r", "b" + std::to_string(i)));
    unwrap(c.rooms->join("r", "c" + std::to_string(i)));
  }
  unwrap(idle.rooms->join("elsewhere", "x"));
  constexpr int kPerSender = 300;
  std::vector<std::thread> senders;
  std::atomic<int> failed{0};  // Catch's assertions are not for other threads
  for (auto* in : {&a, &b, &c}) {
    senders.emplace_back([in, &failed] {
      for (int i = 1; i <= kPerSender; ++i) {
        if (!in->rooms
                 ->broadcast("r", in->id + ":" + std::to_string(i),
                             BroadcastOptions{in->id + "0", {in->id + "1"}})
                 .ok()) {
          ++failed;
        }
      }
    });
  }
  for (auto& t : senders) t.join();
  REQUIRE(failed == 0);
  for (auto* in : {&a, &b, &c}) {
    REQUIRE(eventually([&] { return in->seen->delivered() == 3 * kPerSender; }));
    std::lock_guard<std::mutex> lock(in->seen->mu);
    std::map<std::string, int> last;
    for (const auto& d : in->seen->deliveries) {
      const std::string sender = d.payload.substr(0, d.payload.find(':'));
      const int n = std::stoi(d.payload.substr(d.payload.find(':') + 1));
      CHECK(n == last[sender] + 1);  // per-sender order, nothing lost
      last[sender] = n;
      CHECK(d.sender == sender);
      CHECK(d.from == sender + "0");
      CHECK(d.sequence == static_cast<std::uint64_t>(n));
      // The except-list: the sender's "<id>1" gets nothing.
      CHECK(d.recipients.size() == (in->id == sender ? 19u : 20u));
      CHECK(std::find(d.recipients.begin(), d.recipients.end(), sender + "1") ==
            d.recipients.end());
    }
    CHECK(in->seen->gaps.empty());
    CHECK(in->rooms->stats().broadcasts_received == 2u * kPerSender);
  }
  // No member of "r" on idle: the payloads never reached it.
  CHECK(idle.rooms->stats().broadcasts_received == 0);
  CHECK(idle.seen->delivered() == 0);
}

TEST_CASE("a receiver reports gaps, and after a reconnect the rooms that may have missed",
          "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add("b", {});
  unwrap(a.rooms->join("r", "alice"));
  unwrap(b.rooms->join("r", "bob"));
  FLEET_REQUIRE_OK(a.rooms->broadcast("r", "1"));
  REQUIRE(eventually([&] { return b.seen->delivered() == 1; }));
  // b is cut off while a sends two more; then it hears the fourth.
  FLEET_REQUIRE_OK(f.store().set_reachable(b.coordinator->session_id(), false));
  FLEET_REQUIRE_OK(a.rooms->broadcast("r", "2"));
  FLEET_REQUIRE_OK(a.rooms->broadcast("r", "3"));
  FLEET_REQUIRE_OK(f.store().set_reachable(b.coordinator->session_id(), true));
  REQUIRE(eventually([&] {
    std::lock_guard<std::mutex> lock(b.seen->mu);
    return !b.seen->gaps.empty();
  }));
  {
    std::lock_guard<std::mutex> lock(b.seen->mu);
    CHECK(b.seen->gaps[0].room == "r");
    CHECK(b.seen->gaps[0].sender.empty());
    CHECK(b.seen->gaps[0].reason.find("interrupted") != std::string::npos);
  }
  FLEET_REQUIRE_OK(a.rooms->broadcast("r", "4"));
  REQUIRE(eventually([&] { return b.seen->delivered() == 2; }));
  {
    std::lock_guard<std::mutex> lock(b.seen->mu);
    CHECK(b.seen->deliveries[1].payload == "4");
    CHECK(b.seen->deliveries[1].sequence == 4u);
  }
}

TEST_CASE(
    "cut off from the backend, a sender's own instance still delivers, the others "
    "are told exactly what they missed",
    "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add("b", {});
  unwrap(a.rooms->join("r", "alice"));
  unwrap(a.rooms->join("r", "anna"));
  unwrap(b.rooms->join("r", "bob"));
  const BroadcastOptions from_alice{"alice", {}};
  FLEET_REQUIRE_OK(a.rooms->broadcast("r", "1", from_alice));
  REQUIRE(
      eventually([&] { return a.seen->delivered() == 1 && b.seen->delivered() == 1; }));

  FLEET_REQUIRE_OK(f.store().set_reachable(a.coordinator->session_id(), false));
  for (const char* text : {"2", "3", "4"}) {
    const absl::Status st = a.rooms->broadcast("r", text, from_alice);
    FLEET_REQUIRE_CODE(st, kUnavailable);
    CHECK(std::string(st.message()).find("reached this instance's members only") !=
          std::string::npos);
    CHECK(reached_local_members_only(st));
  }
  CHECK_FALSE(reached_local_members_only(absl::UnavailableError("down")));
  CHECK_FALSE(reached_local_members_only(absl::OkStatus()));
  REQUIRE(eventually([&] { return a.seen->delivered() == 4; }));
  CHECK(a.rooms->stats().broadcasts_local_only == 3u);
  FLEET_REQUIRE_OK(f.store().set_reachable(a.coordinator->session_id(), true));
  FLEET_REQUIRE_OK(a.rooms->broadcast("r", "5", from_alice));
  REQUIRE(
      eventually([&] { return a.seen->delivered() == 5 && b.seen->delivered() == 2; }));
  {
    // alice and anna: every message, in order, through the outage.
    std::lock_guard<std::mutex> lock(a.seen->mu);
    for (std::size_t i = 0; i < 5; ++i) {
      CHECK(a.seen->deliveries[i].payload == std::to_string(i + 1));
      CHECK(a.seen->deliveries[i].sequence == i + 1);
      CHECK(a.seen->deliveries[i].recipients ==
            std::vector<std::string>{"alice", "anna"});
    }
  }
  std::lock_guard<std::mutex> lock(b.seen->mu);
  CHECK(b.seen->deliveries[0].payload == "1");
  CHECK(b.seen->deliveries[1].payload == "5");
  // bob is told he missed exactly 3 of a's broadcasts.
  REQUIRE(b.seen->gaps.size() == 1);
  CHECK(b.seen->gaps[0].sender == "a");
  CHECK(b.seen->gaps[0].missed == 3u);
  CHECK(b.seen->gaps[0].reason == "sequence jumped from 1 to 5");
}

TEST_CASE("a sequence gap from one sender is reported with its size", "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add("b", {});
  unwrap(a.rooms->join("r", "alice"));
  unwrap(b.rooms->join("r", "bob"));
  // Publish raw envelopes on the room's channel as a sender "ghost" would.
  FLEET_REQUIRE_OK(
      a.coordinator->publish("rooms/default/bc/r", "rb1\nghost\n7\n1\n\n\nx"));
  FLEET_REQUIRE_OK(
      a.coordinator->publish("rooms/default/bc/r", "rb1\nghost\n7\n4\n\n\ny"));
  FLEET_REQUIRE_OK(a.coordinator->publish("rooms/default/bc/r", "garbage"));
  REQUIRE(eventually([&] { return b.seen->delivered() == 2; }));
  std::lock_guard<std::mutex> lock(b.seen->mu);
  REQUIRE(b.seen->gaps.size() == 1);
  CHECK(b.seen->gaps[0].sender == "ghost");
  CHECK(b.seen->gaps[0].missed == 2u);
  CHECK(b.rooms->stats().gaps == 1u);
  CHECK(f.log().contains("skipping a malformed broadcast"));
}

TEST_CASE("requests count live instances, a silent one gives a partial DeadlineExceeded",
          "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add("b", {});
  auto& c = f.add("c", {});
  unwrap(a.rooms->join("r", "alice"));
  unwrap(b.rooms->join("r", "bob", "m"));
  unwrap(c.rooms->join("r", "carol"));
  // a asks the instances whose Rooms record it has seen (from the change
  // stream: under load, b's and c's may come a moment later).
  std::vector<Participant> all;
  REQUIRE(eventually([&] {
    all = unwrap(a.rooms->participants_everywhere("r", milliseconds(2000)));
    return all.size() == 3;
  }));
  CHECK(all[0].identity == "alice");
  CHECK(all[1].identity == "bob");
  CHECK(all[1].instance == "b");
  CHECK(all[1].metadata == "m");
  CHECK(all[2].instance == "c");
  CHECK(unwrap(b.rooms->disconnect_everywhere("bob", milliseconds(2000))) == 3);
  // c stops answering (cut off, still a live member until its TTL).
  FLEET_REQUIRE_OK(f.store().set_reachable(c.coordinator->session_id(), false));
  RequestResult r;
  // The timeout is on the Coordinator's (manual) clock.
  auto partial = f.advancing(
      [&] { return a.rooms->participants_everywhere("r", milliseconds(2000), &r); });
  FLEET_REQUIRE_CODE(partial, kDeadlineExceeded);
  REQUIRE(r.missing == std::vector<std::string>{"c"});
  REQUIRE(r.replies.size() == 2);
  CHECK(r.replies[0].instance == "a");
  CHECK(r.replies[1].instance == "b");
  CHECK(std::string(r.status.message()).find("did not answer") != std::string::npos);
  // Application topics go to on_request; without a handler: Unimplemented.
  auto app =
      f.advancing([&] { return a.rooms->request("stats", "", milliseconds(2000)); });
  CHECK(app.replies.size() == 2);
  CHECK(app.replies[0].status.code() == absl::StatusCode::kUnimplemented);
  CHECK(a.rooms->request("fleet.x", "", milliseconds(10)).status.code() ==
        absl::StatusCode::kInvalidArgument);
}

TEST_CASE("a member whose instance vanishes is removed, an empty room is released",
          "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add("b", {});
  unwrap(b.rooms->join("lonely", "ghost"));
  unwrap(b.rooms->join("shared", "ghost2"));
  unwrap(a.rooms->join("shared", "alice"));
  f.kill(b);
  f.expire();
  // The check, as the worker would run it, until a cleans up after b: under
  // load b's record may reach a's mirror (from the change stream) only after
  // the first one.
  REQUIRE(eventually([&] {
    f.run_all();
    return unwrap(a.rooms->state("lonely")).participants.empty();
  }));
  auto lonely = unwrap(a.rooms->state("lonely"));
  CHECK(lonely.participants.empty());
  CHECK_FALSE(lonely.placement.has_value());
  auto shared = unwrap(a.rooms->state("shared"));
  REQUIRE(shared.participants.size() == 1);
  CHECK(shared.participants[0].identity == "alice");
  CHECK(shared.placement.has_value());
  REQUIRE(eventually([&] {
    std::lock_guard<std::mutex> lock(a.seen->mu);
    for (const auto& e : a.seen->participants)
      if (e.type == ParticipantEventType::kLeft && e.participant.identity == "ghost2")
        return true;
    return false;
  }));
}

TEST_CASE("after the backend loses its data, placements and members are re-published",
          "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  auto& b = f.add("b", {});
  unwrap(b.rooms->join("r", "bob"));
  unwrap(a.rooms->join("r", "alice"));
  FLEET_REQUIRE_OK(b.rooms->set_flag("r", "screen_share", "on"));
  REQUIRE(eventually([&] {
    auto s = b.rooms->local_members("r");
    return s.size() == 1;
  }));
  // Let b's copy see the flag before the loss.
  std::this_thread::sleep_for(milliseconds(50));
  f.store().lose_data();
  REQUIRE(eventually([&] { return a.coordinator->data_losses() == 1; }));
  REQUIRE(eventually([&] { return b.coordinator->data_losses() == 1; }));
  REQUIRE(eventually([&] {
    return a.coordinator->connection_state() == ConnectionState::kReconnected &&
           b.coordinator->connection_state() == ConnectionState::kReconnected;
  }));
  f.run_all();
  auto st = unwrap(b.rooms->state("r"));
  REQUIRE(st.placement.has_value());
  CHECK(st.placement->node == "a");
  REQUIRE(st.participants.size() == 2);
  CHECK(st.participants[0].instance == "a");
  CHECK(st.participants[1].instance == "b");
  CHECK(st.flags.at("screen_share") == "on");
  CHECK(b.rooms->nodes().size() == 1);
  CHECK(a.rooms->hosted() == std::vector<std::string>{"r"});
}

TEST_CASE("bad input gets InvalidArgument naming the problem", "[rooms]") {
  Fleet f;
  auto& a = f.add_node("a");
  FLEET_REQUIRE_CODE(a.rooms->assign(""), kInvalidArgument);
  FLEET_REQUIRE_CODE(a.rooms->assign("bad\nname"), kInvalidArgument);
  FLEET_REQUIRE_CODE(a.rooms->assign(std::string(kMaxRoomNameBytes + 1, 'r')),
                     kInvalidArgument);
  FLEET_REQUIRE_CODE(a.rooms->join("r", ""), kInvalidArgument);
  FLEET_REQUIRE_CODE(a.rooms->join("r", "tab\tuser"), kInvalidArgument);
  FLEET_REQUIRE_CODE(a.rooms->join("r", "u", std::string(kMaxMetadataBytes + 1, 'm')),
                     kInvalidArgument);
  unwrap(a.rooms->join("r", "u"));
  auto big = a.rooms->broadcast("r", std::string(64 * 1024 + 1, 'x'));
  FLEET_REQUIRE_CODE(big, kInvalidArgument);
  CHECK(std::string(big.message()).find("max_message_bytes") != std::string::npos);
  FLEET_REQUIRE_OK(a.rooms->broadcast("r", std::string(64 * 1024, 'x')));
  FLEET_REQUIRE_CODE(a.rooms->broadcast("r", "x", BroadcastOptions{"", {"bad\x1fid"}}),
                     kInvalidArgument);
  FLEET_REQUIRE_CODE(a.rooms->set_flag("r", "", "v"), kInvalidArgument);
  FLEET_REQUIRE_CODE(a.rooms->leave("r", "nobody"), kNotFound);
  FLEET_REQUIRE_CODE(a.rooms->report_load(-1, 0), kInvalidArgument);

  RoomsOptions small;
  small.max_message_bytes = 10;
  auto& b = f.add("b", {}, small);
  FLEET_REQUIRE_CODE(b.rooms->broadcast("r", "12345678901"), kInvalidArgument);
  FLEET_REQUIRE_CODE(b.rooms->set_node_state(NodeState::kDraining), kFailedPrecondition);
  FLEET_REQUIRE_CODE(b.rooms->migrate_all(), kFailedPrecondition);
  CHECK(parse_node_state("serving").value() == NodeState::kServing);
  FLEET_REQUIRE_CODE(parse_node_state("asleep"), kInvalidArgument);

  // Malformed records in the backend are skipped with a warning.
  FLEET_REQUIRE_OK(
      a.coordinator->put(placement_map("default"), "junk", "not a placement").status());
  FLEET_REQUIRE_CODE(a.rooms->assign("junk"), kDataLoss);
  FLEET_REQUIRE_OK(a.coordinator->put(nodes_map("default"), "weird", "{").status());
  FLEET_REQUIRE_OK(a.rooms->run_once());
  CHECK(eventually([&] { return f.log().contains("malformed node record"); }));

  // Created before join(): FailedPrecondition until the session joins.
  auto lone = unwrap(LocalCoordinator::create());
  RoomsOptions early;
  early.background = false;
  early.log_sink = quiet_log_sink();
  auto waiting = unwrap(Rooms::create(*lone, early));
  FLEET_REQUIRE_CODE(waiting->locate("r"), kFailedPrecondition);
  FLEET_REQUIRE_CODE(waiting->run_once(), kFailedPrecondition);
  CHECK(waiting->instance_id().empty());
  InstanceInfo late;
  late.id = "late";
  FLEET_REQUIRE_OK(lone->join(late));
  FLEET_REQUIRE_OK(waiting->locate("r").status());
  CHECK(waiting->instance_id() == "late");
  waiting.reset();
  RoomsOptions bad;
  bad.name = std::string(49, 'n');
  FLEET_REQUIRE_CODE(Rooms::create(*a.coordinator, bad), kInvalidArgument);
}

}  // namespace
}  // namespace fleet::testing
