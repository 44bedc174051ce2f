// fleet::LocalCoordinator — the complete in-process backend.
//
// Same contract as the Redis backend (the same conformance suite passes on
// both), with state in memory: for single-instance deployments, as the
// fallback when Redis is unreachable, and as the fake a host application
// uses in its own unit tests. Several sessions may share one LocalStore to
// act as several instances of a fleet inside one process:
//
//   fleet::ManualClock clock;
//   fleet::LocalOptions options;
//   options.clock = &clock;
//   options.session_ttl = std::chrono::seconds(5);
//   auto store = fleet::LocalStore::create(options).value();
//   auto a = fleet::LocalCoordinator::connect(store).value();
//   auto b = fleet::LocalCoordinator::connect(store).value();
//   b.reset();                                 // instance b "crashes"
//   clock.advance(std::chrono::seconds(6));    // b's membership expires
//
// A live LocalCoordinator heartbeats implicitly (it is in the same process);
// a destroyed one behaves like a crashed instance: its membership, node
// views and owned counter contributions expire one session_ttl later.
//
// Faults on demand, for tests of code that uses fleet: LocalStore can cut a
// session off (as a network partition would) and lose all its data (as a
// Redis restart without persistence would); sessions then behave as Redis
// sessions do — SUSPENDED, LOST, re-established, RECONNECTED:
//
//   store->set_reachable(b_session_id, false);  // b's calls: Unavailable
//   clock.advance(std::chrono::seconds(6));     // b expires for everyone
//   store->set_reachable(b_session_id, true);   // b is back with its state
//
// Threads: each LocalStore runs one event thread (all callbacks, in order)
// and one expiry thread that waits on the clock. See docs/threading.md and
// docs/local-coordinator.md.
#ifndef FLEET_LOCAL_COORDINATOR_HPP_
#define FLEET_LOCAL_COORDINATOR_HPP_

#include <chrono>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "fleet/clock.hpp"
#include "fleet/coordinator.hpp"
#include "fleet/log.hpp"

namespace fleet {

struct LocalOptions {
  // Drives every TTL and timeout. Default (nullptr): real_clock(). Must
  // outlive the store and every session.
  Clock* clock = nullptr;
  // Default (nullptr): stderr_log_sink(). Must outlive the store.
  LogSink* log_sink = nullptr;
  LogLevel log_level = LogLevel::kInfo;
  // How long a destroyed session's membership, node views and owned counter
  // contributions outlive it. Must be positive. Default: 5 s.
  std::chrono::milliseconds session_ttl{5000};
};

// The shared in-memory state: what Redis is for the Redis backend. Opaque;
// lives as long as any session or subscription that uses it.
class LocalStore {
 public:
  // InvalidArgument if session_ttl is not positive.
  static absl::StatusOr<std::shared_ptr<LocalStore>> create(
      const LocalOptions& options = {});
  virtual ~LocalStore() = default;

  // ---- faults, for tests ----------------------------------------------------

  // Cuts the session `session_id` (Coordinator::session_id()) off the store,
  // or heals it. While cut, its calls fail with Unavailable and change
  // nothing but its record (release_slot still succeeds; publish_node_state
  // and leave update the record), it stops heartbeating and its connection
  // state goes SUSPENDED; once session_ttl has passed it expires for
  // everyone (LOST for it). Healed, it makes the store hold its record again
  // and goes RECONNECTED. NotFound for a session that is not open.
  virtual absl::Status set_reachable(std::string_view session_id, bool reachable) = 0;

  // Loses everything, as Redis restarted without persistence does: members,
  // node views, counters, slots, locks and leaderships (their fencing tokens
  // still grow), map entries (their versions start again). Every open
  // session notices (data_losses() grows), goes LOST and re-establishes its
  // record (RECONNECTED); a cut one does so when healed. Nothing is
  // announced for what was lost (no watch or leader events), as on Redis.
  virtual void lose_data() = 0;

  // Blocks until every event posted so far (watch changes, member events,
  // pub/sub messages, connection states) has been delivered to its
  // subscriber. For tests: after it, a change one session made is in every
  // other session's mirrored views. Returns at once on the event thread.
  virtual void drain_events() = 0;

 protected:
  LocalStore() = default;
};

class LocalCoordinator {
 public:
  // A new session on `store`. InvalidArgument if store is null.
  static absl::StatusOr<std::unique_ptr<Coordinator>> connect(
      std::shared_ptr<LocalStore> store);

  // A session on a new private store: the single-instance case.
  // InvalidArgument if options are invalid.
  static absl::StatusOr<std::unique_ptr<Coordinator>> create(
      const LocalOptions& options = {});
};

}  // namespace fleet

#endif  // FLEET_LOCAL_COORDINATOR_HPP_
