// Reading back the sessions this instance owns, or believes it owns, or
// tried to create, when a write's outcome is unknown or a compare-and-set
// found another value: the stored copy decides. Ours when it has our owner
// name and fencing token; lost otherwise — or, when it is missing because
// the backend lost its data, put back. A create that returned an error is
// made not to exist (deleted if it landed after all).
#ifndef FLEET_SRC_RELAY_READ_BACK_HPP_
#define FLEET_SRC_RELAY_READ_BACK_HPP_

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "fleet/coordinator.hpp"
#include "fleet/relay.hpp"
#include "internal/logger.hpp"
#include "relay/copies.hpp"

namespace fleet::relay::internal_relay {

class ReadBack {
 public:
  using LostFn = std::function<void(SessionEvent)>;
  // `fence`: this incarnation's token (set before the first call).
  ReadBack(Coordinator& c, const RelayOptions& o, const std::string& me,
           const std::uint64_t& fence, Copies& copies, const internal::Logger& log,
           LostFn lost)
      : c_(c),
        o_(o),
        me_(me),
        fence_(fence),
        copies_(copies),
        log_(log),
        lost_(std::move(lost)) {}

  // Our copy of an own session, read back first when a write's outcome was
  // unknown. NotFound / FailedPrecondition when it is not ours.
  absl::StatusOr<Copy> own_copy(std::string_view id);
  // Makes our copy of `id` equal to the stored one (see above). OK: it is
  // ours (or changed under the read: try again); NotFound /
  // FailedPrecondition: it is not (kLost was reported if we believed it).
  absl::Status resolve(const std::string& id);
  // Deletes a create that returned an error if it landed (only the exact
  // record we tried to write).
  absl::Status roll_back(const std::string& id);

 private:
  Coordinator& c_;
  const RelayOptions& o_;
  const std::string& me_;
  const std::uint64_t& fence_;
  Copies& copies_;
  const internal::Logger& log_;
  const LostFn lost_;
};

}  // namespace fleet::relay::internal_relay

#endif  // FLEET_SRC_RELAY_READ_BACK_HPP_
