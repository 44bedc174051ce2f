// Checks shared by the Sentinel and Cluster tests once a namespace's data
// has moved to another server (failover, slot migration): what session `a`
// held is still there when session `b` looks.
#ifndef FLEET_TESTS_SUPPORT_MOVED_CHECKS_HPP_
#define FLEET_TESTS_SUPPORT_MOVED_CHECKS_HPP_

#include <chrono>
#include <optional>
#include <string>

#include "catch.hpp"
#include "fleet/coordinator.hpp"
#include "recorder.hpp"

namespace fleet::testing {

// `b` claims `key` of map `map` and is told `owner` holds it (retrying while
// the new server answers Unavailable, as a replica catches up).
inline void check_claim_kept(Coordinator& b, const std::string& map,
                             const std::string& key, const std::string& owner) {
  ClaimResult again;
  CHECK(eventually(
      [&] {
        auto c = b.claim(map, key, "someone-else", std::chrono::milliseconds::zero());
        if (c.ok()) again = *c;
        return c.ok();
      },
      std::chrono::seconds(10)));
  CHECK_FALSE(again.claimed);
  CHECK(again.entry.value == owner);
}

// `first` (a lock "job" of another session) is still held; once it expires
// `b` gets the lock with a higher fence.
inline void check_next_fence_higher(Coordinator& b, const Lease& first) {
  std::optional<Lease> second;
  CHECK(eventually(
      [&] {
        auto l = b.try_lock(first.name, std::chrono::milliseconds(400));
        if (l.ok() && l->has_value()) second = *l;
        return second.has_value();
      },
      std::chrono::seconds(5)));
  REQUIRE(second.has_value());
  CHECK(second->fence > first.fence);
}

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_MOVED_CHECKS_HPP_
