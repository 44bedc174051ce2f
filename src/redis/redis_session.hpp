// RedisSession: the Coordinator of the Redis backend. Arguments are checked
// with the same validators as the in-process backend; each decision is one
// script (src/redis/lua). redis_session.cpp has the lifecycle and
// membership; redis_session_agent.cpp the agent (heartbeat, connection
// state, recovery); redis_session_state.cpp node state, counters and slots;
// redis_session_ops.cpp the other primitives.
//
// The agent thread, on a connection of its own, heartbeats, sweeps, and
// after any fault makes Redis hold this session's record again (rejoin,
// then sync.lua: see ledger.hpp). Callers' commands share the pool.
#ifndef FLEET_SRC_REDIS_REDIS_SESSION_HPP_
#define FLEET_SRC_REDIS_REDIS_SESSION_HPP_

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "fleet/redis_coordinator.hpp"
#include "internal/dispatcher.hpp"
#include "internal/logger.hpp"
#include "internal/mutex.hpp"
#include "redis/connection.hpp"
#include "redis/keys.hpp"
#include "redis/ledger.hpp"
#include "redis/pool.hpp"
#include "redis/scripts.hpp"
#include "redis/slot_lane.hpp"
#include "redis/subscriber.hpp"

namespace fleet::internal {

// 128 random bits, "r-" and 32 hex digits: session ids, incarnation ids.
std::string random_session_id();

class RedisSession final : public Coordinator {
 public:
  // Validated options; `endpoint` already parsed (password resolved).
  static absl::StatusOr<std::unique_ptr<Coordinator>> open(const RedisOptions& options,
                                                           RedisEndpoint endpoint);
  ~RedisSession() override;

  const std::string& session_id() const override { return sid_; }
  std::string_view backend_name() const override { return "redis"; }
  Clock* clock() const override { return clock_; }

  absl::Status join(const InstanceInfo& info) override;
  std::string instance_id() const override;
  absl::Status leave() override;
  absl::StatusOr<std::vector<Member>> members() override;
  absl::StatusOr<Subscription> watch_members(
      std::function<void(const MemberEvent&)> callback) override;

  absl::Status publish_node_state(std::string_view node_id,
                                  const std::map<std::string, double>& metrics) override;
  absl::Status remove_node_state(std::string_view node_id) override;
  absl::StatusOr<std::optional<NodeAggregate>> aggregate(
      std::string_view node_id, const AggregationSpec& spec) override;
  absl::StatusOr<std::vector<NodeAggregate>> aggregate_all(
      const AggregationSpec& spec) override;

  absl::StatusOr<std::int64_t> counter_add(std::string_view name,
                                           std::int64_t delta) override;
  absl::StatusOr<std::int64_t> counter_get(std::string_view name) override;
  absl::StatusOr<std::int64_t> owned_counter_add(std::string_view name,
                                                 std::int64_t delta) override;
  absl::StatusOr<std::int64_t> owned_counter_get(std::string_view name) override;
  absl::StatusOr<std::optional<SlotGrant>> acquire_slot(
      std::string_view pool, const SlotRequest& request) override;
  absl::Status acquire_slot_async(std::string_view pool, const SlotRequest& request,
                                  SlotCallback done) override;
  absl::Status release_slot(std::string_view pool, std::string_view target) override;
  absl::StatusOr<std::map<std::string, std::int64_t>> slot_usage(
      std::string_view pool) override;

  absl::StatusOr<std::optional<Lease>> try_lock(std::string_view name, Ttl ttl) override;
  absl::StatusOr<std::optional<Lease>> lock(std::string_view name, Ttl ttl,
                                            std::chrono::milliseconds timeout) override;
  absl::Status release(const Lease& lease) override;
  absl::StatusOr<Lease> renew(const Lease& lease) override;
  absl::StatusOr<std::optional<Lease>> campaign(
      std::string_view election, std::string_view value, Ttl ttl,
      std::chrono::milliseconds timeout) override;
  absl::StatusOr<std::optional<Leader>> leader(std::string_view election) override;
  absl::StatusOr<Subscription> observe_leader(
      std::string_view election,
      std::function<void(const std::optional<Leader>&)> callback) override;

  absl::StatusOr<ClaimResult> claim(std::string_view map, std::string_view key,
                                    std::string_view value, Ttl ttl) override;
  absl::StatusOr<Entry> put(std::string_view map, std::string_view key,
                            std::string_view value, Ttl ttl) override;
  absl::StatusOr<std::optional<Entry>> get(std::string_view map,
                                           std::string_view key) override;
  absl::StatusOr<bool> compare_and_set(std::string_view map, std::string_view key,
                                       std::string_view expected, std::string_view value,
                                       Ttl ttl) override;
  absl::StatusOr<bool> compare_and_delete(std::string_view map, std::string_view key,
                                          std::string_view expected) override;
  absl::StatusOr<bool> erase(std::string_view map, std::string_view key) override;
  absl::StatusOr<std::vector<MapOpResult>> apply(std::string_view map,
                                                 const std::vector<MapOp>& ops) override;
  absl::StatusOr<std::vector<MapEntry>> scan(std::string_view map,
                                             std::string_view key_prefix,
                                             std::size_t limit) override;
  absl::StatusOr<Subscription> watch(
      std::string_view map, std::string_view key_prefix,
      std::function<void(const WatchEvent&)> callback) override;

  absl::Status publish(std::string_view channel, std::string_view payload) override;
  absl::StatusOr<Subscription> subscribe(
      std::string_view channel, std::function<void(const Message&)> callback) override;

  ConnectionState connection_state() const override;
  absl::StatusOr<Subscription> watch_connection(
      std::function<void(ConnectionState)> callback) override;
  std::uint64_t data_losses() const override { return data_losses_.load(); }

 private:
  // What outlives the session for the sake of Subscription handles: their
  // cancel functions hold a weak_ptr to it.
  struct Events {
    Events(Subscriber::Options options, Clock* clock, const Logger* logger,
           std::function<void()> on_healthy)
        : subscriber(std::move(options), clock, logger, std::move(on_healthy)) {}
    Dispatcher dispatcher;
    Subscriber subscriber;
    // watch_connection() callbacks; here rather than in the session so that
    // a Subscription outliving the session never touches it.
    Mutex watchers_mu;
    std::vector<std::pair<std::shared_ptr<Dispatcher::Slot>,
                          std::function<void(const ConnectionState&)>>>
        state_watchers ABSL_GUARDED_BY(watchers_mu);
  };

  RedisSession(const RedisOptions& options, RedisEndpoint endpoint);
  absl::Status start();

  absl::StatusOr<Reply> run(Script script, const Argv& keys, const Argv& args);
  // run(), followed on the same connection by WAIT for acks_wanted()
  // replicas. *durable: OK, or why the write is not known to be on a
  // replica (Unavailable). The reply is the script's either way.
  absl::StatusOr<Reply> run_acked(Script script, const Argv& keys, const Argv& args,
                                  absl::Status* durable);
  int acks_wanted() const;
  // Auto replica_acks: how many replicas the master has (ROLE), after
  // each heartbeat (agent thread).
  void refresh_replicas();
  // The same on the agent's own connection (agent thread and start() only).
  absl::StatusOr<Reply> agent_run(Script script, const Argv& keys, const Argv& args);
  absl::StatusOr<Reply> agent_command(const Argv& argv);
  SlotLane& slot_lane();
  // The encoded slot_acquire call for `request` (its rotate aside): the
  // last one for the pool if it matches, else checked and encoded anew.
  absl::StatusOr<std::shared_ptr<const SlotCall>> slot_call(std::string_view pool,
                                                            const SlotRequest& request);
  absl::StatusOr<Reply> command(const Argv& argv);
  absl::StatusOr<std::optional<Lease>> acquire(LeaseKind kind, const std::string& name,
                                               std::string_view value, Ttl ttl,
                                               std::chrono::milliseconds timeout);
  // Publishes (encoded) or removes (nullptr) this session's view of a node.
  absl::Status write_view(std::string_view node_id, const std::string* encoded);
  // node_id empty: every node (cached in Redis); else just that node.
  absl::StatusOr<std::vector<NodeAggregate>> run_aggregate(std::string_view node_id,
                                                           const AggregationSpec& spec);

  // Subscribes `decode_and_post` (run on the pub/sub thread) to a Redis
  // channel and ties it to a dispatcher slot.
  absl::StatusOr<Subscription> listen(
      const std::string& channel,
      std::function<void(const std::shared_ptr<Dispatcher::Slot>&, const std::string&)>
          on_payload,
      std::shared_ptr<Dispatcher::Slot> slot = nullptr);

  // The agent: one heartbeat, and what follows from it; returns when to
  // run again. *failing: the last heartbeat failed.
  void agent_loop();
  Clock::TimePoint agent_tick(bool* failing);
  void wake_agent();
  struct Heartbeat {
    bool was_alive = true;  // false: the session had expired (or Redis lost it)
  };
  absl::StatusOr<Heartbeat> heartbeat();
  // Makes Redis hold the record (sync.lua), on the agent's connection.
  bool sync_locked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_);
  void sweep();
  void set_state_locked(ConnectionState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_);
  absl::Status join_locked(const InstanceInfo& info, const Scripts::Send& send)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_);

  // Every new connection: does Redis still hold the data this session knew?
  absl::Status check_incarnation(RedisConnection& conn);
  void note_incarnation(const std::string& id);
  // Why release/renew found `lease` not current (their script's reply):
  // Aborted, or InvalidArgument when no grant ever had its fence.
  absl::Status not_held(const Lease& lease, const Reply& reply) const;
  // Unavailable while slots may not be granted after a data loss.
  absl::Status check_grace() const;
  // For a write that came back stale: waits for the agent's sync.
  bool await_sync(std::uint64_t epoch);

  const RedisOptions options_;
  Clock* const clock_;
  const Logger logger_;
  const Keys keys_;
  const std::string sid_;
  const std::chrono::milliseconds grace_;
  SessionLedger ledger_;  // before pool_ and lane_: their threads use it
  ConnectionPool pool_;
  Scripts scripts_;
  std::shared_ptr<Events> events_;

  // The namespace's incarnation id this session knows (see heartbeat.lua).
  Mutex incarnation_mu_;
  std::string incarnation_ ABSL_GUARDED_BY(incarnation_mu_);
  std::atomic<std::uint64_t> data_losses_{0};
  // Sentinel: the master epoch the session's connections last reached.
  std::atomic<std::uint64_t> master_epoch_{0};
  // Replicas the master reported at the last heartbeat (auto replica_acks).
  std::atomic<int> replicas_seen_{0};
  bool role_refused_ = false;  // ROLE denied by an ACL (agent thread)
  // Clock ticks until which no slot is granted (data-loss grace).
  std::atomic<Clock::TimePoint::rep> no_grants_until_{0};

  // The last all-nodes aggregate per spec, with its Redis cache stamp: when
  // the stamp is still current the script answers "=" and we reuse it.
  Mutex aggregate_mu_;
  std::map<std::string, std::pair<std::string, std::vector<NodeAggregate>>> aggregates_
      ABSL_GUARDED_BY(aggregate_mu_);

  Mutex calls_mu_;
  // By pool.
  std::map<std::string, std::shared_ptr<const SlotCall>, std::less<>> calls_
      ABSL_GUARDED_BY(calls_mu_);

  Mutex lane_mu_;
  // acquire_slot_async's, from the first call.
  std::unique_ptr<SlotLane> lane_ ABSL_GUARDED_BY(lane_mu_);

  Mutex publish_mu_;  // keeps sequence order == send order
  std::uint64_t next_sequence_ ABSL_GUARDED_BY(publish_mu_) = 1;

  // Connection state and membership. The agent holds state_mu_ while it
  // re-joins and syncs, so join() and leave() never overlap a sync.
  mutable Mutex state_mu_;
  ConnectionState state_ ABSL_GUARDED_BY(state_mu_) = ConnectionState::kConnected;
  // Pub/sub drops already reported; SUSPENDED only for a pub/sub drop.
  std::uint64_t seen_pubsub_drops_ ABSL_GUARDED_BY(state_mu_) = 0;
  bool pubsub_suspended_ ABSL_GUARDED_BY(state_mu_) = false;
  std::atomic<ConnectionState> state_now_{ConnectionState::kConnected};
  // The record's membership.
  std::optional<InstanceInfo> joined_ ABSL_GUARDED_BY(state_mu_);
  mutable Mutex id_mu_ ABSL_ACQUIRED_AFTER(state_mu_);
  std::string instance_id_ ABSL_GUARDED_BY(id_mu_);  // joined_->id, for instance_id()
  Clock::TimePoint last_heartbeat_ok_ ABSL_GUARDED_BY(state_mu_){};

  // The agent's wake-ups and its connection (agent thread only).
  Mutex agent_mu_;
  std::condition_variable agent_cv_;
  bool agent_wanted_ ABSL_GUARDED_BY(agent_mu_) = false;
  bool stop_ ABSL_GUARDED_BY(agent_mu_) = false;
  std::unique_ptr<RedisConnection> agent_conn_;
  Reconnect agent_reconnect_;
  std::thread agent_thread_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_REDIS_SESSION_HPP_
