// What a Redis session's owner holds of its session-bound state — node
// views, owned counter contributions, slots (membership is the session's
// joined_ info) — and the gate that keeps Redis's copy equal to it.
//
// Every write to session-bound state carries the session's sync epoch, and
// the scripts refuse one whose epoch is not the epoch Redis holds for the
// session ("stale"). sync.lua sets Redis's copy to the record and the epoch
// to a new one in one atomic step, so a write sent before it — one that
// timed out and is still on its way, say — can no longer land after it.
//
// For the record to include the outcome of every write that may have
// landed before the sync, no write is in flight while a sync takes its
// snapshot: begin_sync() stops new writes (begin_write() waits, and
// try_begin_write() fails) and waits for those in flight to end, which each
// does within the command timeout. Syncs are rare (after faults); a write
// pays two uncontended mutex round trips.
//
// Thread-safe. The mutex is a leaf: nothing is called while holding it.
#ifndef FLEET_SRC_REDIS_LEDGER_HPP_
#define FLEET_SRC_REDIS_LEDGER_HPP_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "fleet/clock.hpp"
#include "internal/mutex.hpp"

namespace fleet::internal {

class SessionLedger {
 public:
  struct Record {
    std::map<std::string, std::string> views;   // node id -> encoded view
    std::map<std::string, std::int64_t> owned;  // counter -> contribution (non-zero)
    // pool -> target -> slots held (positive)
    std::map<std::string, std::map<std::string, std::int64_t>> slots;
  };
  struct Snapshot {
    std::uint64_t epoch = 0;
    Record record;
  };

  // `wake_agent` runs (without the mutex) when a sync is wanted: it wakes
  // the thread that runs syncs. `on_synced` runs after each sync ends.
  // await_sync's timeout is measured on `clock`.
  SessionLedger(Clock* clock, std::function<void()> wake_agent,
                std::function<void()> on_synced)
      : clock_(clock),
        wake_agent_(std::move(wake_agent)),
        on_synced_(std::move(on_synced)) {}

  // Starts a write: waits while a sync takes its snapshot; returns the epoch
  // to send. Every begin_write is paired with one end_write.
  std::uint64_t begin_write();
  // For the slot I/O thread, which must not block: nullopt while a sync
  // takes its snapshot (on_synced tells when to try again); else starts `n`
  // writes.
  std::optional<std::uint64_t> try_begin_write(std::size_t n);
  // Starts a release of one slot: takes it out of the record and returns
  // the epoch, or nullopt (nothing started) if the record holds none there.
  std::optional<std::uint64_t> begin_release(const std::string& pool,
                                             const std::string& target);

  // Ends `n` writes after applying `update` to the record. `doubtful`: the
  // outcome in Redis is unknown or differs from the record (no reply,
  // stale): a sync is wanted.
  void end_write(std::size_t n, bool doubtful,
                 const std::function<void(Record&)>& update = {});

  // Asks for a sync (the agent runs it).
  void want_sync();
  bool sync_wanted() const;

  // For the agent: stops writes, waits for those in flight, takes a new
  // epoch and returns it with the record. end_sync(true) once Redis holds
  // it; end_sync(false) if the sync did not get through (wanted again).
  Snapshot begin_sync();
  void end_sync(bool ok);

  // A write came back stale with `epoch`: asks for a sync unless a newer
  // one is under way, and waits until a sync with a newer epoch succeeded,
  // up to `timeout` (on the clock). Whether one did.
  bool await_sync(std::uint64_t epoch, std::chrono::milliseconds timeout);

  // leave(): forgets everything the record holds.
  void clear();

 private:
  // Waits until no sync is taking its snapshot.
  void wait_not_collecting(MutexLock& lock) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Clock* const clock_;
  const std::function<void()> wake_agent_;
  const std::function<void()> on_synced_;

  mutable Mutex mu_;
  std::condition_variable cv_;
  Record record_ ABSL_GUARDED_BY(mu_);
  std::uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;         // what writes carry
  std::uint64_t synced_epoch_ ABSL_GUARDED_BY(mu_) = 0;  // Redis's at the last good sync
  std::size_t active_ ABSL_GUARDED_BY(mu_) = 0;          // writes in flight
  // A sync is taking its snapshot or running.
  bool collecting_ ABSL_GUARDED_BY(mu_) = false;
  bool wanted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_LEDGER_HPP_
