// Where each room is hosted: map "rooms/<name>/placement", room -> the
// node's id, address, a generation (+1 on every move) and the cause, kept
// whole in a local mirror (the locate cache), changed only by claim (first
// assignment) and compare-and-set (moves), so that any number of instances
// racing agree on one node.
#ifndef FLEET_SRC_ROOMS_PLACEMENT_HPP_
#define FLEET_SRC_ROOMS_PLACEMENT_HPP_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "internal/mutex.hpp"
#include "module/map_mirror.hpp"
#include "rooms/context.hpp"
#include "rooms/registry.hpp"

namespace fleet::rooms::internal_rooms {

class Placements {
 public:
  // Whether this instance has members of a room (they keep it placed).
  using HasLocalMembers = std::function<bool(const std::string& room)>;

  Placements(Context& ctx, NodeRegistry& nodes, HasLocalMembers has_local)
      : ctx_(ctx), nodes_(nodes), has_local_(std::move(has_local)) {}

  // Starts the mirror: every placement, then every change.
  absl::Status attach();
  // Stops the mirror: after it returns no change is applied.
  void stop() {
    if (mirror_) mirror_->stop();
  }

  // From the mirror when it is exact and knows the room; else one get().
  absl::StatusOr<std::optional<Placement>> locate(const std::string& room)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The room's placement; placed on `preferred` when that is a live node
  // and the room needs placing, else on select()'s choice.
  absl::StatusOr<Placement> assign(const std::string& room, const std::string& preferred);
  // Moves the room to `to` (empty: select one, not its node).
  absl::StatusOr<Placement> migrate(const std::string& room, std::string_view to);
  // Releases `room` when nobody is in it — its placement (compare-and-delete
  // of what was read) and its state. Returns whether it released.
  absl::StatusOr<bool> release_if_empty(const std::string& room, std::string_view cause);
  // Moves the rooms of node `dead` that have participants, releases the
  // others; removes them from *touched.
  absl::Status move_rooms_of(const std::string& dead, std::set<std::string>* touched,
                             std::size_t* moved, std::size_t* released);
  // After a data loss: the rooms this node hosts, and those of `rooms`
  // (rooms with members here) whose node is live, placed again where
  // absent.
  absl::StatusOr<std::size_t> republish(const std::vector<std::string>& rooms)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Rooms placed on this node (from the mirror).
  std::vector<std::string> hosted() const ABSL_LOCKS_EXCLUDED(mu_);
  // The connection was interrupted: the cache stops answering until the
  // mirror is re-read.
  void interrupted() ABSL_LOCKS_EXCLUDED(mu_);
  void fill(RoomsStats* stats) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Cached {
    Placement p;
    std::uint64_t version = 0;
  };
  void on_change(const internal::MapMirror::Change& ch) ABSL_LOCKS_EXCLUDED(mu_);
  // `cur` moved to `to`, counted and logged; false when it changed first.
  absl::StatusOr<bool> move(const Placement& cur, const std::string& stored,
                            const Node& to, const std::string& cause,
                            const std::string& why, Placement* next);

  Context& ctx_;
  NodeRegistry& nodes_;
  const HasLocalMembers has_local_;
  mutable internal::Mutex mu_;
  std::map<std::string, Cached, std::less<>> cache_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> hosted_ ABSL_GUARDED_BY(mu_);
  bool loading_ ABSL_GUARDED_BY(mu_) = false;  // the first read: no events
  std::uint64_t hits_ ABSL_GUARDED_BY(mu_) = 0, misses_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t drops_ ABSL_GUARDED_BY(mu_) = 0, moved_here_ ABSL_GUARDED_BY(mu_) = 0;
  // Last: destroyed (stopped) before the state its listener touches.
  std::shared_ptr<internal::MapMirror> mirror_;
};

}  // namespace fleet::rooms::internal_rooms

#endif  // FLEET_SRC_ROOMS_PLACEMENT_HPP_
