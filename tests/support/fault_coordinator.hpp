// A Coordinator that forwards to another one and can be told to fail
// renewals with Unavailable, as if the backend were unreachable for this
// instance only. Lets the conformance suite make a LeaseGuard lose its lease
// the same way on every backend.
#ifndef FLEET_TESTS_SUPPORT_FAULT_COORDINATOR_HPP_
#define FLEET_TESTS_SUPPORT_FAULT_COORDINATOR_HPP_

#include <atomic>

#include "fleet/coordinator.hpp"

namespace fleet::testing {

class FaultCoordinator final : public Coordinator {
 public:
  explicit FaultCoordinator(Coordinator& inner) : inner_(inner) {}

  void set_partitioned(bool on) { partitioned_ = on; }
  // Runs after every scan has read, before it returns what it read (to make
  // a change land while a reader holds an older copy). Set it before use.
  void set_after_scan(std::function<void()> hook) { after_scan_ = std::move(hook); }

  const std::string& session_id() const override { return inner_.session_id(); }
  std::string instance_id() const override { return inner_.instance_id(); }
  std::string_view backend_name() const override { return inner_.backend_name(); }
  Clock* clock() const override { return inner_.clock(); }
  absl::Status join(const InstanceInfo& i) override { return inner_.join(i); }
  absl::Status leave() override { return inner_.leave(); }
  absl::StatusOr<std::vector<Member>> members() override { return inner_.members(); }
  absl::StatusOr<Subscription> watch_members(
      std::function<void(const MemberEvent&)> cb) override {
    return inner_.watch_members(std::move(cb));
  }
  absl::Status publish_node_state(std::string_view n,
                                  const std::map<std::string, double>& m) override {
    return inner_.publish_node_state(n, m);
  }
  absl::Status remove_node_state(std::string_view n) override {
    return inner_.remove_node_state(n);
  }
  absl::StatusOr<std::optional<NodeAggregate>> aggregate(
      std::string_view n, const AggregationSpec& s) override {
    return inner_.aggregate(n, s);
  }
  absl::StatusOr<std::vector<NodeAggregate>> aggregate_all(
      const AggregationSpec& s) override {
    return inner_.aggregate_all(s);
  }
  absl::StatusOr<std::int64_t> counter_add(std::string_view n, std::int64_t d) override {
    return inner_.counter_add(n, d);
  }
  absl::StatusOr<std::int64_t> counter_get(std::string_view n) override {
    return inner_.counter_get(n);
  }
  absl::StatusOr<std::int64_t> owned_counter_add(std::string_view n,
                                                 std::int64_t d) override {
    return inner_.owned_counter_add(n, d);
  }
  absl::StatusOr<std::int64_t> owned_counter_get(std::string_view n) override {
    return inner_.owned_counter_get(n);
  }
  absl::StatusOr<std::optional<SlotGrant>> acquire_slot(std::string_view p,
                                                        const SlotRequest& r) override {
    return inner_.acquire_slot(p, r);
  }
  absl::Status release_slot(std::string_view p, std::string_view t) override {
    return inner_.release_slot(p, t);
  }
  absl::StatusOr<std::map<std::string, std::int64_t>> slot_usage(
      std::string_view p) override {
    return inner_.slot_usage(p);
  }
  absl::StatusOr<std::optional<Lease>> try_lock(std::string_view n, Ttl t) override {
    return inner_.try_lock(n, t);
  }
  absl::StatusOr<std::optional<Lease>> lock(std::string_view n, Ttl t,
                                            std::chrono::milliseconds w) override {
    return inner_.lock(n, t, w);
  }
  absl::Status release(const Lease& l) override { return inner_.release(l); }
  absl::StatusOr<Lease> renew(const Lease& l) override {
    if (partitioned_) return absl::UnavailableError("injected: backend unreachable");
    return inner_.renew(l);
  }
  absl::StatusOr<std::optional<Lease>> campaign(std::string_view e, std::string_view v,
                                                Ttl t,
                                                std::chrono::milliseconds w) override {
    return inner_.campaign(e, v, t, w);
  }
  absl::StatusOr<std::optional<Leader>> leader(std::string_view e) override {
    return inner_.leader(e);
  }
  absl::StatusOr<Subscription> observe_leader(
      std::string_view e, std::function<void(const std::optional<Leader>&)> cb) override {
    return inner_.observe_leader(e, std::move(cb));
  }
  absl::StatusOr<ClaimResult> claim(std::string_view m, std::string_view k,
                                    std::string_view v, Ttl t) override {
    return inner_.claim(m, k, v, t);
  }
  absl::StatusOr<Entry> put(std::string_view m, std::string_view k, std::string_view v,
                            Ttl t) override {
    return inner_.put(m, k, v, t);
  }
  absl::StatusOr<std::optional<Entry>> get(std::string_view m,
                                           std::string_view k) override {
    return inner_.get(m, k);
  }
  absl::StatusOr<bool> compare_and_set(std::string_view m, std::string_view k,
                                       std::string_view e, std::string_view v,
                                       Ttl t) override {
    return inner_.compare_and_set(m, k, e, v, t);
  }
  absl::StatusOr<bool> compare_and_delete(std::string_view m, std::string_view k,
                                          std::string_view e) override {
    return inner_.compare_and_delete(m, k, e);
  }
  absl::StatusOr<bool> erase(std::string_view m, std::string_view k) override {
    return inner_.erase(m, k);
  }
  absl::StatusOr<std::vector<MapOpResult>> apply(std::string_view m,
                                                 const std::vector<MapOp>& ops) override {
    return inner_.apply(m, ops);
  }
  absl::StatusOr<std::vector<MapEntry>> scan(std::string_view m, std::string_view p,
                                             std::size_t l) override {
    auto read = inner_.scan(m, p, l);
    if (after_scan_) after_scan_();
    return read;
  }
  absl::StatusOr<Subscription> watch(std::string_view m, std::string_view p,
                                     std::function<void(const WatchEvent&)> cb) override {
    return inner_.watch(m, p, std::move(cb));
  }
  absl::Status publish(std::string_view c, std::string_view p) override {
    return inner_.publish(c, p);
  }
  absl::StatusOr<Subscription> subscribe(
      std::string_view c, std::function<void(const Message&)> cb) override {
    return inner_.subscribe(c, std::move(cb));
  }
  ConnectionState connection_state() const override { return inner_.connection_state(); }
  std::uint64_t data_losses() const override { return inner_.data_losses(); }
  absl::StatusOr<Subscription> watch_connection(
      std::function<void(ConnectionState)> cb) override {
    return inner_.watch_connection(std::move(cb));
  }

 private:
  Coordinator& inner_;
  std::atomic<bool> partitioned_{false};
  std::function<void()> after_scan_;
};

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_FAULT_COORDINATOR_HPP_
