// Two separate processes coordinating through one Redis.

#include <unistd.h>

#include <chrono>
#include <set>
#include <sstream>
#include <thread>

#include "catch.hpp"
#include "process.hpp"
#include "redis_server.hpp"

namespace fleet::testing {
namespace {

Child spawn_peer(const std::vector<std::string>& args) {
  return spawn(FLEET_PEER_BINARY, args);
}

std::string ns(const char* what) {
  return std::string(what) + "-" + std::to_string(::getpid());
}

TEST_CASE("two processes see each other's membership", "[redis][processes]") {
  const std::string url = shared_redis_server().url();
  const std::string n = ns("members");
  Child a = spawn_peer({url, n, "members", "proc-a"});
  Child b = spawn_peer({url, n, "members", "proc-b"});
  int ca = 0, cb = 0;
  const std::string out_a = finish(a, &ca), out_b = finish(b, &cb);
  INFO(out_a << out_b);
  CHECK(ca == 0);
  CHECK(cb == 0);
  CHECK(out_a == "members: proc-a proc-b\n");
  CHECK(out_b == "members: proc-a proc-b\n");
}

TEST_CASE("two processes: lock mutual exclusion with strictly increasing fences",
          "[redis][processes]") {
  const std::string url = shared_redis_server().url();
  const std::string n = ns("locks");
  constexpr int kRounds = 100;
  Child a = spawn_peer({url, n, "lock", std::to_string(kRounds)});
  Child b = spawn_peer({url, n, "lock", std::to_string(kRounds)});
  int ca = 0, cb = 0;
  const std::string out_a = finish(a, &ca), out_b = finish(b, &cb);
  INFO(out_a << out_b);
  REQUIRE(ca == 0);
  REQUIRE(cb == 0);
  CHECK(out_a.rfind("violations: 0\n", 0) == 0);
  CHECK(out_b.rfind("violations: 0\n", 0) == 0);
  std::set<unsigned long long> all;
  for (const auto* out : {&out_a, &out_b}) {
    std::istringstream in(out->substr(out->find("fences:") + 7));
    unsigned long long f = 0, prev = 0;
    int count = 0;
    while (in >> f) {
      CHECK(f > prev);  // each process sees its own fences grow
      prev = f;
      all.insert(f);
      ++count;
    }
    CHECK(count == kRounds);
  }
  CHECK(all.size() == 2 * kRounds);  // no fence was granted twice
}

TEST_CASE("two processes racing to claim a room: one winner", "[redis][processes]") {
  const std::string url = shared_redis_server().url();
  for (int round = 0; round < 5; ++round) {
    const std::string n = ns("claims") + "-" + std::to_string(round);
    const auto start = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count() +
                       300;
    Child a = spawn_peer({url, n, "claim", "room-1", "node-a", std::to_string(start)});
    Child b = spawn_peer({url, n, "claim", "room-1", "node-b", std::to_string(start)});
    int ca = 0, cb = 0;
    const std::string out_a = finish(a, &ca), out_b = finish(b, &cb);
    INFO(out_a << out_b);
    REQUIRE(ca == 0);
    REQUIRE(cb == 0);
    const bool a_won = out_a.rfind("claimed", 0) == 0;
    const bool b_won = out_b.rfind("claimed", 0) == 0;
    CHECK(a_won != b_won);
    const std::string winner = a_won ? "node-a" : "node-b";
    CHECK(out_a.substr(out_a.find(' ') + 1) == winner + "\n");
    CHECK(out_b.substr(out_b.find(' ') + 1) == winner + "\n");
  }
}

}  // namespace
}  // namespace fleet::testing
