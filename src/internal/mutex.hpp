// A std::mutex that clang's thread-safety analysis understands
// (-Wthread-safety): members marked ABSL_GUARDED_BY(mu_) may only be
// touched with mu_ held, and functions marked
// ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) only be called so; the compiler checks
// it. It stays a std::mutex underneath because fleet's waits go through a
// Clock (Clock::wait_until takes a std::unique_lock<std::mutex>), so that a
// ManualClock can wake them.
//
//   Mutex mu_;
//   int n_ ABSL_GUARDED_BY(mu_);
//   void bump() { MutexLock lock(mu_); ++n_; }
//   void wait_for_n(Clock* clock, TimePoint deadline) {
//     MutexLock lock(mu_);
//     while (n_ == 0 && clock->now() < deadline)
//       clock->wait_until(lock.native(), cv_, deadline);
//   }
//
// Condition-variable predicates written as lambdas are analysed as separate
// functions (which do not hold the lock): write waits as loops, as above.
#ifndef FLEET_SRC_INTERNAL_MUTEX_HPP_
#define FLEET_SRC_INTERNAL_MUTEX_HPP_

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace fleet::internal {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // Tells the analysis that the calling thread holds the lock (for code it
  // cannot follow, such as a callback known to run under it).
  void assert_held() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// Holds a Mutex for its scope. unlock() / lock() let a scope release it in
// the middle (to call out, or to wait).
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : lock_(mu.mu_) {}
  ~MutexLock() ABSL_UNLOCK_FUNCTION() = default;
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void unlock() ABSL_UNLOCK_FUNCTION() { lock_.unlock(); }
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { lock_.lock(); }

  // For Clock::wait_until and std::condition_variable: they release the
  // lock while they wait and hold it again when they return.
  std::unique_lock<std::mutex>& native() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_INTERNAL_MUTEX_HPP_
