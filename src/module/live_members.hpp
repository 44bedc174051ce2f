// Which instances are live members, as a module sees them: read with
// Coordinator::members() at every check and kept between checks by the
// membership events. A member's expiry is seen within its session TTL plus
// up to one heartbeat (Redis: the sweep), or at the next check's read.
#ifndef FLEET_SRC_MODULE_LIVE_MEMBERS_HPP_
#define FLEET_SRC_MODULE_LIVE_MEMBERS_HPP_

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "fleet/coordinator.hpp"
#include "internal/mutex.hpp"

namespace fleet::internal {

class LiveMembers {
 public:
  explicit LiveMembers(Coordinator& c) : c_(c) {}

  // Reads the members now.
  absl::Status refresh();
  // A membership event (the Coordinator's event thread).
  void apply(const MemberEvent& e);

  bool contains(std::string_view id) const;
  // Whether the last refresh() succeeded: the ids are as of a read, not
  // only as events told.
  bool fresh() const;
  std::set<std::string, std::less<>> ids() const;

 private:
  void apply_locked(const MemberEvent& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Coordinator& c_;
  mutable Mutex mu_;
  std::set<std::string, std::less<>> ids_ ABSL_GUARDED_BY(mu_);
  // Events that arrive while a read is on its way are applied again on top
  // of what it read (they may be newer).
  int reading_ ABSL_GUARDED_BY(mu_) = 0;
  bool fresh_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<MemberEvent> during_read_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_MODULE_LIVE_MEMBERS_HPP_
