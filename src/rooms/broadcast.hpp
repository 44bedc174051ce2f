// Broadcasts to a room's members on every instance: one channel per room
// ("rooms/<name>/bc/<room>"), which only instances with members of the
// room subscribe to. Each message carries a sequence number per (sender
// incarnation, room), numbered in publish order: a receiver reports the
// broadcasts it missed (a jump), and after an interruption of its
// connection every room that may have missed some. This instance's own
// members get its broadcasts through the same callback queue, in order.
#ifndef FLEET_SRC_ROOMS_BROADCAST_HPP_
#define FLEET_SRC_ROOMS_BROADCAST_HPP_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "internal/mutex.hpp"
#include "rooms/context.hpp"
#include "rooms/members.hpp"

namespace fleet::rooms::internal_rooms {

class Broadcasts {
 public:
  Broadcasts(Context& ctx, LocalRooms& local);

  // The room's broadcasts, for LocalRooms::open.
  absl::StatusOr<Subscription> subscribe(const std::string& room);
  // Publishes, then delivers to this instance's members.
  absl::Status send(const std::string& room, std::string_view payload,
                    const BroadcastOptions& options) ABSL_LOCKS_EXCLUDED(send_mu_, mu_);
  // The connection was interrupted: these rooms may have missed broadcasts
  // (reported as gaps; the sequence numbers start over).
  void interrupted(const std::vector<std::string>& rooms) ABSL_LOCKS_EXCLUDED(mu_);
  // The room closed here.
  void forget(const std::string& room) ABSL_LOCKS_EXCLUDED(mu_);
  void fill(RoomsStats* stats) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void on_message(const std::string& room, const Message& m) ABSL_LOCKS_EXCLUDED(mu_);

  Context& ctx_;
  LocalRooms& local_;
  const std::string incarnation_;  // tells this process's broadcasts from others'
  internal::Mutex send_mu_;        // broadcasts: numbered in publish order
  mutable internal::Mutex mu_;
  std::map<std::string, std::uint64_t> sent_ ABSL_GUARDED_BY(mu_);  // room -> last seq
  // room -> "<sender>/<incarnation>" -> last sequence number received.
  std::map<std::string, std::map<std::string, std::uint64_t>> received_
      ABSL_GUARDED_BY(mu_);
  std::uint64_t sent_count_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t local_only_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t received_count_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t gaps_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fleet::rooms::internal_rooms

#endif  // FLEET_SRC_ROOMS_BROADCAST_HPP_
