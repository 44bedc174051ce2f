// fleet::LeaseGuard — holds a lock or leadership for as long as it lives.
//
// It renews the lease on a background thread every ttl/3 and releases it on
// destruction. If a renewal fails because the lease is gone (it expired, or
// the backend stayed unreachable until it did), `on_lost` runs once with the
// reason and the guard stops renewing: whatever the lease protected must stop
// at once, because another instance may hold it now.
//
//   auto lease = coordinator.lock("compaction", 3s, 10s);
//   if (lease.ok() && lease->has_value()) {
//     fleet::LeaseGuard guard(coordinator, **lease,
//                             [&](const absl::Status&) { cancel_compaction(); });
//     compact(guard.lease().fence);
//   }                                                  // released here
//
// Threads: on_lost runs on the guard's thread; it must not destroy the
// guard. All methods are thread-safe. The Coordinator must outlive the guard.
//
// With a ManualClock (tests), move time with advance_stepwise(): it stops at
// each renewal on the way. One advance() past the TTL wakes the guard only
// after the lease expired, and the guard reports it lost.
#ifndef FLEET_LEASE_GUARD_HPP_
#define FLEET_LEASE_GUARD_HPP_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "fleet/coordinator.hpp"
#include "fleet/types.hpp"

namespace fleet {

class LeaseGuard {
 public:
  using LostCallback = std::function<void(const absl::Status& reason)>;

  LeaseGuard(Coordinator& coordinator, Lease lease, LostCallback on_lost = {});
  // Stops renewing and releases the lease if it is still held. Never throws.
  ~LeaseGuard();

  LeaseGuard(const LeaseGuard&) = delete;
  LeaseGuard& operator=(const LeaseGuard&) = delete;

  // True until the lease was lost or released.
  bool held() const;
  // The lease as last renewed (its expires_at moves forward on renewal).
  Lease lease() const;
  // Number of successful renewals so far.
  int renewals() const;

  // Stops renewing and releases now; the status of the release (OK if it
  // was already released by this guard). on_lost will not run afterwards.
  absl::Status release();

 private:
  void run();

  Coordinator& coordinator_;
  LostCallback on_lost_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Lease lease_;       // guarded by mu_
  bool held_ = true;  // guarded by mu_
  bool stop_ = false;
  bool started_ = false;  // the renewal thread runs (the constructor waits for it)
  int renewals_ = 0;
  std::thread thread_;
};

}  // namespace fleet

#endif  // FLEET_LEASE_GUARD_HPP_
