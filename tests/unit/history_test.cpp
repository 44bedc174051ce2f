// The fault suite's history checker finds each kind of violation it is
// for, and none in a clean history: a checker that cannot fail proves
// nothing.
#include "history.hpp"
#include "catch.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;

History::Time at(int ms) {
  return History::Time{} + std::chrono::hours(1) + milliseconds(ms);
}

TEST_CASE("a clean history has no violations", "[history]") {
  History h;
  // A lock passed on, with growing fences; a lease that overlaps after a
  // pause but is fenced out (higher fence for the later holder).
  h.lock_granted("L", "a", 10, at(0), at(1), at(100));
  h.lock_released("L", "a", 10, at(50));
  h.lock_granted("L", "b", 11, at(60), at(61), at(200));
  h.lock_granted("L", "c", 12, at(150), at(151), at(300));  // b's lease still believed
  h.claim("rooms", "r1", "a", true, "a", at(5));
  h.claim("rooms", "r1", "b", false, "a", at(6));
  h.slot_granted("p", "n", 2, "a", 1, at(0));
  h.slot_granted("p", "n", 2, "b", 1, at(1));
  h.slot_released("p", "n", "a", 1, at(10));
  h.slot_granted("p", "n", 2, "a", 2, at(10));  // freed and taken at once: fine
  h.slot_released("p", "n", "b", 1, at(20));
  h.slot_granted("p", "n", 2, "c", 7, at(21));
  h.holder_died("c", at(30));  // c's slot goes with it
  h.slot_released("p", "n", "a", 2, at(40));
  // After a data loss the key may be claimed again.
  h.data_lost(at(100));
  h.claim("rooms", "r1", "b", true, "b", at(120));
  CHECK(h.check().empty());
  CHECK(h.summary() == "3 lock grants, 3 claims, 4 slot grants");
}

TEST_CASE("two holders at once without a higher fence are found", "[history]") {
  History h;
  h.lock_granted("L", "a", 10, at(0), at(1), at(100));
  // Asked for at once, both granted: overlapping, the later with the lower fence.
  h.lock_granted("L", "b", 9, at(0), at(21), at(120));
  auto v = h.check();
  REQUIRE(v.size() == 1);
  CHECK(v[0].find("held at once") != std::string::npos);
}

TEST_CASE("a later grant with a lower fence is found", "[history]") {
  History h;
  h.lock_granted("L", "a", 10, at(0), at(1), at(100));
  h.lock_released("L", "a", 10, at(5));
  h.lock_granted("L", "b", 10, at(10), at(11), at(100));  // fence repeated
  auto v = h.check();
  REQUIRE(v.size() == 1);
  CHECK(v[0].find("the later grant has the lower fence") != std::string::npos);
}

TEST_CASE("two owners of one claimed key are found, and disagreeing claimers",
          "[history]") {
  History h;
  h.claim("rooms", "r1", "a", true, "a", at(0));
  h.claim("rooms", "r1", "b", true, "b", at(1));
  h.claim_failed("rooms", "r1", "c", "UNAVAILABLE: x", at(2));
  h.claim_failed("rooms", "r2", "c", "UNAVAILABLE: y", at(2));
  auto v = h.check();
  REQUIRE(v.size() == 2);
  CHECK(v[0].find("2 owners") != std::string::npos);
  // Every answer on the key, failures included, in time order.
  CHECK(v[1] ==
        "claim 'rooms/r1': claimers were told 2 different owners: a told a (claimed) at "
        "0.000000 ms; b told b (claimed) at 1.000000 ms; c failed (UNAVAILABLE: x) at "
        "2.000000 ms");
}

TEST_CASE("more slots than capacity, a double release and a leak are found",
          "[history]") {
  History h;
  h.slot_granted("p", "n", 1, "a", 1, at(0));
  h.slot_granted("p", "n", 1, "b", 1, at(5));  // a still holds the only one
  h.slot_released("p", "n", "a", 1, at(10));
  h.slot_released("p", "n", "a", 1, at(11));  // again
  auto v = h.check();
  REQUIRE(v.size() == 3);
  CHECK(v[0].find("released ticket 1 it did not hold") != std::string::npos);
  CHECK(v[1].find("2 in use") != std::string::npos);
  CHECK(v[2].find("1 still held at the end") != std::string::npos);
  CHECK(h.check(false).size() == 2);  // held at the end may be allowed
}

}  // namespace
}  // namespace fleet::testing
