// Coordinator::acquire_slot_async on Redis: a connection and an I/O thread
// of their own. Callers queue their decisions and return at once; the I/O
// thread sends what is queued in one write and hands each reply to its
// callback as it is read, without any caller waking for it. Decisions that
// differ only by their rotate (one router's requests between two changes of
// its pool view) are merged into one slot_acquire call, which takes them in
// queue order and shares the script's reads and writes among them. Grants
// go into the session's record (SessionLedger) before their callbacks run;
// while a sync takes its snapshot the lane holds its queue back.
#ifndef FLEET_SRC_REDIS_SLOT_LANE_HPP_
#define FLEET_SRC_REDIS_SLOT_LANE_HPP_

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "fleet/clock.hpp"
#include "fleet/types.hpp"
#include "internal/logger.hpp"
#include "internal/mutex.hpp"
#include "redis/connection.hpp"
#include "redis/ledger.hpp"

namespace fleet::internal {

// One slot_acquire call's arguments, but the rotates: what merged decisions
// share. RedisSession::acquire_slot sends it with one rotate.
struct SlotCall {
  std::string pool;
  SlotRequest shape;         // the request, rotate left at 0
  std::string slots_key;     // KEYS[1]
  std::string session_key;   // KEYS[2]
  std::string field_prefix;  // ARGV[2]
  std::string numbers;       // ARGV[3]
  std::string format;        // ARGV[4]

  SlotCall(std::string slots, std::string session, std::string_view pool,
           const SlotRequest& request);
  // Whether this is the call for `request` on `pool` (its rotate aside);
  // decisions on equal calls can share one script run.
  bool matches(std::string_view pool, const SlotRequest& request) const;
  bool same_as(const SlotCall& other) const { return matches(other.pool, other.shape); }
  // slot_acquire's KEYS and ARGV for these rotates.
  static constexpr std::string_view kKeyCount = "3";  // keys()'s size
  Argv keys(std::string_view epochs_key) const;
  Argv args(std::string_view sid, std::string_view epoch,
            const std::string& rotates) const;
};

using SlotResult = absl::StatusOr<std::optional<SlotGrant>>;

// Decodes slot_acquire's reply to `decisions` decisions on `call`.
std::vector<SlotResult> decode_slot_reply(const SlotCall& call, std::size_t decisions,
                                          const absl::StatusOr<Reply>& reply);
// Whether the reply is slot_acquire's "stale epoch" (-1).
bool slot_reply_stale(const absl::StatusOr<Reply>& reply);
// Adds the granted ones of `results` to the record's slots of `pool`.
void record_grants(const std::string& pool, const std::vector<SlotResult>& results,
                   SessionLedger::Record& record);

class SlotLane {
 public:
  struct Options {
    RedisEndpoint endpoint;
    RedisConnection::Timeouts timeouts;
    std::chrono::milliseconds backoff_min{50};
    std::chrono::milliseconds backoff_max{2000};
    std::string epochs_key;
    std::string sid;
    std::string script_sha;
    std::string script_body;
    ConnectHook on_connect;
  };
  using Done = std::function<void(SlotResult)>;

  // `ledger` (the session's) outlives the lane.
  SlotLane(Options options, SessionLedger* ledger, Clock* clock, const Logger* logger);
  // Stops the I/O thread; what is still pending gets Cancelled.
  ~SlotLane();
  SlotLane(const SlotLane&) = delete;
  SlotLane& operator=(const SlotLane&) = delete;

  // Queues one decision; `done` runs on the I/O thread (or, for Cancelled,
  // on the destroying one).
  void submit(std::shared_ptr<const SlotCall> call, std::uint32_t rotate, Done done);

  // A sync ended: send what was held back.
  void resume();
  // Redis answered on another connection after an outage: the next send
  // opens a fresh connection, without waiting out the backoff.
  void retry_now();

  static constexpr std::size_t kMaxMerged = 64;  // decisions per script call

 private:
  struct Job {
    std::shared_ptr<const SlotCall> call;
    std::uint32_t rotate;
    Done done;
    bool eval = false;  // send the body: Redis lost the script (NOSCRIPT)
  };
  struct Sent {
    std::vector<Job> jobs;
    // I/O timeouts are the kernel's (poll()): real time, not the session's
    // clock.
    Clock::TimePoint deadline;
  };

  void loop();
  // Sends `jobs`, merged; if the connection fails they fail with it.
  void send(std::vector<Job> jobs);
  void complete(Sent sent, const absl::StatusOr<Reply>& reply);
  void fail_all(std::vector<Job> jobs, const absl::Status& status);
  void fail_in_flight(const absl::Status& status);
  absl::Status connect();
  void wake();

  const Options options_;
  SessionLedger* const ledger_;
  Clock* const clock_;
  const Logger* const logger_;
  std::unique_ptr<RedisConnection> conn_;  // the I/O thread's
  std::deque<Sent> in_flight_;             // the I/O thread's, oldest first
  Reconnect reconnect_;                    // the I/O thread's

  Mutex mu_;
  std::vector<Job> queue_ ABSL_GUARDED_BY(mu_);
  // The I/O thread waits in poll() for the pipe.
  bool sleeping_ ABSL_GUARDED_BY(mu_) = false;
  // A sync takes its snapshot: queue_ waits for resume().
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  bool retry_now_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int wake_fds_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_SLOT_LANE_HPP_
