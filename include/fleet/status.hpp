// What a fleet error tells about the call that returned it.
//
// Every fleet call that touches the backend returns absl::Status or
// absl::StatusOr; docs/errors.md lists the codes. Two of them mean the
// call may or may not have taken effect: the backend did not answer in
// time (DeadlineExceeded) or the connection failed while the request was on
// its way (Unavailable). Retrying such a write blindly may do it twice;
// read back first, or use a write that is safe to repeat (a claim, a
// compare-and-set of the value you last read):
//
//   auto st = coordinator->put("rooms", "r1", "node-a");
//   if (fleet::outcome_unknown(st)) {
//     auto now = coordinator->get("rooms", "r1");   // what landed?
//   }
#ifndef FLEET_STATUS_HPP_
#define FLEET_STATUS_HPP_

#include "absl/status/status.h"

namespace fleet {

// True for Unavailable and DeadlineExceeded: the call may have run.
inline bool outcome_unknown(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded;
}

}  // namespace fleet

#endif  // FLEET_STATUS_HPP_
