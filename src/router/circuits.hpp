// The pool's circuit breakers: a node that failed breaker_failures times
// in a row at one gateway is out for breaker_cooldown at every gateway.
// Shared as map "router/<pool>/breakers": node id -> the wall-clock ms when
// the circuit closes, with the cool-down as the entry's TTL (so an entry
// read late, or a gateway whose clock differs, gives the same answer; a
// value is trusted for a day at most).
#ifndef FLEET_SRC_ROUTER_CIRCUITS_HPP_
#define FLEET_SRC_ROUTER_CIRCUITS_HPP_

#include <chrono>
#include <map>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "fleet/coordinator.hpp"
#include "internal/logger.hpp"
#include "internal/mutex.hpp"
#include "module/map_mirror.hpp"

namespace fleet::router::internal_router {

class Circuits {
 public:
  using Ms = std::chrono::milliseconds;
  Circuits(Coordinator& c, std::string map, Ms cooldown, const internal::Logger& log)
      : c_(c), map_(std::move(map)), cooldown_(cooldown), log_(log) {}

  const std::string& map() const { return map_; }

  // A change of the shared map (the mirror's listener).
  void on_change(const internal::MapMirror::Change& ch) ABSL_LOCKS_EXCLUDED(mu_);
  // Time left on the node's open circuit, zero if closed.
  Ms open_for(const std::string& node, Clock::TimePoint now) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Every circuit's time left (closed ones included, at zero).
  std::map<std::string, Ms> open_all(Clock::TimePoint now) const ABSL_LOCKS_EXCLUDED(mu_);
  // Opens the node's circuit here unless it is open; true if it opened.
  // share() then tells the other gateways.
  bool trip(const std::string& node, Clock::TimePoint now) ABSL_LOCKS_EXCLUDED(mu_);
  void share(const std::string& node);
  // After a data loss: the circuits still open, written back where absent.
  absl::StatusOr<std::size_t> republish() ABSL_LOCKS_EXCLUDED(mu_);
  // Our own trips whose circuits have closed shadow nothing any more.
  void forget_closed(Clock::TimePoint now) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Clock::TimePoint closes_at(const std::string& value) const;
  std::string closes_text(Ms left) const;

  Coordinator& c_;
  const std::string map_;
  const Ms cooldown_;
  const internal::Logger& log_;
  mutable internal::Mutex mu_;
  std::map<std::string, Clock::TimePoint> open_until_ ABSL_GUARDED_BY(mu_);
  // Tripped here, not yet seen on the change stream: the end of an older
  // trip (its entry expiring) does not close them.
  std::set<std::string> own_trips_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fleet::router::internal_router

#endif  // FLEET_SRC_ROUTER_CIRCUITS_HPP_
