// The rooms namespace's instances and nodes: map "rooms/<name>/nodes",
// instance id -> JSON record (every Rooms instance has one; a node's says
// where it is and how loaded), mirrored here, and this instance's own
// record, published at every check when it changed. select() chooses the
// node for a room: live, serving, under max_rooms; same region first; least
// loaded; ties by the room's rendezvous weight.
#ifndef FLEET_SRC_ROOMS_REGISTRY_HPP_
#define FLEET_SRC_ROOMS_REGISTRY_HPP_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "internal/mutex.hpp"
#include "module/map_mirror.hpp"
#include "rooms/context.hpp"

namespace fleet::rooms::internal_rooms {

class NodeRegistry {
 public:
  explicit NodeRegistry(Context& ctx) : ctx_(ctx) {}

  // Starts the mirror (every record, then every change) and publishes ours.
  absl::Status attach();
  // Stops the mirror: after it returns no change is applied.
  void stop() {
    if (mirror_) mirror_->stop();
  }
  // Reads the map again (a node may have started since the last change
  // told), and the live members.
  absl::Status reread();
  // Our record, when it changed (or always, with `force`: after a data loss).
  absl::Status publish_record(bool force = false) ABSL_LOCKS_EXCLUDED(mu_);
  void set_state(NodeState state) ABSL_LOCKS_EXCLUDED(mu_);
  void set_load(std::int64_t clients, double cpu) ABSL_LOCKS_EXCLUDED(mu_);
  void set_hosted(std::size_t rooms) ABSL_LOCKS_EXCLUDED(mu_);

  // Live nodes, ordered by id.
  std::vector<Node> nodes() const ABSL_LOCKS_EXCLUDED(mu_);
  // A live member that hosts rooms.
  bool is_live_node(const std::string& id) const ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<Node> live_node(const std::string& id) const ABSL_LOCKS_EXCLUDED(mu_);
  // Chooses a node for `room` (see above), with a one-line reason.
  // ResourceExhausted: every live serving node is full; Unavailable: none
  // is live and serving.
  absl::StatusOr<std::pair<Node, std::string>> select(
      const std::string& room, const std::set<std::string>& exclude) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // We placed a room there: count it until the node publishes its count.
  void note_assigned(const std::string& node) ABSL_LOCKS_EXCLUDED(mu_);

  // Registered instances that are not live members.
  std::vector<std::string> gone() const ABSL_LOCKS_EXCLUDED(mu_);
  // The registered ids.
  std::set<std::string> registered() const ABSL_LOCKS_EXCLUDED(mu_);
  // The stored record of `id` (for a compare-and-delete) and whether it
  // hosts; nullopt when unknown.
  std::optional<std::pair<std::string, bool>> record(const std::string& id) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Deletes a gone instance's record if it is still `raw`.
  absl::StatusOr<bool> remove(const std::string& id, const std::string& raw)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Registered {
    std::string raw;           // the stored record
    std::optional<Node> node;  // set for hosts
  };
  void on_change(const internal::MapMirror::Change& ch) ABSL_LOCKS_EXCLUDED(mu_);
  void absorb_locked(const std::string& id, const std::string& value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Context& ctx_;
  mutable internal::Mutex mu_;
  Node self_ ABSL_GUARDED_BY(mu_);
  std::string published_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Registered, std::less<>> registry_ ABSL_GUARDED_BY(mu_);
  // Last: destroyed (stopped) before the state its listener touches.
  std::shared_ptr<internal::MapMirror> mirror_;
};

}  // namespace fleet::rooms::internal_rooms

#endif  // FLEET_SRC_ROOMS_REGISTRY_HPP_
