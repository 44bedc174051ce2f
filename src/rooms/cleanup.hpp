// Instances that are gone: their members leave their rooms, the rooms they
// hosted move to a live node (or are released when nobody is in them), and
// their record goes. Exactly one survivor does it for each — the rendezvous
// choice among the live instances — or any of them once takeover_grace has
// passed since it noticed.
#ifndef FLEET_SRC_ROOMS_CLEANUP_HPP_
#define FLEET_SRC_ROOMS_CLEANUP_HPP_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "rooms/context.hpp"
#include "rooms/placement.hpp"
#include "rooms/registry.hpp"

namespace fleet::rooms::internal_rooms {

class Cleanup {
 public:
  Cleanup(Context& ctx, NodeRegistry& nodes, Placements& placements)
      : ctx_(ctx), nodes_(nodes), placements_(placements) {}

  // Every check (worker thread, or run_once under the core's step lock).
  absl::Status run();

 private:
  absl::Status clean_up(const std::string& dead);
  // Removes the members `dead` held (by its index map); appends their rooms.
  absl::Status remove_members(const std::string& dead, std::set<std::string>* rooms,
                              std::size_t* removed);

  Context& ctx_;
  NodeRegistry& nodes_;
  Placements& placements_;
  std::map<std::string, Clock::TimePoint> dead_since_;  // the step's thread only
};

}  // namespace fleet::rooms::internal_rooms

#endif  // FLEET_SRC_ROOMS_CLEANUP_HPP_
