// RedisSession: the Coordinator of the Redis backend. Arguments are checked
// with the same validators as the in-process backend; each decision is one
// script (src/redis/lua). redis_session.cpp has the lifecycle, heartbeat and
// membership; redis_session_ops.cpp the other primitives.
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
#include "redis/connection.hpp"
#include "redis/keys.hpp"
#include "redis/scripts.hpp"
#include "redis/slot_lane.hpp"
#include "redis/subscriber.hpp"

namespace fleet::internal {

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
    std::mutex watchers_mu;
    std::vector<std::pair<std::shared_ptr<Dispatcher::Slot>,
                          std::function<void(const ConnectionState&)>>>
        state_watchers;
  };

  RedisSession(const RedisOptions& options, RedisEndpoint endpoint);
  absl::Status start();

  absl::StatusOr<Reply> run(Script script, const Argv& keys, const Argv& args);
  SlotLane& slot_lane();
  // The encoded slot_acquire call for `request` (its rotate aside): the
  // last one for the pool if it matches, else checked and encoded anew.
  absl::StatusOr<std::shared_ptr<const SlotCall>> slot_call(std::string_view pool,
                                                            const SlotRequest& request);
  absl::StatusOr<Reply> command(const Argv& argv);
  absl::StatusOr<std::optional<Lease>> acquire(LeaseKind kind, const std::string& name,
                                               std::string_view value, Ttl ttl,
                                               std::chrono::milliseconds timeout);
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

  void heartbeat_loop();
  absl::StatusOr<bool> heartbeat();  // true: the session was alive before
  void set_state_locked(ConnectionState state);
  absl::Status join_locked(const InstanceInfo& info);

  const RedisOptions options_;
  Clock* const clock_;
  const Logger logger_;
  const Keys keys_;
  const std::string sid_;
  ConnectionPool pool_;
  Scripts scripts_;
  std::shared_ptr<Events> events_;

  // The last all-nodes aggregate per spec, with its Redis cache stamp: when
  // the stamp is still current the script answers "=" and we reuse it.
  std::mutex aggregate_mu_;
  std::map<std::string, std::pair<std::string, std::vector<NodeAggregate>>> aggregates_;

  std::mutex calls_mu_;
  std::map<std::string, std::shared_ptr<const SlotCall>, std::less<>> calls_;  // by pool

  std::mutex lane_mu_;
  std::unique_ptr<SlotLane> lane_;  // acquire_slot_async's, from the first call

  std::mutex publish_mu_;  // keeps sequence order == send order
  std::uint64_t next_sequence_ = 1;

  mutable std::mutex state_mu_;
  std::condition_variable state_cv_;
  ConnectionState state_ = ConnectionState::kConnected;
  std::optional<InstanceInfo> joined_;  // to re-join after LOST
  Clock::TimePoint last_heartbeat_ok_{};
  bool stop_ = false;
  std::thread heartbeat_thread_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_REDIS_SESSION_HPP_
