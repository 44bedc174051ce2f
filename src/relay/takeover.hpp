// Taking over the sessions of owners that are gone: which ones this
// instance takes (rendezvous choice among the live peers that replicate the
// session's group; any of them once takeover_grace has passed), and the
// rewrite that makes them ours — a compare-and-set per session, with a new
// fencing token, in batches of Coordinator::apply. The same rewrite adopts
// what an earlier incarnation of this instance id left behind.
#ifndef FLEET_SRC_RELAY_TAKEOVER_HPP_
#define FLEET_SRC_RELAY_TAKEOVER_HPP_

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fleet/coordinator.hpp"
#include "fleet/relay.hpp"
#include "relay/copies.hpp"

namespace fleet::relay::internal_relay {

class Takeover {
 public:
  Takeover(Coordinator& c, const RelayOptions& o, const std::string& me, Copies& copies)
      : c_(c), o_(o), me_(me), copies_(copies) {}

  // A new fencing token: a grant of the relay's fence lock (strictly
  // greater than every earlier one).
  absl::StatusOr<std::uint64_t> next_fence();

  // Takes the sessions this instance should take now, given the live
  // members; appends them (as now stored) to *taken. After a data loss,
  // owners get takeover_grace to come back first.
  absl::Status run(const std::set<std::string, std::less<>>& live,
                   std::vector<Session>* taken);

  // Rewrites `copies` (as stored in `map`) with `change` applied and the
  // version + 1, by compare-and-set in batches; each one that matched
  // becomes an own copy (and is appended to *taken when given). One that
  // did not had changed meanwhile: the change stream says how.
  absl::Status rewrite_as_own(const std::string& map, const std::vector<Copy>& copies,
                              const std::function<void(Session&)>& change,
                              std::vector<Session>* taken);

 private:
  Coordinator& c_;
  const RelayOptions& o_;
  const std::string& me_;
  Copies& copies_;
  // Worker thread only (run()).
  std::uint64_t losses_seen_ = 0;
  Clock::TimePoint loss_noticed_at_{};
  std::map<std::string, Clock::TimePoint> orphaned_since_;
};

}  // namespace fleet::relay::internal_relay

#endif  // FLEET_SRC_RELAY_TAKEOVER_HPP_
