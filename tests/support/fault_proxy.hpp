// A TCP proxy on 127.0.0.1 in front of one loopback server port, for fault
// tests: it stalls connections (nothing forwarded either way, as a network
// that holds packets back; what was sent is delivered when the stall ends,
// even after its sender gave up and closed), drops them (every connection
// reset at once), and delays what it forwards. One
// thread, stopped (and every connection closed) by the destructor.
//
//   auto proxy = FaultProxy::start(redis.port()).value();
//   options.url = proxy->url();
//   proxy->stall(true);   // calls through it time out
//   proxy->stall(false);  // held bytes flow again
#ifndef FLEET_TESTS_SUPPORT_FAULT_PROXY_HPP_
#define FLEET_TESTS_SUPPORT_FAULT_PROXY_HPP_

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace fleet::testing {

class FaultProxy {
 public:
  static absl::StatusOr<std::unique_ptr<FaultProxy>> start(int target_port);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

  // While on, nothing is read or written on any connection (new ones are
  // accepted and wait too); bytes held are forwarded when it ends.
  void stall(bool on);
  // Resets every open connection now (what they had in flight is lost).
  void drop();
  // Every chunk is forwarded this long after it arrived (0: at once).
  void delay(std::chrono::milliseconds d);

 private:
  struct Chunk {
    std::chrono::steady_clock::time_point ready;
    std::string bytes;
  };
  struct Pipe {
    int client = -1, upstream = -1;
    std::deque<Chunk> to_upstream, to_client;
    bool client_eof = false, upstream_eof = false;
  };

  FaultProxy(int listen_fd, int port, int target_port, int wake_read, int wake_write);
  void run();
  void wake() const;
  // One connection's turn: read what is ready, write what is due. False
  // when it is finished (both sides closed and nothing left to send).
  bool serve(Pipe& p, short client_events, short upstream_events,
             std::chrono::milliseconds delay);
  static void close_pipe(Pipe& p, bool reset);

  const int listen_fd_, port_, target_port_;
  const int wake_read_, wake_write_;

  mutable std::mutex mu_;
  bool stop_ = false, stalled_ = false, drop_ = false;
  std::chrono::milliseconds delay_{0};

  std::vector<Pipe> pipes_;  // the proxy thread's
  std::thread thread_;
};

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_FAULT_PROXY_HPP_
