// Shared by the example servers that answer end clients (fleet-gateway's
// HTTP bodies, fleet-room-server's WebSocket error frames): what a client
// may be told about a failed fleet call.
//
// A status about the client's own request (a bad room name, no capacity,
// not found) is passed on as it is. Any other status (Redis unreachable, a
// timeout, a failover, an internal error) may name internal infrastructure
// such as Redis's host and port: the client gets a generic text, and the
// server logs the whole status instead (ErrorLog, at most one line a second
// so that an outage does not flood the log).
#ifndef FLEET_EXAMPLES_CLIENT_ERRORS_HPP_
#define FLEET_EXAMPLES_CLIENT_ERRORS_HPP_

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>

#include "absl/status/status.h"

// True for the codes whose message is about the caller's request.
inline bool about_the_request(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kOutOfRange:
      return true;
    default:
      return false;
  }
}

// The text an end client gets for `st`.
inline std::string client_message(const absl::Status& st) {
  if (about_the_request(st.code())) return std::string(st.message());
  if (absl::IsUnavailable(st) || absl::IsDeadlineExceeded(st)) {
    return "the service cannot do this right now; try again";
  }
  return "internal error";
}

// Logs the statuses a client was not told in full, to stderr, prefixed with
// the program's name; while more come within a second they are counted and
// the count is logged with the next line.
class ErrorLog {
 public:
  explicit ErrorLog(std::string program) : program_(std::move(program)) {}

  // `what`: the call that failed ("broadcast", "join").
  void note(const std::string& what, const absl::Status& st) {
    if (about_the_request(st.code())) return;
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    if (now - last_ < std::chrono::seconds(1)) {
      ++suppressed_;
      return;
    }
    last_ = now;
    std::string more;
    if (suppressed_ > 0) more = " (and " + std::to_string(suppressed_) + " more like it)";
    suppressed_ = 0;
    std::fprintf(stderr, "%s: %s failed: %s%s\n", program_.c_str(), what.c_str(),
                 st.ToString().c_str(), more.c_str());
  }

 private:
  const std::string program_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_{};
  long long suppressed_ = 0;
};

#endif  // FLEET_EXAMPLES_CLIENT_ERRORS_HPP_
