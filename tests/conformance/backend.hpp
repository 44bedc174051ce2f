// What the conformance suite needs from a backend under test. Each test
// executable (conformance_local, conformance_redis) defines make_backend();
// the cases in this directory are shared verbatim.
#ifndef FLEET_TESTS_CONFORMANCE_BACKEND_HPP_
#define FLEET_TESTS_CONFORMANCE_BACKEND_HPP_

#include <chrono>
#include <memory>
#include <string>

#include "fleet/coordinator.hpp"

namespace fleet::testing {

class Backend {
 public:
  virtual ~Backend() = default;
  // A new session: one more instance of the fleet, sharing the backend.
  virtual std::unique_ptr<Coordinator> connect() = 0;
  // Lets `d` of backend time pass: advances a ManualClock, or sleeps when
  // the backend keeps real (server) time.
  virtual void advance(std::chrono::milliseconds d) = 0;
  // The session TTL the sessions were created with.
  virtual std::chrono::milliseconds session_ttl() const = 0;
  // A lease TTL that suits this backend's time scale.
  virtual std::chrono::milliseconds lease_ttl() const = 0;

  // ---- faults (faults_test.cpp) -------------------------------------------
  // A new session whose link to the backend can be cut and healed on its
  // own: Redis, through a FaultProxy of its own (with a short command
  // timeout); local, LocalStore::set_reachable.
  virtual std::unique_ptr<Coordinator> connect_cuttable() = 0;
  // Cuts it off: its calls stop getting through. On Redis they hang until
  // the command timeout, and what they sent reaches Redis at heal(): their
  // outcome is unknown, as on a real network. In-process they fail at once.
  virtual void cut(Coordinator& c) = 0;
  virtual void heal(Coordinator& c) = 0;
  // The backend loses all its data, as Redis restarted without persistence
  // (Redis: the server is killed and started again, empty).
  virtual void lose_data() = 0;
};

// Defined once per conformance executable. Each call: a fresh, empty backend.
std::unique_ptr<Backend> make_backend();

}  // namespace fleet::testing

#endif  // FLEET_TESTS_CONFORMANCE_BACKEND_HPP_
