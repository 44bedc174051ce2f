#include "fleet/lease_guard.hpp"

#include <algorithm>

#include "fleet/status.hpp"

namespace fleet {

LeaseGuard::LeaseGuard(Coordinator& coordinator, Lease lease, LostCallback on_lost)
    : coordinator_(coordinator), on_lost_(std::move(on_lost)), lease_(std::move(lease)) {
  thread_ = std::thread([this] { run(); });
  // Renewing by the time the constructor returns: the thread holds mu_ from
  // setting started_ until it waits on the clock (or renews), so a
  // ManualClock advanced right after this sees the guard's deadline.
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return started_; });
}

LeaseGuard::~LeaseGuard() {
  (void)release();
  if (thread_.joinable()) thread_.join();  // release() may have run from on_lost
}

bool LeaseGuard::held() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_;
}

Lease LeaseGuard::lease() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lease_;
}

int LeaseGuard::renewals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return renewals_;
}

absl::Status LeaseGuard::release() {
  bool was_held = false;
  Lease lease;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return absl::OkStatus();
    stop_ = true;
    was_held = held_;
    held_ = false;
    lease = lease_;
  }
  cv_.notify_all();
  // From on_lost (the guard's own thread) there is nothing to join or release.
  if (std::this_thread::get_id() == thread_.get_id()) return absl::OkStatus();
  thread_.join();
  return was_held ? coordinator_.release(lease) : absl::OkStatus();
}

// Renews every ttl/3, so that two renewals may fail before the lease is at
// risk. A transient error (backend unreachable, slow) is retried at ttl/10
// until the lease's own expiry estimate has passed; a definite one (Aborted,
// FailedPrecondition) ends the lease at once.
void LeaseGuard::run() {
  Clock* clock = coordinator_.clock();
  std::unique_lock<std::mutex> lock(mu_);
  started_ = true;
  cv_.notify_all();
  const auto period =
      std::max<Clock::TimePoint::duration>(lease_.ttl / 3, std::chrono::milliseconds(1));
  const auto retry =
      std::max<Clock::TimePoint::duration>(lease_.ttl / 10, std::chrono::milliseconds(1));
  // Counted from the grant, not from when this thread got going.
  Clock::TimePoint next = lease_.expires_at - lease_.ttl + period;
  while (!stop_) {
    if (clock->now() < next) {
      clock->wait_until(lock, cv_, next);
      continue;
    }
    Lease current = lease_;
    lock.unlock();
    absl::StatusOr<Lease> renewed = coordinator_.renew(current);
    lock.lock();
    if (stop_) break;
    if (renewed.ok()) {
      lease_ = *renewed;
      ++renewals_;
      next = clock->now() + period;
      continue;
    }
    const bool transient = outcome_unknown(renewed.status());
    if (transient && clock->now() < current.expires_at) {
      next = clock->now() + retry;
      continue;
    }
    held_ = false;
    absl::Status reason =
        transient
            ? absl::AbortedError("lease expired while the backend was unreachable: " +
                                 std::string(renewed.status().message()))
            : renewed.status();
    LostCallback on_lost = on_lost_;
    lock.unlock();
    if (on_lost) on_lost(reason);
    lock.lock();
    break;
  }
}

}  // namespace fleet
