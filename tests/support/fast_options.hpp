// RedisOptions for tests against a local redis-server: short TTLs and
// timeouts, so faults show within a fraction of a second.
#ifndef FLEET_TESTS_SUPPORT_FAST_OPTIONS_HPP_
#define FLEET_TESTS_SUPPORT_FAST_OPTIONS_HPP_

#include <chrono>
#include <string>

#include "fleet/redis_coordinator.hpp"

namespace fleet::testing {

inline RedisOptions fast_options(const std::string& url, LogSink* sink,
                                 const std::string& ns) {
  using std::chrono::milliseconds;
  RedisOptions o;
  o.url = url;
  o.namespace_name = ns;
  o.heartbeat_interval = milliseconds(100);
  o.session_ttl = milliseconds(300);
  o.connect_timeout = milliseconds(500);
  o.command_timeout = milliseconds(500);
  o.reconnect_backoff_min = milliseconds(20);
  o.reconnect_backoff_max = milliseconds(200);
  o.log_sink = sink;
  return o;
}

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_FAST_OPTIONS_HPP_
