// A write to a connection whose other end is gone must not end the process
// with SIGPIPE (src/redis/sigpipe.hpp).
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "catch.hpp"
#include "redis/sigpipe.hpp"

namespace fleet::testing {
namespace {

bool sigpipe_blocked() {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, SIGPIPE) == 1;
}

bool sigpipe_pending() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGPIPE) == 1;
}

// write() (not send(..., MSG_NOSIGNAL)), as hiredis and OpenSSL do.
int write_to_closed_peer() {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  ::close(fds[1]);
  const ssize_t n = ::write(fds[0], "x", 1);
  const int err = n < 0 ? errno : 0;
  ::close(fds[0]);
  return err;
}

TEST_CASE(
    "a write to a closed peer under ScopedSigpipeBlock is EPIPE, not a dead process",
    "[sigpipe]") {
  // SIGPIPE's default action (terminate) is in force in this process.
  struct sigaction current {};
  REQUIRE(sigaction(SIGPIPE, nullptr, &current) == 0);
  REQUIRE(current.sa_handler == SIG_DFL);
  REQUIRE_FALSE(sigpipe_blocked());
  {
    internal::ScopedSigpipeBlock guard;
    CHECK(sigpipe_blocked());
    CHECK(write_to_closed_peer() == EPIPE);        // without the guard: killed here
    internal::ScopedSigpipeBlock::note_failure();  // as RedisConnection::io_error does
  }
  // The mask is as it was, and the SIGPIPE raised was taken, not left.
  CHECK_FALSE(sigpipe_blocked());
  CHECK_FALSE(sigpipe_pending());

  // Check::kAlways takes it without being told of the failure.
  {
    internal::ScopedSigpipeBlock guard(internal::ScopedSigpipeBlock::Check::kAlways);
    CHECK(write_to_closed_peer() == EPIPE);
  }
  CHECK_FALSE(sigpipe_blocked());
  CHECK_FALSE(sigpipe_pending());

  // A guard around I/O that succeeded only blocks and restores.
  {
    internal::ScopedSigpipeBlock guard;
    CHECK(sigpipe_blocked());
  }
  CHECK_FALSE(sigpipe_blocked());
}

TEST_CASE("a thread that blocks SIGPIPE itself keeps its mask and its pending signal",
          "[sigpipe]") {
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  REQUIRE(pthread_sigmask(SIG_BLOCK, &set, &old) == 0);
  {
    internal::ScopedSigpipeBlock guard;
    CHECK(write_to_closed_peer() == EPIPE);
  }
  CHECK(sigpipe_blocked());
  CHECK(sigpipe_pending());  // the host's to deal with, as it chose
  const timespec zero{0, 0};
  CHECK(sigtimedwait(&set, nullptr, &zero) == SIGPIPE);
  REQUIRE(pthread_sigmask(SIG_SETMASK, &old, nullptr) == 0);
}

}  // namespace
}  // namespace fleet::testing
