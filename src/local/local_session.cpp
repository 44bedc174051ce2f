// LocalSession: the Coordinator of the in-process backend. Validates every
// argument, then forwards to the shared LocalStoreImpl.
#include <cmath>

#include "fleet/local_coordinator.hpp"
#include "fleet/names.hpp"
#include "fmt/format.h"
#include "internal/slots.hpp"
#include "internal/validate.hpp"
#include "local/local_store.hpp"

namespace fleet {
namespace internal {
namespace {

class LocalSession final : public Coordinator {
 public:
  explicit LocalSession(std::shared_ptr<LocalStoreImpl> store)
      : store_(std::move(store)), sid_(store_->open_session()) {}
  ~LocalSession() override { store_->close_session(sid_); }

  const std::string& session_id() const override { return sid_; }
  std::string_view backend_name() const override { return "local"; }
  Clock* clock() const override { return store_->clock(); }
  std::string instance_id() const override { return store_->instance_id(sid_); }

  absl::Status join(const InstanceInfo& info) override {
    FLEET_RETURN_IF_ERROR(validate_instance_info(info));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->join(sid_, info);
  }
  absl::Status leave() override { return store_->leave(sid_); }
  absl::StatusOr<std::vector<Member>> members() override {
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->members();
  }
  absl::StatusOr<Subscription> watch_members(
      std::function<void(const MemberEvent&)> callback) override {
    FLEET_RETURN_IF_ERROR(validate_callback(callback));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->watch_members(sid_, std::move(callback));
  }

  absl::Status publish_node_state(std::string_view node_id,
                                  const std::map<std::string, double>& metrics) override {
    FLEET_RETURN_IF_ERROR(validate_name("node id", node_id));
    FLEET_RETURN_IF_ERROR(validate_metrics(metrics));
    return store_->publish_node_state(sid_, std::string(node_id), metrics);
  }
  absl::Status remove_node_state(std::string_view node_id) override {
    FLEET_RETURN_IF_ERROR(validate_name("node id", node_id));
    return store_->remove_node_state(sid_, std::string(node_id));
  }
  absl::StatusOr<std::optional<NodeAggregate>> aggregate(
      std::string_view node_id, const AggregationSpec& spec) override {
    FLEET_RETURN_IF_ERROR(validate_name("node id", node_id));
    FLEET_RETURN_IF_ERROR(validate_spec(spec));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->aggregate(std::string(node_id), spec);
  }
  absl::StatusOr<std::vector<NodeAggregate>> aggregate_all(
      const AggregationSpec& spec) override {
    FLEET_RETURN_IF_ERROR(validate_spec(spec));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->aggregate_all(spec);
  }

  absl::StatusOr<std::int64_t> counter_add(std::string_view name,
                                           std::int64_t delta) override {
    FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->counter_add(std::string(name), delta);
  }
  absl::StatusOr<std::int64_t> counter_get(std::string_view name) override {
    FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->counter_get(std::string(name));
  }
  absl::StatusOr<std::int64_t> owned_counter_add(std::string_view name,
                                                 std::int64_t delta) override {
    FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->owned_counter_add(sid_, std::string(name), delta);
  }
  absl::StatusOr<std::int64_t> owned_counter_get(std::string_view name) override {
    FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->owned_counter_get(std::string(name));
  }

  absl::StatusOr<std::optional<SlotGrant>> acquire_slot(
      std::string_view pool, const SlotRequest& request) override {
    FLEET_RETURN_IF_ERROR(validate_slot_request(pool, request));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->acquire_slot(sid_, std::string(pool), request);
  }
  absl::Status release_slot(std::string_view pool, std::string_view target) override {
    FLEET_RETURN_IF_ERROR(validate_name("pool name", pool));
    FLEET_RETURN_IF_ERROR(validate_name("slot target", target));
    return store_->release_slot(sid_, std::string(pool), std::string(target));
  }
  absl::StatusOr<std::map<std::string, std::int64_t>> slot_usage(
      std::string_view pool) override {
    FLEET_RETURN_IF_ERROR(validate_name("pool name", pool));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->slot_usage(std::string(pool));
  }

  absl::StatusOr<std::optional<Lease>> try_lock(std::string_view name, Ttl ttl) override {
    return lock(name, ttl, std::chrono::milliseconds::zero());
  }
  absl::StatusOr<std::optional<Lease>> lock(std::string_view name, Ttl ttl,
                                            std::chrono::milliseconds timeout) override {
    FLEET_RETURN_IF_ERROR(validate_name("lock name", name));
    FLEET_RETURN_IF_ERROR(validate_lease_ttl(ttl));
    FLEET_RETURN_IF_ERROR(validate_timeout(timeout));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->acquire(sid_, LeaseKind::kLock, std::string(name), {}, ttl, timeout);
  }
  absl::Status release(const Lease& lease) override {
    FLEET_RETURN_IF_ERROR(check_lease(lease, sid_));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->release(sid_, lease);
  }
  absl::StatusOr<Lease> renew(const Lease& lease) override {
    FLEET_RETURN_IF_ERROR(check_lease(lease, sid_));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->renew(sid_, lease);
  }

  absl::StatusOr<std::optional<Lease>> campaign(
      std::string_view election, std::string_view value, Ttl ttl,
      std::chrono::milliseconds timeout) override {
    FLEET_RETURN_IF_ERROR(validate_name("election name", election));
    FLEET_RETURN_IF_ERROR(validate_value("leader value", value));
    FLEET_RETURN_IF_ERROR(validate_lease_ttl(ttl));
    FLEET_RETURN_IF_ERROR(validate_timeout(timeout));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->acquire(sid_, LeaseKind::kLeadership, std::string(election),
                           std::string(value), ttl, timeout);
  }
  absl::StatusOr<std::optional<Leader>> leader(std::string_view election) override {
    FLEET_RETURN_IF_ERROR(validate_name("election name", election));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->leader(std::string(election));
  }
  absl::StatusOr<Subscription> observe_leader(
      std::string_view election,
      std::function<void(const std::optional<Leader>&)> callback) override {
    FLEET_RETURN_IF_ERROR(validate_name("election name", election));
    FLEET_RETURN_IF_ERROR(validate_callback(callback));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->observe_leader(sid_, std::string(election), std::move(callback));
  }

  absl::StatusOr<ClaimResult> claim(std::string_view map, std::string_view key,
                                    std::string_view value, Ttl ttl) override {
    FLEET_RETURN_IF_ERROR(validate_entry(map, key, value, ttl));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->claim(std::string(map), std::string(key), std::string(value), ttl);
  }
  absl::StatusOr<Entry> put(std::string_view map, std::string_view key,
                            std::string_view value, Ttl ttl) override {
    FLEET_RETURN_IF_ERROR(validate_entry(map, key, value, ttl));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->put(std::string(map), std::string(key), std::string(value), ttl);
  }
  absl::StatusOr<std::optional<Entry>> get(std::string_view map,
                                           std::string_view key) override {
    FLEET_RETURN_IF_ERROR(validate_map_key(map, key));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->get(std::string(map), std::string(key));
  }
  absl::StatusOr<bool> compare_and_set(std::string_view map, std::string_view key,
                                       std::string_view expected, std::string_view value,
                                       Ttl ttl) override {
    FLEET_RETURN_IF_ERROR(validate_entry(map, key, value, ttl));
    FLEET_RETURN_IF_ERROR(validate_value("expected value", expected));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->compare_and_set(std::string(map), std::string(key),
                                   std::string(expected), std::string(value), ttl);
  }
  absl::StatusOr<bool> compare_and_delete(std::string_view map, std::string_view key,
                                          std::string_view expected) override {
    FLEET_RETURN_IF_ERROR(validate_map_key(map, key));
    FLEET_RETURN_IF_ERROR(validate_value("expected value", expected));
    const std::string e(expected);
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->compare_and_delete(std::string(map), std::string(key), &e);
  }
  absl::StatusOr<bool> erase(std::string_view map, std::string_view key) override {
    FLEET_RETURN_IF_ERROR(validate_map_key(map, key));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->compare_and_delete(std::string(map), std::string(key), nullptr);
  }
  absl::StatusOr<std::vector<MapOpResult>> apply(std::string_view map,
                                                 const std::vector<MapOp>& ops) override {
    FLEET_RETURN_IF_ERROR(validate_map_ops(map, ops));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->apply(std::string(map), ops);
  }
  absl::StatusOr<std::vector<MapEntry>> scan(std::string_view map,
                                             std::string_view key_prefix,
                                             std::size_t limit) override {
    FLEET_RETURN_IF_ERROR(validate_name("map name", map));
    FLEET_RETURN_IF_ERROR(validate_prefix(key_prefix));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->scan(std::string(map), std::string(key_prefix), limit);
  }
  absl::StatusOr<Subscription> watch(
      std::string_view map, std::string_view key_prefix,
      std::function<void(const WatchEvent&)> callback) override {
    FLEET_RETURN_IF_ERROR(validate_name("map name", map));
    FLEET_RETURN_IF_ERROR(validate_prefix(key_prefix));
    FLEET_RETURN_IF_ERROR(validate_callback(callback));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->watch(sid_, std::string(map), std::string(key_prefix),
                         std::move(callback));
  }

  absl::Status publish(std::string_view channel, std::string_view payload) override {
    FLEET_RETURN_IF_ERROR(validate_name("channel name", channel));
    FLEET_RETURN_IF_ERROR(validate_value("payload", payload));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    store_->publish(sid_, std::string(channel), std::string(payload));
    return absl::OkStatus();
  }
  absl::StatusOr<Subscription> subscribe(
      std::string_view channel, std::function<void(const Message&)> callback) override {
    FLEET_RETURN_IF_ERROR(validate_name("channel name", channel));
    FLEET_RETURN_IF_ERROR(validate_callback(callback));
    FLEET_RETURN_IF_ERROR(store_->reachable(sid_));
    return store_->subscribe(sid_, std::string(channel), std::move(callback));
  }

  ConnectionState connection_state() const override {
    return store_->connection_state(sid_);
  }
  std::uint64_t data_losses() const override { return store_->data_losses(sid_); }
  absl::StatusOr<Subscription> watch_connection(
      std::function<void(ConnectionState)> callback) override {
    FLEET_RETURN_IF_ERROR(validate_callback(callback));
    return store_->watch_connection(sid_, std::move(callback));
  }

 private:
  const std::shared_ptr<LocalStoreImpl> store_;
  const std::string sid_;
};

}  // namespace
}  // namespace internal

absl::StatusOr<std::shared_ptr<LocalStore>> LocalStore::create(
    const LocalOptions& options) {
  if (options.session_ttl.count() <= 0) {
    return absl::InvalidArgumentError(
        fmt::format("LocalOptions::session_ttl must be positive (got {} ms)",
                    options.session_ttl.count()));
  }
  return std::shared_ptr<LocalStore>(std::make_shared<internal::LocalStoreImpl>(options));
}

absl::StatusOr<std::unique_ptr<Coordinator>> LocalCoordinator::connect(
    std::shared_ptr<LocalStore> store) {
  auto impl = std::dynamic_pointer_cast<internal::LocalStoreImpl>(store);
  if (!impl) return absl::InvalidArgumentError("LocalCoordinator::connect: null store");
  return std::unique_ptr<Coordinator>(new internal::LocalSession(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<Coordinator>> LocalCoordinator::create(
    const LocalOptions& options) {
  auto store = LocalStore::create(options);
  if (!store.ok()) return store.status();
  return connect(*std::move(store));
}

}  // namespace fleet
