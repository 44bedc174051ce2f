// This instance's copies of a relay's sessions, and how a change of the
// bucket maps moves them. Own copies are the sessions this instance owns,
// as it last wrote or read them; foreign copies are the peers' sessions of
// the groups it replicates. The relay's writes, reads and takeovers update
// them under `mu`; the bucket mirrors' changes go through apply().
#ifndef FLEET_SRC_RELAY_COPIES_HPP_
#define FLEET_SRC_RELAY_COPIES_HPP_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fleet/relay.hpp"
#include "internal/logger.hpp"
#include "internal/mutex.hpp"
#include "module/map_mirror.hpp"

namespace fleet::relay::internal_relay {

struct Copy {
  Session s;
  std::string raw;                  // the stored value, for compare-and-set
  std::uint64_t entry_version = 0;  // the map's revision of that value
  bool removing = false;            // our own remove() is on its way
  // Own copies: Coordinator::data_losses() read just before the call that
  // last showed the stored copy to be this one. A stored copy missing
  // although no data loss happened since was deleted; one lost with the
  // backend's data is put back.
  std::uint64_t losses = 0;
};

// What a change (or a restore) calls for beyond the copies themselves.
struct Effects {
  std::vector<SessionEvent> events;    // for the application, in order
  std::vector<std::string> roll_back;  // creates that failed but landed
};

// What a restore found (while restoring, apply() collects it).
struct Restored {
  std::vector<Copy> adopt;  // stored under our id by an earlier incarnation
  std::size_t lost = 0;     // taken from our id while we were away
  std::size_t malformed = 0;
};

class Copies {
 public:
  Copies(std::string me, std::string groups, const internal::Logger& log)
      : me_(std::move(me)), groups_(std::move(groups)), log_(log) {}

  // A change of a bucket map (a MapMirror listener). `losses`: the
  // Coordinator's data_losses() now.
  void apply(const internal::MapMirror::Change& ch, std::uint64_t losses, Effects* out)
      ABSL_LOCKS_EXCLUDED(mu);

  // Until end_restore(), sessions stored under our id with another fence
  // are collected for adoption, and those taken from us counted.
  void begin_restore(std::uint64_t fence) ABSL_LOCKS_EXCLUDED(mu);
  Restored end_restore() ABSL_LOCKS_EXCLUDED(mu);

  std::vector<Session> list(bool own_sessions) const ABSL_LOCKS_EXCLUDED(mu);

  mutable internal::Mutex mu;
  std::map<std::string, Copy> own ABSL_GUARDED_BY(mu);
  std::map<std::string, Copy> foreign ABSL_GUARDED_BY(mu);
  std::set<std::string> unsure ABSL_GUARDED_BY(mu);  // writes of unknown outcome
  std::map<std::string, Copy> pending_create
      ABSL_GUARDED_BY(mu);  // creates of unknown outcome

 private:
  void set_locked(const internal::MapMirror::Change& ch, std::uint64_t losses,
                  Effects* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void erase_locked(const internal::MapMirror::Change& ch, Effects* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  const std::string me_;
  const std::string groups_;  // encode_groups of what we replicate
  const internal::Logger& log_;
  bool restoring_ ABSL_GUARDED_BY(mu) = false;
  std::uint64_t restore_fence_ ABSL_GUARDED_BY(mu) = 0;
  Restored restored_ ABSL_GUARDED_BY(mu);
};

}  // namespace fleet::relay::internal_relay

#endif  // FLEET_SRC_RELAY_COPIES_HPP_
