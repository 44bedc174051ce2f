// Shared by the example HTTP servers (fleet-gateway, fake-backend): integer
// flags, binding, then serving until SIGTERM, SIGINT or a time limit.
#ifndef FLEET_EXAMPLES_SERVE_HPP_
#define FLEET_EXAMPLES_SERVE_HPP_

#include <httplib.h>

#include <csignal>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "flags.hpp"
#include "stop_after.hpp"

namespace serve_detail {
inline httplib::Server* running = nullptr;
inline void on_signal(int) {
  if (running != nullptr) running->stop();
}
}  // namespace serve_detail

// Binds `svr` to host:port (port 0: any free port); returns the port, or -1.
inline int bind_server(httplib::Server& svr, const std::string& host, int port) {
  if (port == 0) return svr.bind_to_any_port(host);
  return svr.bind_to_port(host, port) ? port : -1;
}

// Calls `ready` (say where it listens), then serves until SIGTERM or SIGINT,
// or until `max_seconds` pass (0: no limit).
inline void serve(httplib::Server& svr, int max_seconds,
                  const std::function<void()>& ready) {
  serve_detail::running = &svr;
  std::signal(SIGTERM, serve_detail::on_signal);
  std::signal(SIGINT, serve_detail::on_signal);
  std::unique_ptr<StopAfter> limit;
  if (max_seconds > 0) {
    limit = std::make_unique<StopAfter>(std::chrono::seconds(max_seconds),
                                        [&svr] { svr.stop(); });
  }
  ready();
  svr.listen_after_bind();
  serve_detail::running = nullptr;
}

#endif  // FLEET_EXAMPLES_SERVE_HPP_
