// A pause measured on a Clock (between retries): the only way fleet code
// waits without a condition to wait for. A ManualClock's advance() ends it.
#ifndef FLEET_SRC_INTERNAL_SLEEP_HPP_
#define FLEET_SRC_INTERNAL_SLEEP_HPP_

#include <condition_variable>
#include <mutex>

#include "fleet/clock.hpp"

namespace fleet::internal {

inline void sleep_until(Clock* clock, Clock::TimePoint deadline) {
  std::mutex mu;
  std::condition_variable cv;  // nobody notifies it: only the clock ends the wait
  std::unique_lock<std::mutex> lock(mu);
  while (clock->now() < deadline) clock->wait_until(lock, cv, deadline);
}

}  // namespace fleet::internal

#endif  // FLEET_SRC_INTERNAL_SLEEP_HPP_
