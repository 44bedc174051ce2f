#include "redis/sigpipe.hpp"

#include <pthread.h>

#include <cerrno>
#include <ctime>

namespace fleet::internal {
namespace {

// Set on threads that block SIGPIPE for good (fleet's own).
thread_local bool sigpipe_blocked_for_good = false;
// Set by note_failure(), cleared by each active guard.
thread_local bool io_failed = false;

sigset_t sigpipe_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  return set;
}

}  // namespace

void block_sigpipe_for_this_thread() {
  const sigset_t set = sigpipe_set();
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0) sigpipe_blocked_for_good = true;
}

void ScopedSigpipeBlock::note_failure() { io_failed = true; }

ScopedSigpipeBlock::ScopedSigpipeBlock(Check check)
    : check_always_(check == Check::kAlways) {
  if (sigpipe_blocked_for_good) return;
  const sigset_t set = sigpipe_set();
  if (pthread_sigmask(SIG_BLOCK, &set, &old_mask_) != 0) return;
  // Already blocked by the host: leave its mask and its pending signals be.
  active_ = sigismember(&old_mask_, SIGPIPE) == 0;
  if (active_) io_failed = false;
}

ScopedSigpipeBlock::~ScopedSigpipeBlock() {
  if (!active_) return;
  // SIGPIPE was not blocked before, so a pending one is ours (raised by a
  // write on this thread, which is where the kernel sends it): take it.
  sigset_t pending;
  if ((check_always_ || io_failed) && sigpending(&pending) == 0 &&
      sigismember(&pending, SIGPIPE) == 1) {
    const sigset_t set = sigpipe_set();
    const timespec zero{0, 0};
    while (sigtimedwait(&set, nullptr, &zero) == -1 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

}  // namespace fleet::internal
