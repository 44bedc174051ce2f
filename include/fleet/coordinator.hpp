// fleet::Coordinator — the contract every fleet backend implements.
//
// A Coordinator is one session of one instance with the shared backend
// (Redis, or the in-process LocalCoordinator). Through it the instances of a
// service find each other, share load figures, count, lock, elect a leader,
// agree on who owns what, and message each other:
//
//   auto c = fleet::LocalCoordinator::create().value();
//   fleet::InstanceInfo me;
//   me.id = "sfu-1";
//   if (!c->join(me).ok()) return;
//   auto lease = c->try_lock("rebalance", std::chrono::seconds(10));
//   if (lease.ok() && lease->has_value()) {
//     fleet::LeaseGuard guard(*c, **lease, [](const absl::Status&) { stop(); });
//     rebalance((*lease)->fence);          // pass the fencing token along
//   }
//
// Sessions. Each Coordinator has a session id and a session TTL (set in the
// backend's options). The session's membership, node views, owned counter
// contributions and slots — its session-bound state — live as long as the
// session heartbeats; when the process dies, or the Coordinator is
// destroyed without leave(), they expire one session TTL later and everyone
// sees them go. Locks and leaderships have their own TTL and are not
// released by destruction: release them, or hold them through a LeaseGuard.
//
// Faults. A session keeps its own record of its session-bound state: what
// its owner holds. Whenever the backend's copy may differ from it — a call
// whose outcome is unknown (DeadlineExceeded, a dropped connection), the
// session expiring while it was cut off, the backend losing its data — the
// session makes the backend's copy equal to the record again, by itself and
// in one atomic step, as soon as it reaches the backend: it re-joins,
// re-publishes its node views, re-sets its owned contributions, takes again
// the slots it holds (even beyond capacity: they are in use) and frees any
// slot that a failed call took. So an error from acquire_slot or
// owned_counter_add means nothing was taken or added, and release_slot
// cannot fail for want of the backend. Locks and leaderships are never
// re-created: after LOST, renew() says whether a lease survived.
// connection_state() and watch_connection() report the faults; docs/errors.md
// says what each call returns meanwhile.
//
// Errors. Every call that touches the backend returns absl::Status or
// absl::StatusOr, never throws. "Not acquired" or "precondition not met" are
// normal results (nullopt / false), not errors. The codes and what to do
// about each are in docs/errors.md; in short: InvalidArgument (bad name,
// size or TTL: fix the call), Unavailable (backend unreachable: retry),
// DeadlineExceeded (backend too slow: retry), FailedPrecondition (not yours,
// or wrong state: don't retry as is), Aborted (your lease expired: start
// over), AlreadyExists (instance id taken), OutOfRange (counter overflow),
// DataLoss (malformed data found in the backend).
//
// Threads. Every method is safe to call from any thread. Callbacks run on
// the backend's event thread, one at a time, in the order the events
// happened; they may call any Coordinator method except the blocking ones
// (lock() and campaign() with a timeout) and must not destroy the
// Coordinator. See docs/threading.md.
#ifndef FLEET_COORDINATOR_HPP_
#define FLEET_COORDINATOR_HPP_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fleet/subscription.hpp"
#include "fleet/types.hpp"

namespace fleet {

class Coordinator {
 public:
  using Ttl = std::chrono::milliseconds;

  virtual ~Coordinator() = default;

  // This session's id: unique, fixed for the life of the object.
  virtual const std::string& session_id() const = 0;
  // The instance id this session is a member under: set by a successful
  // join(), empty before it and after leave(). It stays set while the
  // session is cut off or LOST (the session re-joins by itself). No round
  // trip. fleet's modules name this instance by it.
  virtual std::string instance_id() const = 0;
  // "local" or "redis".
  virtual std::string_view backend_name() const = 0;
  // The clock this session measures lease expiry and timeouts with. Belongs
  // to whoever passed it in the options (default: real_clock()).
  virtual Clock* clock() const = 0;

  // ---- membership -----------------------------------------------------------

  // Makes this session a member under info.id. Calling it again with the
  // same id updates the info. AlreadyExists if another live session holds
  // the id; FailedPrecondition if this session already joined with another
  // id. Others see MemberEventType::kJoined.
  virtual absl::Status join(const InstanceInfo& info) = 0;

  // Ends this session's membership and drops its node views, owned counter
  // contributions and slots at once (others see kLeft). Locks are
  // untouched. Leaving when not a member is OK. The record is emptied even
  // when the backend cannot be reached (the error is returned): the session
  // then drops the rest as soon as it reaches the backend.
  virtual absl::Status leave() = 0;

  // Live members, ordered by instance id.
  virtual absl::StatusOr<std::vector<Member>> members() = 0;

  // Calls `callback` for every join, leave and expiry from now on. An
  // expiry is reported one session TTL after the member's last heartbeat
  // plus up to one heartbeat interval (Redis: the next sweep; members()
  // stops listing it at the TTL itself).
  virtual absl::StatusOr<Subscription> watch_members(
      std::function<void(const MemberEvent&)> callback) = 0;

  // ---- node state -------------------------------------------------------------

  // Replaces this session's view of `node_id` with `metrics`. The view is
  // dropped when the session leaves or expires. The record takes the new
  // view at once: when the backend cannot be reached (Unavailable,
  // DeadlineExceeded) the session publishes it as soon as it can.
  virtual absl::Status publish_node_state(
      std::string_view node_id, const std::map<std::string, double>& metrics) = 0;

  // Drops this session's view of `node_id` (OK if there was none).
  virtual absl::Status remove_node_state(std::string_view node_id) = 0;

  // Combines the live sessions' views of `node_id`; nullopt when no live
  // session has one.
  virtual absl::StatusOr<std::optional<NodeAggregate>> aggregate(
      std::string_view node_id, const AggregationSpec& spec) = 0;

  // The same for every node with at least one live view, ordered by node id.
  virtual absl::StatusOr<std::vector<NodeAggregate>> aggregate_all(
      const AggregationSpec& spec) = 0;

  // ---- counters ---------------------------------------------------------------

  // Atomically adds `delta` to a shared counter (created at 0); returns the
  // new value. Shared counters never expire.
  virtual absl::StatusOr<std::int64_t> counter_add(std::string_view name,
                                                   std::int64_t delta) = 0;
  virtual absl::StatusOr<std::int64_t> counter_get(std::string_view name) = 0;

  // Owned counters: each session adds to its own contribution; the value is
  // the sum over live sessions, so a crashed instance's contribution (its
  // in-flight requests, say) disappears with it. Returns the new sum. An
  // error means the contribution is unchanged (an addition the backend made
  // for a call that then failed is undone).
  virtual absl::StatusOr<std::int64_t> owned_counter_add(std::string_view name,
                                                         std::int64_t delta) = 0;
  virtual absl::StatusOr<std::int64_t> owned_counter_get(std::string_view name) = 0;

  // ---- slot pools -------------------------------------------------------------
  // Slots are owned by the session that took them: leave() frees them at
  // once; when the session expires they are freed for everyone (the local
  // backend at the expiry, Redis by the next sweep: at most one heartbeat
  // interval later). Nothing leaks when an instance crashes, and nothing
  // leaks when calls fail: the backend holds exactly the slots this
  // session's owner holds (see Faults above).

  // Chooses a target as `request` describes (see SlotRequest) and takes one
  // slot on it, atomically over all sessions: concurrent calls never take
  // more than a target's capacity. nullopt when no candidate has room.
  // An error means no slot is held. Unavailable while the backend is
  // unreachable, while the session cannot re-establish itself in time, and
  // (Redis) for RedisOptions::data_loss_grace after the backend lost its
  // data, so that every session takes back the slots it holds first.
  virtual absl::StatusOr<std::optional<SlotGrant>> acquire_slot(
      std::string_view pool, const SlotRequest& request) = 0;

  // acquire_slot without waiting for the answer: `done` gets exactly what
  // acquire_slot would have returned, exactly once. On Redis it runs on the
  // session's slot I/O thread, which sends the decisions queued meanwhile in
  // one write and those that differ only by `rotate` in one script call
  // (each still its own decision; those on one request in the order
  // submitted, see docs/threading.md); the in-process
  // backend calls it before returning. Many decisions in flight from few
  // threads: the way to route at the rate Redis allows. `done` must be
  // quick, must not throw and must not destroy this Coordinator; it may call
  // it. Decisions still pending when the Coordinator is destroyed get
  // Cancelled (a slot taken meanwhile is freed with the session). Returns
  // InvalidArgument, deciding nothing, only when `done` is empty; every
  // other outcome goes to `done`.
  using SlotCallback = std::function<void(absl::StatusOr<std::optional<SlotGrant>>)>;
  virtual absl::Status acquire_slot_async(std::string_view pool,
                                          const SlotRequest& request, SlotCallback done) {
    if (!done) return absl::InvalidArgumentError("acquire_slot_async needs a callback");
    done(acquire_slot(pool, request));
    return absl::OkStatus();
  }

  // Frees one of this session's slots on `target`: in the session's record
  // at once, and in the backend in the same call when it can be reached,
  // else as soon as it can (OK either way: don't retry). FailedPrecondition
  // if the record holds none there (never taken, or already freed).
  virtual absl::Status release_slot(std::string_view pool, std::string_view target) = 0;

  // Slots in use per target over all live sessions; targets at 0 are absent.
  virtual absl::StatusOr<std::map<std::string, std::int64_t>> slot_usage(
      std::string_view pool) = 0;

  // ---- locks ------------------------------------------------------------------

  // Takes the lock if it is free; nullopt if another lease holds it.
  // `ttl` must be positive. Holding it again from the same session is not
  // re-entrant: it returns nullopt too.
  virtual absl::StatusOr<std::optional<Lease>> try_lock(std::string_view name,
                                                        Ttl ttl) = 0;

  // Like try_lock, but waits up to `timeout` for the lock to be released or
  // to expire; waiters are woken by the release, not by polling. nullopt
  // when the timeout passed. A zero timeout is try_lock.
  virtual absl::StatusOr<std::optional<Lease>> lock(
      std::string_view name, Ttl ttl, std::chrono::milliseconds timeout) = 0;

  // Releases a lock or leadership. FailedPrecondition if `lease` belongs to
  // another session; Aborted if it already expired or was released (someone
  // else may hold it now: whatever it protected must be redone).
  virtual absl::Status release(const Lease& lease) = 0;

  // Extends the lease by its ttl from now; returns the lease with the new
  // expires_at. Errors as for release().
  virtual absl::StatusOr<Lease> renew(const Lease& lease) = 0;

  absl::Status unlock(const Lease& lease) { return release(lease); }

  // ---- leader election --------------------------------------------------------

  // Becomes leader of `election` with `value` if there is none, waiting up
  // to `timeout` (zero: don't wait). nullopt when someone else still leads.
  // The returned lease is renewed and released like a lock's.
  virtual absl::StatusOr<std::optional<Lease>> campaign(
      std::string_view election, std::string_view value, Ttl ttl,
      std::chrono::milliseconds timeout) = 0;

  absl::Status resign(const Lease& lease) { return release(lease); }

  // The current leader, or nullopt.
  virtual absl::StatusOr<std::optional<Leader>> leader(std::string_view election) = 0;

  // Calls `callback` with the current leader (or nullopt) at once, then on
  // every change: a new leader, or nullopt after a resignation or expiry.
  virtual absl::StatusOr<Subscription> observe_leader(
      std::string_view election,
      std::function<void(const std::optional<Leader>&)> callback) = 0;

  // ---- maps -------------------------------------------------------------------
  // A map is a named set of key -> value entries, keys and values any bytes.
  // `ttl` zero means the entry never expires; negative is InvalidArgument.

  // Sets key to value only if absent, atomically: of many concurrent claims
  // exactly one returns claimed == true; all return the winning entry.
  // Unavailable or DeadlineExceeded (fleet::outcome_unknown) means the
  // claim may have been stored: claim again with the same value; if the
  // entry returned holds that value, the caller owns it.
  virtual absl::StatusOr<ClaimResult> claim(std::string_view map, std::string_view key,
                                            std::string_view value,
                                            Ttl ttl = Ttl::zero()) = 0;

  // Sets key to value unconditionally; returns the new entry.
  virtual absl::StatusOr<Entry> put(std::string_view map, std::string_view key,
                                    std::string_view value, Ttl ttl = Ttl::zero()) = 0;

  virtual absl::StatusOr<std::optional<Entry>> get(std::string_view map,
                                                   std::string_view key) = 0;

  // Sets key to `value` only if it currently holds `expected`; false
  // otherwise (including when the key is absent).
  virtual absl::StatusOr<bool> compare_and_set(std::string_view map, std::string_view key,
                                               std::string_view expected,
                                               std::string_view value,
                                               Ttl ttl = Ttl::zero()) = 0;

  // Deletes key only if it currently holds `expected`.
  virtual absl::StatusOr<bool> compare_and_delete(std::string_view map,
                                                  std::string_view key,
                                                  std::string_view expected) = 0;

  // Deletes key; false if it was absent.
  virtual absl::StatusOr<bool> erase(std::string_view map, std::string_view key) = 0;

  // Entries whose key starts with `key_prefix`, ordered by key; at most
  // `limit` of them (0: no limit).
  virtual absl::StatusOr<std::vector<MapEntry>> scan(std::string_view map,
                                                     std::string_view key_prefix = {},
                                                     std::size_t limit = 0) = 0;

  // Applies `ops` to `map` in order, as one atomic step: no other write to
  // the map comes between them, and every watcher sees their changes in this
  // order. Each behaves exactly as its single call would at that point
  // (a later op sees what earlier ones wrote); the results come in the same
  // order. 0 to kMaxMapBatchOps operations, kMaxMapBatchBytes together,
  // else InvalidArgument (as is any key or value its single call refuses);
  // nothing is applied then. DataLoss, with nothing applied, when a
  // compare-and-set or compare-and-delete would read a malformed stored
  // entry. One round trip on Redis: the way to write many entries fast.
  virtual absl::StatusOr<std::vector<MapOpResult>> apply(
      std::string_view map, const std::vector<MapOp>& ops) = 0;

  // ---- watches ----------------------------------------------------------------

  // Calls `callback` for every set, delete and expiry in `map` whose key
  // starts with `key_prefix`, from now on, in the order of the changes.
  virtual absl::StatusOr<Subscription> watch(
      std::string_view map, std::string_view key_prefix,
      std::function<void(const WatchEvent&)> callback) = 0;

  // ---- messaging --------------------------------------------------------------

  // Sends `payload` to every current subscriber of `channel`, on every
  // instance (including this one). Messages of one publisher arrive in the
  // order published. At-most-once: a subscriber that is disconnected misses
  // them (Message::sequence shows the gap).
  virtual absl::Status publish(std::string_view channel, std::string_view payload) = 0;

  virtual absl::StatusOr<Subscription> subscribe(
      std::string_view channel, std::function<void(const Message&)> callback) = 0;

  // ---- connection state -------------------------------------------------------

  virtual ConnectionState connection_state() const = 0;

  // How many times this session found that the backend had lost its data
  // (Redis restarted without persistence, or failed over to a replica that
  // had not caught up): 0 while that never happened. The session-bound state
  // is re-established by the session itself; what is not — map entries,
  // shared counters, locks — may be gone: a module re-publishes what it
  // owns when this grows (fleet::router re-registers its pool's nodes). It
  // has grown by the time watch_connection() reports the kReconnected that
  // follows the loss.
  virtual std::uint64_t data_losses() const = 0;

  // Calls `callback` with the current state at once, then on every change.
  virtual absl::StatusOr<Subscription> watch_connection(
      std::function<void(ConnectionState)> callback) = 0;
};

}  // namespace fleet

#endif  // FLEET_COORDINATOR_HPP_
