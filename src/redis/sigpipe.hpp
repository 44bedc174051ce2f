// Keeps fleet's writes to a Redis connection that the other end closed from
// raising SIGPIPE, whose default action ends the whole process. hiredis
// writes with write()/send() without MSG_NOSIGNAL, and OpenSSL's socket BIO
// the same way, so a write to a Redis that just died (or restarted) would
// otherwise kill the host. Linux has no per-socket SO_NOSIGPIPE.
//
// Changing the process's disposition (SIG_IGN) would be a surprise to the
// host (its own pipes would stop raising SIGPIPE), so fleet blocks SIGPIPE
// only on the thread doing the I/O, only around the I/O, and discards a
// SIGPIPE that the I/O raised before unblocking it: the failed write shows
// as EPIPE, an Unavailable status.
#ifndef FLEET_SRC_REDIS_SIGPIPE_HPP_
#define FLEET_SRC_REDIS_SIGPIPE_HPP_

#include <signal.h>

namespace fleet::internal {

// Blocks SIGPIPE for the rest of the calling thread's life: fleet's own
// threads (heartbeat agent, subscriber, slot lane) call it once at start,
// and ScopedSigpipeBlock costs them nothing after that.
void block_sigpipe_for_this_thread();

// Blocks SIGPIPE on this thread for the guard's scope; a SIGPIPE raised
// meanwhile by this thread is consumed, not delivered. A no-op on a thread
// that already blocks SIGPIPE (whatever it left pending stays pending).
//
// A write raises SIGPIPE only when it fails (EPIPE), so by default the
// guard looks for one only if note_failure() was called on this thread
// within its scope: a guard around I/O that succeeded costs two system
// calls, not three. kAlways looks in any case (for I/O whose failures do
// not all pass through note_failure()).
class ScopedSigpipeBlock {
 public:
  enum class Check { kOnFailure, kAlways };
  explicit ScopedSigpipeBlock(Check check = Check::kOnFailure);
  ~ScopedSigpipeBlock();
  // Some I/O under the innermost guard of this thread failed.
  static void note_failure();
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  bool active_ = false;
  bool check_always_;
  sigset_t old_mask_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_SIGPIPE_HPP_
