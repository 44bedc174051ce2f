// The rooms this instance has members in. Each has its members (identity
// -> metadata), a mirror of the room's map (a copy of its state, and the
// participant events of every instance's members), and a subscription to
// its broadcasts. A member's entries are the participant in the room map
// and "<room>\n<identity>" in this instance's index map (what a survivor
// removes when this instance dies); a write that failed is undone, and an
// undo that failed is retried at every check.
#ifndef FLEET_SRC_ROOMS_MEMBERS_HPP_
#define FLEET_SRC_ROOMS_MEMBERS_HPP_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "internal/mutex.hpp"
#include "module/map_mirror.hpp"
#include "rooms/context.hpp"

namespace fleet::rooms::internal_rooms {

class LocalRooms {
 public:
  // Subscribes to a room's broadcasts (Broadcasts::subscribe).
  using Subscribe = std::function<absl::StatusOr<Subscription>(const std::string& room)>;
  LocalRooms(Context& ctx, Subscribe subscribe)
      : ctx_(ctx), subscribe_(std::move(subscribe)) {}
  ~LocalRooms();  // stop()
  // Cancels every room's mirror and subscription.
  void stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Opens `room` here (mirror, broadcasts) unless it is open.
  absl::Status open(const std::string& room) ABSL_LOCKS_EXCLUDED(mu_);
  // Closes it when it has no member here; returns whether it did.
  bool close_if_unused(const std::string& room) ABSL_LOCKS_EXCLUDED(mu_);

  // Writes the member's index entry and participant entry.
  absl::Status write_member(const std::string& room, const std::string& identity,
                            const std::string& metadata);
  // Takes them back now, or (failing that) at a later check.
  void undo_member(const std::string& room, const std::string& identity,
                   const std::string& metadata) ABSL_LOCKS_EXCLUDED(mu_);
  // Retries the undos; appends the rooms they emptied to *emptied.
  absl::Status retry_undos(std::vector<std::string>* emptied) ABSL_LOCKS_EXCLUDED(mu_);

  void add(const std::string& room, const std::string& identity,
           const std::string& metadata) ABSL_LOCKS_EXCLUDED(mu_);
  // Removes a member here; its metadata, or nullopt if it was none.
  std::optional<std::string> remove(const std::string& room, const std::string& identity)
      ABSL_LOCKS_EXCLUDED(mu_);

  bool has_members(const std::string& room) const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::string> members(const std::string& room) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // The room's members here minus `except`; nullopt when it is not open.
  std::optional<std::vector<std::string>> recipients(
      const std::string& room, const std::vector<std::string>& except) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // The open rooms.
  std::vector<std::string> rooms() const ABSL_LOCKS_EXCLUDED(mu_);
  // The fleet.participants reply: "<n>:<identity><n>:<metadata>"...
  std::string participants_reply(const std::string& room) const ABSL_LOCKS_EXCLUDED(mu_);

  // After a data loss: the rooms' metadata and flags as the copies knew
  // them (claims), and our members' entries. Returns the rooms written.
  absl::StatusOr<std::size_t> republish() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct LocalRoom {
    std::map<std::string, std::string> members;  // identity -> metadata
    RoomState copy;                              // the room map, as told
    bool loading = true;                         // the first read: no events
    std::shared_ptr<internal::MapMirror> changes;
    Subscription broadcasts;
  };
  struct Undo {
    std::string room, identity, metadata;
  };
  void on_change(const std::string& room, const internal::MapMirror::Change& ch)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status remove_entries(const Undo& u) ABSL_LOCKS_EXCLUDED(mu_);

  Context& ctx_;
  const Subscribe subscribe_;
  mutable internal::Mutex mu_;
  std::map<std::string, LocalRoom, std::less<>> rooms_ ABSL_GUARDED_BY(mu_);
  std::vector<Undo> undos_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fleet::rooms::internal_rooms

#endif  // FLEET_SRC_ROOMS_MEMBERS_HPP_
