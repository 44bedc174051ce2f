// Conformance: maps, watches, messaging, connection state, argument checks.
#include <atomic>
#include <thread>

#include "backend.hpp"
#include "fleet/names.hpp"
#include "recorder.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;

TEST_CASE("N threads claiming one key produce exactly one winner",
          "[conformance][maps]") {
  auto backend = make_backend();
  constexpr int kThreads = 8;
  std::vector<std::unique_ptr<Coordinator>> sessions;
  for (int i = 0; i < kThreads; ++i) sessions.push_back(backend->connect());
  std::vector<absl::StatusOr<ClaimResult>> results(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      results[i] = sessions[i]->claim("rooms", "room-1", "node-" + std::to_string(i));
    });
  }
  for (auto& t : threads) t.join();
  int winners = 0;
  std::string winner;
  for (int i = 0; i < kThreads; ++i) {
    INFO(results[i].status().ToString());
    REQUIRE(results[i].ok());
    if (results[i]->claimed) {
      ++winners;
      winner = "node-" + std::to_string(i);
    }
  }
  REQUIRE(winners == 1);
  for (const auto& r : results) CHECK(r->entry.value == winner);
  CHECK(unwrap(sessions[0]->get("rooms", "room-1"))->value == winner);
}

TEST_CASE("put, get, compare-and-set, compare-and-delete and erase",
          "[conformance][maps]") {
  auto backend = make_backend();
  auto c = backend->connect();
  CHECK_FALSE(unwrap(c->get("m", "k")).has_value());
  CHECK_FALSE(unwrap(c->compare_and_set("m", "k", "x", "y")));  // absent
  auto e1 = unwrap(c->put("m", "k", "v1"));
  CHECK(e1.value == "v1");
  CHECK(e1.version > 0);
  CHECK_FALSE(unwrap(c->compare_and_set("m", "k", "wrong", "v2")));
  CHECK(unwrap(c->get("m", "k"))->value == "v1");
  CHECK(unwrap(c->compare_and_set("m", "k", "v1", "v2")));
  auto e2 = unwrap(c->get("m", "k"));
  CHECK(e2->value == "v2");
  CHECK(e2->version > e1.version);
  auto claim = unwrap(c->claim("m", "k", "v3"));
  CHECK_FALSE(claim.claimed);
  CHECK(claim.entry.value == "v2");
  CHECK(claim.entry.version == e2->version);
  CHECK_FALSE(unwrap(c->compare_and_delete("m", "k", "v1")));
  CHECK(unwrap(c->compare_and_delete("m", "k", "v2")));
  CHECK_FALSE(unwrap(c->get("m", "k")).has_value());
  CHECK_FALSE(unwrap(c->erase("m", "k")));
  auto e3 = unwrap(c->put("m", "k", "v4"));
  CHECK(e3.version > e2->version);  // versions never repeat, even after a delete
  CHECK(unwrap(c->erase("m", "k")));
  // Maps are separate namespaces.
  FLEET_REQUIRE_OK(c->put("m1", "k", "one"));
  FLEET_REQUIRE_OK(c->put("m2", "k", "two"));
  CHECK(unwrap(c->get("m1", "k"))->value == "one");
  CHECK(unwrap(c->get("m2", "k"))->value == "two");
}

TEST_CASE("keys and values are binary-safe", "[conformance][maps]") {
  auto backend = make_backend();
  auto c = backend->connect();
  const std::string key = std::string("a b\n{x}\0\xff", 10);
  const std::string value = std::string("\0\x01\r\n*3\r\n", 9);
  FLEET_REQUIRE_OK(c->put("bin map {1}", key, value));
  auto got = unwrap(c->get("bin map {1}", key));
  REQUIRE(got.has_value());
  CHECK(got->value == value);
  CHECK_FALSE(unwrap(c->get("bin map {1}", std::string("a b\n{x}", 7))).has_value());
  auto all = unwrap(c->scan("bin map {1}"));
  REQUIRE(all.size() == 1);
  CHECK(all[0].key == key);
}

TEST_CASE("an entry with a TTL expires", "[conformance][maps]") {
  auto backend = make_backend();
  auto c = backend->connect();
  const auto ttl = backend->lease_ttl();
  CHECK(unwrap(c->claim("m", "temp", "v", ttl)).claimed);
  FLEET_REQUIRE_OK(c->put("m", "forever", "v"));
  backend->advance(ttl / 3);
  CHECK(unwrap(c->get("m", "temp")).has_value());
  backend->advance(ttl * 2);
  CHECK_FALSE(unwrap(c->get("m", "temp")).has_value());
  CHECK(unwrap(c->get("m", "forever")).has_value());
  CHECK(unwrap(c->claim("m", "temp", "again")).claimed);  // free to claim again
}

TEST_CASE("scan returns entries by prefix in key order, up to a limit",
          "[conformance][maps]") {
  auto backend = make_backend();
  auto c = backend->connect();
  for (const char* k : {"room/3", "room/1", "user/1", "room/2"}) {
    FLEET_REQUIRE_OK(c->put("m", k, std::string("v-") + k));
  }
  auto rooms = unwrap(c->scan("m", "room/"));
  REQUIRE(rooms.size() == 3);
  CHECK(rooms[0].key == "room/1");
  CHECK(rooms[1].key == "room/2");
  CHECK(rooms[2].key == "room/3");
  CHECK(rooms[2].entry.value == "v-room/3");
  CHECK(unwrap(c->scan("m")).size() == 4);
  auto two = unwrap(c->scan("m", "room/", 2));
  REQUIRE(two.size() == 2);
  CHECK(two[1].key == "room/2");
  CHECK(unwrap(c->scan("empty-map")).empty());
}

TEST_CASE("apply runs a batch in order, each op as its single call",
          "[conformance][maps][batch]") {
  auto backend = make_backend();
  auto c = backend->connect();
  auto watcher = backend->connect();
  Recorder<WatchEvent> events;
  auto sub = unwrap(watcher->watch("m", "", events.callback()));
  FLEET_REQUIRE_OK(c->put("m", "taken", "theirs"));
  FLEET_REQUIRE_OK(c->put("m", "gone", "g"));
  const std::vector<MapOp> ops = {
      MapOp::claim("a", "a1"),                   // 0: claimed
      MapOp::claim("taken", "mine"),             // 1: lost to "theirs"
      MapOp::compare_and_set("a", "a1", "a2"),   // 2: sees op 0's write
      MapOp::compare_and_set("a", "a1", "a3"),   // 3: no longer a1
      MapOp::put("b", "b1"),                     // 4
      MapOp::compare_and_delete("b", "wrong"),   // 5: refused
      MapOp::compare_and_delete("b", "b1"),      // 6: deleted
      MapOp::erase("gone"),                      // 7: deleted
      MapOp::erase("never"),                     // 8: absent
      MapOp::compare_and_set("never", "", "x"),  // 9: absent
  };
  auto r = unwrap(c->apply("m", ops));
  REQUIRE(r.size() == ops.size());
  const std::vector<bool> applied = {true,  false, true, false, true,
                                     false, true,  true, false, false};
  for (std::size_t i = 0; i < r.size(); ++i) {
    INFO("op " << i);
    CHECK(r[i].applied == applied[i]);
  }
  CHECK(r[0].entry.value == "a1");
  CHECK(r[1].entry.value == "theirs");
  CHECK(r[2].entry.value == "a2");
  CHECK(r[2].entry.version > r[0].entry.version);
  CHECK(r[3].entry.version == 0u);
  CHECK(r[4].entry.value == "b1");
  CHECK(r[4].entry.version > r[2].entry.version);
  CHECK(unwrap(c->get("m", "a"))->value == "a2");
  CHECK(unwrap(c->get("m", "a"))->version == r[2].entry.version);
  CHECK(unwrap(c->get("m", "taken"))->value == "theirs");
  CHECK_FALSE(unwrap(c->get("m", "b")).has_value());
  CHECK_FALSE(unwrap(c->get("m", "gone")).has_value());
  CHECK_FALSE(unwrap(c->get("m", "never")).has_value());
  CHECK(unwrap(c->apply("m", {})).empty());

  // 2 puts before, then a1, a2, b1 set, b and gone deleted: in batch order.
  REQUIRE(events.wait_count(7));
  auto ev = events.events();
  REQUIRE(ev.size() == 7);
  CHECK(ev[2].key == "a");
  CHECK(ev[2].value == "a1");
  CHECK(ev[3].value == "a2");
  CHECK(ev[4].key == "b");
  CHECK(ev[5].type == WatchEventType::kDeleted);
  CHECK(ev[5].key == "b");
  CHECK(ev[6].key == "gone");
  for (std::size_t i = 1; i < ev.size(); ++i) CHECK(ev[i].version > ev[i - 1].version);
}

TEST_CASE("apply takes entries with TTLs and refuses bad batches whole",
          "[conformance][maps][batch]") {
  auto backend = make_backend();
  auto c = backend->connect();
  const auto ttl = backend->lease_ttl();
  auto r =
      unwrap(c->apply("m", {MapOp::put("t", "v", ttl), MapOp::claim("u", "w", ttl)}));
  CHECK(r[0].applied);
  CHECK(r[1].applied);
  backend->advance(ttl * 2);
  CHECK_FALSE(unwrap(c->get("m", "t")).has_value());
  CHECK_FALSE(unwrap(c->get("m", "u")).has_value());

  std::vector<MapOp> too_many(kMaxMapBatchOps + 1, MapOp::put("k", "v"));
  FLEET_REQUIRE_CODE(c->apply("m", too_many), kInvalidArgument);
  std::vector<MapOp> too_big(20, MapOp::put("k", std::string(kMaxValueBytes, 'x')));
  FLEET_REQUIRE_CODE(c->apply("m", too_big), kInvalidArgument);
  // One bad op refuses the batch: the good one before it is not applied.
  FLEET_REQUIRE_CODE(c->apply("m", {MapOp::put("ok", "v"), MapOp::put("", "v")}),
                     kInvalidArgument);
  FLEET_REQUIRE_CODE(
      c->apply("m", {MapOp::put("ok", "v"), MapOp::put("k", "v", milliseconds(-1))}),
      kInvalidArgument);
  FLEET_REQUIRE_CODE(c->apply("bad map\n", {MapOp::put("k", "v")}), kInvalidArgument);
  CHECK_FALSE(unwrap(c->get("m", "ok")).has_value());
}

TEST_CASE(
    "apply and scan honour entry TTLs: expired entries are gone, a put without TTL "
    "keeps the entry",
    "[conformance][maps][batch]") {
  auto backend = make_backend();
  auto c = backend->connect();
  auto watcher = backend->connect();
  Recorder<WatchEvent> events;
  auto sub = unwrap(watcher->watch("m", "", events.callback()));
  const auto ttl = backend->lease_ttl();
  FLEET_REQUIRE_OK(
      c->apply("m", {MapOp::put("dies", "d", ttl), MapOp::put("kept", "k", ttl),
                     MapOp::put("plain", "p")}));
  // "kept" loses its TTL; "dies" keeps it.
  auto r = unwrap(c->apply("m", {MapOp::compare_and_set("kept", "k", "k2")}));
  CHECK(r[0].applied);
  backend->advance(ttl * 2);
  auto all = unwrap(c->scan("m"));
  REQUIRE(all.size() == 2);
  CHECK(all[0].key == "kept");
  CHECK(all[0].entry.value == "k2");
  CHECK(all[1].key == "plain");
  CHECK_FALSE(
      unwrap(c->apply("m", {MapOp::compare_and_set("dies", "d", "x")}))[0].applied);
  CHECK(unwrap(c->apply("m", {MapOp::claim("dies", "again")}))[0].applied);
  // set x3, set kept, expired dies, set dies again: versions grow in delivery order.
  REQUIRE(events.wait_count(6));
  auto ev = events.events();
  REQUIRE(ev.size() == 6);
  CHECK(ev[4].type == WatchEventType::kExpired);
  CHECK(ev[4].key == "dies");
  CHECK(ev[5].type == WatchEventType::kSet);
  CHECK(ev[5].value == "again");
  for (std::size_t i = 1; i < ev.size(); ++i) CHECK(ev[i].version > ev[i - 1].version);
}

TEST_CASE("watches report set, deleted and expired in order", "[conformance][watches]") {
  auto backend = make_backend();
  auto writer = backend->connect();
  auto watcher = backend->connect();
  Recorder<WatchEvent> all, rooms;
  auto s1 = unwrap(watcher->watch("m", "", all.callback()));
  auto s2 = unwrap(watcher->watch("m", "room/", rooms.callback()));
  FLEET_REQUIRE_OK(writer->put("m", "room/1", "a"));
  FLEET_REQUIRE_OK(writer->put("m", "user/1", "b"));
  CHECK(unwrap(writer->compare_and_set("m", "room/1", "a", "c")));
  CHECK(unwrap(writer->erase("m", "user/1")));
  FLEET_REQUIRE_OK(writer->put("m", "room/2", "t", backend->lease_ttl()));
  FLEET_REQUIRE_OK(writer->put("other-map", "room/9", "x"));
  backend->advance(backend->lease_ttl() * 2);

  REQUIRE(all.wait_count(6));
  auto ev = all.events();
  REQUIRE(ev.size() == 6);
  CHECK(ev[0].type == WatchEventType::kSet);
  CHECK(ev[0].key == "room/1");
  CHECK(ev[0].value == "a");
  CHECK(ev[0].map == "m");
  CHECK(ev[1].key == "user/1");
  CHECK(ev[2].value == "c");
  CHECK(ev[3].type == WatchEventType::kDeleted);
  CHECK(ev[3].key == "user/1");
  CHECK(ev[4].type == WatchEventType::kSet);
  CHECK(ev[5].type == WatchEventType::kExpired);
  CHECK(ev[5].key == "room/2");
  for (std::size_t i = 1; i < ev.size(); ++i) CHECK(ev[i].version > ev[i - 1].version);

  REQUIRE(rooms.wait_count(4));
  auto rev = rooms.events();
  REQUIRE(rev.size() == 4);
  for (const auto& e : rev) CHECK(e.key.rfind("room/", 0) == 0);
}

TEST_CASE("per-publisher message order holds", "[conformance][messaging]") {
  auto backend = make_backend();
  auto pub = backend->connect();
  auto sub = backend->connect();
  Recorder<Message> got;
  auto handle = unwrap(sub->subscribe("chan", got.callback()));
  constexpr int kCount = 200;
  for (int i = 0; i < kCount; ++i)
    FLEET_REQUIRE_OK(pub->publish("chan", std::to_string(i)));
  REQUIRE(got.wait_count(kCount));
  auto msgs = got.events();
  REQUIRE(msgs.size() == kCount);
  for (int i = 0; i < kCount; ++i) {
    CHECK(msgs[i].payload == std::to_string(i));
    CHECK(msgs[i].sequence == static_cast<std::uint64_t>(i + 1));
    CHECK(msgs[i].publisher == pub->session_id());
    CHECK(msgs[i].channel == "chan");
  }
}

TEST_CASE("a publisher receives its own messages, other channels are separate",
          "[conformance][messaging]") {
  auto backend = make_backend();
  auto c = backend->connect();
  Recorder<Message> mine, other;
  auto s1 = unwrap(c->subscribe("a", mine.callback()));
  auto s2 = unwrap(c->subscribe("b", other.callback()));
  FLEET_REQUIRE_OK(c->publish("a", std::string("x\0y", 3)));
  FLEET_REQUIRE_OK(c->publish("nobody-listens", "z"));
  FLEET_REQUIRE_OK(c->publish("b", "end"));
  REQUIRE(other.wait_count(1));
  REQUIRE(mine.wait_count(1));
  CHECK(mine.events()[0].payload == std::string("x\0y", 3));
  CHECK(mine.size() == 1);
}

TEST_CASE("destroying a subscription unsubscribes", "[conformance][messaging]") {
  auto backend = make_backend();
  auto c = backend->connect();
  Recorder<Message> dropped, marker;
  auto keep = unwrap(c->subscribe("marker", marker.callback()));
  {
    auto sub = unwrap(c->subscribe("chan", dropped.callback()));
    FLEET_REQUIRE_OK(c->publish("chan", "1"));
    REQUIRE(dropped.wait_count(1));
  }
  FLEET_REQUIRE_OK(c->publish("chan", "2"));
  FLEET_REQUIRE_OK(c->publish("marker", "after"));
  REQUIRE(marker.wait_count(1));  // delivered after "2" would have been
  CHECK(dropped.size() == 1);
}

TEST_CASE("connection state starts CONNECTED", "[conformance][connection]") {
  auto backend = make_backend();
  auto c = backend->connect();
  CHECK(c->connection_state() == ConnectionState::kConnected);
  Recorder<ConnectionState> states;
  auto sub =
      unwrap(c->watch_connection([cb = states.callback()](ConnectionState s) { cb(s); }));
  REQUIRE(states.wait_count(1));
  CHECK(states.events()[0] == ConnectionState::kConnected);
}

TEST_CASE("invalid names, sizes and TTLs are InvalidArgument", "[conformance][names]") {
  auto backend = make_backend();
  auto c = backend->connect();
  const std::string too_long(kMaxNameBytes + 1, 'n');
  const std::string with_newline = "bad\nname";
  const std::string with_nul = std::string("bad\0name", 8);
  for (const std::string& bad : {std::string(), too_long, with_newline, with_nul,
                                 std::string("tab\there"), std::string("del\x7f")}) {
    INFO("name: " << bad);
    InstanceInfo info;
    info.id = bad;
    FLEET_REQUIRE_CODE(c->join(info), kInvalidArgument);
    FLEET_REQUIRE_CODE(c->publish_node_state(bad, {}), kInvalidArgument);
    FLEET_REQUIRE_CODE(c->counter_add(bad, 1), kInvalidArgument);
    FLEET_REQUIRE_CODE(c->owned_counter_get(bad), kInvalidArgument);
    FLEET_REQUIRE_CODE(c->try_lock(bad, milliseconds(100)), kInvalidArgument);
    FLEET_REQUIRE_CODE(c->campaign(bad, "v", milliseconds(100), milliseconds(0)),
                       kInvalidArgument);
    FLEET_REQUIRE_CODE(c->put(bad, "k", "v"), kInvalidArgument);
    FLEET_REQUIRE_CODE(c->publish(bad, "p"), kInvalidArgument);
    FLEET_REQUIRE_CODE(c->subscribe(bad, [](const Message&) {}), kInvalidArgument);
  }
  // Spaces, braces and UTF-8 are fine in names.
  FLEET_REQUIRE_OK(c->counter_add("a {b} \xc3\xa9", 1));
  FLEET_REQUIRE_OK(c->counter_add(std::string(kMaxNameBytes, 'n'), 1));

  FLEET_REQUIRE_CODE(c->put("m", "", "v"), kInvalidArgument);
  FLEET_REQUIRE_CODE(c->put("m", std::string(kMaxKeyBytes + 1, 'k'), "v"),
                     kInvalidArgument);
  FLEET_REQUIRE_CODE(c->put("m", "k", std::string(kMaxValueBytes + 1, 'v')),
                     kInvalidArgument);
  FLEET_REQUIRE_CODE(c->publish("ch", std::string(kMaxValueBytes + 1, 'p')),
                     kInvalidArgument);
  FLEET_REQUIRE_CODE(c->put("m", "k", "v", milliseconds(-1)), kInvalidArgument);
  FLEET_REQUIRE_CODE(c->try_lock("L", milliseconds(0)), kInvalidArgument);
  FLEET_REQUIRE_CODE(c->lock("L", milliseconds(100), milliseconds(-5)), kInvalidArgument);
  FLEET_REQUIRE_CODE(c->release(Lease{}), kInvalidArgument);
  FLEET_REQUIRE_CODE(c->watch("m", "", nullptr), kInvalidArgument);
  // Nothing was written by the rejected calls.
  CHECK(unwrap(c->scan("m")).empty());
}

}  // namespace
}  // namespace fleet::testing
