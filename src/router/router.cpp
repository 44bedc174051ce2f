// fleet::router::Router on the module skeleton. Shared state of one pool,
// for a pool named P:
//   map     "router/P/nodes"     node id -> JSON NodeSpec (the registry)
//   map     "router/P/breakers"  node id -> wall-clock ms when the circuit
//                                closes, with the cool-down as TTL
//   slots   "router/P"           in-flight requests per node (acquire_slot)
//   nodes   "router/P/<id>"      each gateway's observations (node state)
//   channel "router/P/freed"     "a slot was freed", sent while the pool is
//                                saturated, to wake waiting gateways
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <map>
#include <random>
#include <set>

#include "fleet/names.hpp"
#include "fleet/router.hpp"
#include "fmt/format.h"
#include "internal/mutex.hpp"
#include "internal/parse.hpp"
#include "internal/status.hpp"
#include "module/core.hpp"
#include "router/circuits.hpp"
#include "router/observations.hpp"
#include "router/policy.hpp"
#include "router/request_cache.hpp"
#include "router/spec.hpp"

namespace fleet::router {
namespace {

using internal::MapMirror;
using internal::MutexLock;
using Ms = std::chrono::milliseconds;
using namespace internal_router;

// A decision that finds no room marks the pool saturated this long:
// releases are announced meanwhile, to wake the gateways that wait.
constexpr Ms kSaturationWindow{1000};
// acquire() with hints.wait re-tries this often in case a wake-up was lost.
constexpr Ms kWaitPoll{50};

absl::Status validate_options(const RouterOptions& o) {
  FLEET_RETURN_IF_ERROR(validate_module_options(o, "router"));
  const Weights& w = o.weights;
  for (double x : {w.latency, w.success, w.load, w.gpu, w.inflight}) {
    if (!std::isfinite(x) || x < 0) {
      return absl::InvalidArgumentError("weights must be finite and not negative");
    }
  }
  if (!(o.region_load_limit > 0 && o.region_load_limit <= 1)) {
    return absl::InvalidArgumentError("region_load_limit must be in (0, 1]");
  }
  if (!(o.low_priority_share > 0 && o.low_priority_share <= 1)) {
    return absl::InvalidArgumentError("low_priority_share must be in (0, 1]");
  }
  if (o.breaker_failures < 1) {
    return absl::InvalidArgumentError("breaker_failures must be at least 1");
  }
  if (o.breaker_cooldown <= Ms::zero()) {
    return absl::InvalidArgumentError("breaker_cooldown must be positive");
  }
  if (!(o.ewma_alpha > 0 && o.ewma_alpha <= 1)) {
    return absl::InvalidArgumentError("ewma_alpha must be in (0, 1]");
  }
  return absl::OkStatus();
}

class RouterImpl final : public Router, private internal::ModuleHooks {
 public:
  RouterImpl(Coordinator& c, RouterOptions o)
      : core_(c, o, "router", /*names_instance=*/false),
        c_(c),
        o_(std::move(o)),
        slot_pool_("router/" + o_.name),
        nodes_map_(slot_pool_ + "/nodes"),
        state_prefix_(slot_pool_ + "/"),
        freed_channel_(slot_pool_ + "/freed"),
        circuits_(c, slot_pool_ + "/breakers", o_.breaker_cooldown, core_.log()),
        observations_(o_.ewma_alpha),
        requests_(o_) {}

  ~RouterImpl() override {
    {
      MutexLock lock(mu_);
      stop_ = true;
      // acquire_async callbacks use this object: each comes within the
      // Coordinator's command timeout.
      while (pending_async_ != 0) cv_.wait(lock.native());
    }
    cv_.notify_all();
    core_.stop();
    freed_sub_.cancel();
    if (nodes_mirror_) nodes_mirror_->stop();
    if (breakers_mirror_) breakers_mirror_->stop();
  }

  absl::Status start() { return core_.start(this); }

  const RouterOptions& options() const override { return o_; }
  const std::string& slot_pool() const override { return slot_pool_; }

  // ---- registry ---------------------------------------------------------------

  absl::Status add_node(const NodeSpec& spec) override {
    FLEET_RETURN_IF_ERROR(validate_name("node id", spec.id));
    if (spec.id.size() > kMaxNodeIdBytes || spec.address.empty() || spec.capacity < 1) {
      return absl::InvalidArgumentError(
          fmt::format("node '{}': needs an address, a positive capacity and an id of at "
                      "most {} bytes",
                      spec.id, kMaxNodeIdBytes));
    }
    FLEET_RETURN_IF_ERROR(c_.put(nodes_map_, spec.id, encode_spec(spec)).status());
    MutexLock lock(mu_);
    registry_[spec.id] = spec;  // the change stream confirms it
    invalidate_locked();
    return absl::OkStatus();
  }

  absl::Status set_node_state(std::string_view node_id, BackendState state) override {
    NodeSpec spec;
    {
      MutexLock lock(mu_);
      auto it = registry_.find(std::string(node_id));
      if (it == registry_.end()) {
        return absl::NotFoundError(
            fmt::format("no node '{}' in pool '{}'", node_id, o_.name));
      }
      spec = it->second;
    }
    spec.state = state;
    absl::Status st = add_node(spec);
    cv_.notify_all();
    return st;
  }

  absl::Status remove_node(std::string_view node_id) override {
    FLEET_RETURN_IF_ERROR(c_.erase(nodes_map_, node_id).status());
    MutexLock lock(mu_);
    registry_.erase(std::string(node_id));
    invalidate_locked();
    return absl::OkStatus();
  }

  // ---- decisions --------------------------------------------------------------

  absl::StatusOr<Ticket> acquire(const Hints& hints) override {
    Clock* clock = c_.clock();
    const auto deadline = clock->now() + hints.wait;
    bool waited = false;
    bool others_filled = false;  // found full while our own requests left room
    for (;;) {
      std::shared_ptr<const SlotRequest> shape;
      std::uint32_t rotate = 0;
      std::uint64_t generation = 0;  // releases seen before this attempt
      {
        MutexLock lock(mu_);
        FLEET_RETURN_IF_ERROR(build_request_locked(hints, clock->now(), &shape, &rotate));
        generation = release_generation_;
      }
      SlotRequest request = *shape;
      request.rotate = rotate;
      auto grant = c_.acquire_slot(slot_pool_, request);
      if (!grant.ok()) return grant.status();
      MutexLock lock(mu_);
      if (grant->has_value()) return granted_locked(**grant, others_filled);
      saturated_until_ = clock->now() + kSaturationWindow;
      others_filled = others_filled || others_fill_locked(request);
      if (clock->now() >= deadline) return rejected_locked(request, others_filled);
      if (!waited) {
        waited = true;
        ++stats_.waits;
      }
      // Woken by a release of ours, or by another gateway's announcement
      // (freed_channel_); the poll is the backstop for a lost message.
      const auto until = std::min(deadline, clock->now() + kWaitPoll);
      while (!stop_ && release_generation_ == generation && clock->now() < until) {
        clock->wait_until(lock.native(), cv_, until);
      }
      if (stop_) return absl::CancelledError("the router is shutting down");
    }
  }

  absl::Status acquire_async(const Hints& hints, TicketCallback done) override {
    if (!done) return absl::InvalidArgumentError("acquire_async needs a callback");
    if (hints.wait.count() != 0) {
      done(absl::InvalidArgumentError(
          "acquire_async does not wait for a slot: hints.wait must be zero (use "
          "acquire, or call again on ResourceExhausted)"));
      return absl::OkStatus();
    }
    std::shared_ptr<const SlotRequest> shape;
    std::uint32_t rotate = 0;
    {
      MutexLock lock(mu_);
      absl::Status st =
          stop_ ? absl::CancelledError("the router is shutting down")
                : build_request_locked(hints, c_.clock()->now(), &shape, &rotate);
      if (!st.ok()) {
        lock.unlock();
        done(std::move(st));
        return absl::OkStatus();
      }
      ++pending_async_;
    }
    SlotRequest request = *shape;
    request.rotate = rotate;
    return c_.acquire_slot_async(
        slot_pool_, request,
        [this, kept = std::move(shape),
         done = std::move(done)](absl::StatusOr<std::optional<SlotGrant>> grant) {
          absl::StatusOr<Ticket> ticket = absl::UnknownError("");
          {
            MutexLock lock(mu_);
            if (!grant.ok()) {
              ticket = grant.status();
            } else if (grant->has_value()) {
              ticket = granted_locked(**grant, false);
            } else {
              saturated_until_ = c_.clock()->now() + kSaturationWindow;
              ticket = rejected_locked(*kept, others_fill_locked(*kept));
            }
          }
          done(std::move(ticket));
          // Last: the destructor may return once this is zero.
          MutexLock lock(mu_);
          if (--pending_async_ == 0) cv_.notify_all();
        });
  }

  absl::Status release(const Ticket& ticket, const Outcome& outcome) override {
    Clock* clock = c_.clock();
    {
      MutexLock lock(mu_);
      auto it = tickets_.find(ticket.id);
      if (it == tickets_.end() || it->second != ticket.node_id) {
        return absl::FailedPreconditionError(
            fmt::format("ticket {} for node '{}' is unknown or already released",
                        ticket.id, ticket.node_id));
      }
      tickets_.erase(it);
    }
    const auto latency =
        outcome.latency.value_or(std::chrono::duration_cast<std::chrono::microseconds>(
            clock->now() - ticket.started));
    const int failures = observations_.finished(
        ticket.node_id, outcome.success, static_cast<double>(latency.count()) / 1000.0);
    if (failures >= o_.breaker_failures && circuits_.trip(ticket.node_id, clock->now())) {
      {
        MutexLock lock(mu_);
        ++stats_.breaker_trips;
        invalidate_locked();
      }
      core_.log().warn("node '{}' of pool '{}' failed {} times in a row: out for {} ms",
                       ticket.node_id, o_.name, o_.breaker_failures,
                       o_.breaker_cooldown.count());
      circuits_.share(ticket.node_id);
    }
    absl::Status freed = free_slot(ticket.node_id);
    bool announce = false;
    {
      // Only now is the slot free for a waiter to take.
      MutexLock lock(mu_);
      ++release_generation_;
      announce = clock->now() < saturated_until_;
    }
    cv_.notify_all();
    if (announce) {
      if (auto st = c_.publish(freed_channel_, ticket.node_id); !st.ok()) {
        core_.log().log(LogLevel::kDebug, "announcing a free slot: {}", st.ToString());
      }
    }
    return freed;
  }

  void report_host_metrics(std::string_view node_id, std::optional<double> cpu_load,
                           std::optional<double> gpu_free_mb) override {
    observations_.host_metrics(std::string(node_id), cpu_load, gpu_free_mb);
  }

  absl::Status run_once() override { return core_.run_once(); }

  // ---- views ------------------------------------------------------------------

  std::vector<NodeView> nodes() override {
    MutexLock lock(mu_);
    const auto now = c_.clock()->now();
    std::vector<NodeView> out;
    for (const auto& [id, spec] : registry_) {
      NodeView v;
      v.spec = spec;
      auto u = usage_.find(id);
      v.cluster_inflight = u == usage_.end() ? 0 : u->second;
      const auto figures = observations_.figures(id);
      v.own_inflight = figures.own_inflight;
      v.decisions = figures.decisions;
      v.failures = figures.failures;
      auto a = aggregates_.find(id);
      if (a != aggregates_.end()) {
        v.reporters = a->second.reporters;
        v.latency_ms = metric(a->second, kLatency);
        v.success_rate = metric(a->second, kSuccess);
        v.cpu_load = metric(a->second, kCpu);
        v.gpu_free_mb = metric(a->second, kGpuFree);
      }
      v.circuit_reopens_in = circuits_.open_for(id, now);
      v.circuit_open = v.circuit_reopens_in > Ms::zero();
      out.push_back(std::move(v));
    }
    return out;
  }

  RouterStats stats() override {
    RouterStats out;
    {
      MutexLock lock(mu_);
      out = stats_;
    }
    observations_.fill(&out);
    out.checks = core_.steps();
    return out;
  }

 private:
  // ---- module hooks -----------------------------------------------------------

  absl::Status attach(const std::string&) override {
    nodes_mirror_ = core_.mirror(
        nodes_map_, "", [this](const MapMirror::Change& ch) { on_registry(ch); });
    breakers_mirror_ =
        core_.mirror(circuits_.map(), "", [this](const MapMirror::Change& ch) {
          circuits_.on_change(ch);
          pool_changed();
        });
    FLEET_RETURN_IF_ERROR(internal::ModuleCore::read_mirrors(
        {nodes_mirror_.get(), breakers_mirror_.get()}, true));
    auto freed = c_.subscribe(freed_channel_, [this](const Message&) {
      {
        MutexLock lock(mu_);
        ++release_generation_;
      }
      cv_.notify_all();
    });
    if (!freed.ok()) return freed.status();
    freed_sub_ = std::move(*freed);
    return check();
  }

  // Publishes this gateway's observations, then re-reads the pool: the
  // registry and circuits (their streams keep them between checks), the
  // aggregates and the in-flight counts. Aborted: the backend lost its data meanwhile
  // (nothing read is kept; the next step puts the pool back first).
  absl::Status check() override {
    const std::uint64_t losses = c_.data_losses();
    absl::Status first = publish_observations();
    auto note = [&first](const absl::Status& st) {
      if (!st.ok() && first.ok()) first = st;
    };
    // The registry and the circuits are small: read them again too, so a
    // check leaves the view current whatever the streams have delivered.
    note(nodes_mirror_->resync());
    note(breakers_mirror_->resync());
    auto aggregates = c_.aggregate_all(observation_spec());
    auto usage = c_.slot_usage(slot_pool_);
    if (c_.data_losses() != losses) {
      return absl::AbortedError("the backend lost its data during the check");
    }
    MutexLock lock(mu_);
    if (aggregates.ok()) {
      aggregates_.clear();
      for (auto& a : *aggregates) {
        if (a.node_id.compare(0, state_prefix_.size(), state_prefix_) != 0) continue;
        std::string id = a.node_id.substr(state_prefix_.size());
        if (id.find('/') != std::string::npos) continue;  // another pool's prefix
        aggregates_[std::move(id)] = std::move(a);
      }
    } else {
      note(aggregates.status());
    }
    if (usage.ok()) {
      usage_ = std::move(*usage);
    } else {
      note(usage.status());
    }
    circuits_.forget_closed(c_.clock()->now());
    invalidate_locked();
    cv_.notify_all();
    return first;
  }

  // The registry and the open circuits as this gateway knew them, written
  // back only where absent (claim), so that what another gateway wrote
  // since wins.
  absl::Status republish() override {
    std::map<std::string, NodeSpec> registry;
    {
      MutexLock lock(mu_);
      registry = registry_;
    }
    for (const auto& [id, spec] : registry) {
      FLEET_RETURN_IF_ERROR(c_.claim(nodes_map_, id, encode_spec(spec)).status());
    }
    FLEET_ASSIGN_OR_RETURN(const std::size_t circuits, circuits_.republish());
    core_.log().warn(
        "pool '{}': the backend lost its data; re-registered {} nodes and {} open "
        "circuits",
        o_.name, registry.size(), circuits);
    return absl::OkStatus();
  }

  absl::Status publish_observations() {
    std::set<std::string> registered;
    {
      MutexLock lock(mu_);
      for (const auto& [id, spec] : registry_) registered.insert(id);
    }
    std::vector<std::pair<std::string, Observations::View>> publish;
    std::vector<std::string> withdraw;
    observations_.changes(registered, &publish, &withdraw);
    absl::Status first;
    for (const auto& [id, view] : publish) {
      absl::Status st = c_.publish_node_state(state_prefix_ + id, view);
      if (st.ok()) {
        observations_.published(id, view);
      } else if (first.ok()) {
        first = st;
      }
    }
    for (const auto& id : withdraw) {
      absl::Status st = c_.remove_node_state(state_prefix_ + id);
      if (st.ok()) {
        observations_.withdrawn(id);
      } else if (first.ok()) {
        first = st;
      }
    }
    return first;
  }

  // ---- change streams (under the mirror's lock) --------------------------------

  void on_registry(const MapMirror::Change& ch) {
    MutexLock lock(mu_);
    if (ch.kind == MapMirror::Kind::kSet) {
      if (auto node = decode_spec(ch.key, ch.value)) {
        registry_[ch.key] = std::move(*node);
      } else {
        core_.log().warn("skipping malformed node '{}' in the registry of pool '{}'",
                         ch.key, o_.name);
        registry_.erase(ch.key);
      }
    } else {
      registry_.erase(ch.key);
    }
    invalidate_locked();
    cv_.notify_all();
  }

  // The registry or a circuit changed: cached requests are stale, and a
  // waiter may find room.
  void pool_changed() {
    {
      MutexLock lock(mu_);
      invalidate_locked();
    }
    cv_.notify_all();
  }

  absl::Status build_request_locked(const Hints& hints, Clock::TimePoint now,
                                    std::shared_ptr<const SlotRequest>* shape,
                                    std::uint32_t* rotate)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return requests_.get(hints, now, registry_, aggregates_, circuits_, shape, rotate);
  }

  // The pool view changed: cached requests are stale.
  void invalidate_locked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { requests_.clear(); }

  // Full, while this gateway's own requests leave room: the others'
  // requests fill it.
  bool others_fill_locked(const SlotRequest& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::int64_t own = 0, capacity = 0;
    for (const auto& c : request.candidates) {
      capacity += c.capacity;
      own += observations_.own_inflight(c.target);
    }
    return own < capacity;
  }

  // No candidate of `request` had room, and no more waiting.
  absl::Status rejected_locked(const SlotRequest& request, bool others_filled)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++stats_.rejections;
    if (others_filled) ++stats_.saw_other_gateways;
    return absl::ResourceExhaustedError(
        fmt::format("all {} eligible nodes of pool '{}' are at capacity",
                    request.candidates.size(), o_.name));
  }

  Ticket granted_locked(const SlotGrant& grant, bool others_filled)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (grant.used >= grant.capacity) {
      saturated_until_ = c_.clock()->now() + kSaturationWindow;
    }
    Ticket t;
    t.id = next_ticket_++;
    t.node_id = grant.target;
    auto it = registry_.find(grant.target);
    if (it != registry_.end()) t.address = it->second.address;
    t.started = c_.clock()->now();
    observations_.started(grant.target);
    t.cluster_inflight = grant.used;
    t.own_inflight = observations_.own_inflight(grant.target);
    if (others_filled || grant.used > t.own_inflight) ++stats_.saw_other_gateways;
    ++stats_.decisions;
    tickets_[t.id] = grant.target;
    return t;
  }

  // Frees one slot. The session's record takes the release even when the
  // backend is unreachable (it frees the slot there as soon as it can), so
  // there is nothing to retry here.
  absl::Status free_slot(const std::string& node) {
    absl::Status st = c_.release_slot(slot_pool_, node);
    if (absl::IsFailedPrecondition(st)) {
      // The host called Coordinator::leave() with tickets still held.
      core_.log().warn("slot on '{}' was already freed (the session left)", node);
      return absl::OkStatus();
    }
    return st;
  }

  internal::ModuleCore core_;  // first: destroyed last, stopped first
  Coordinator& c_;
  const RouterOptions o_;
  const std::string slot_pool_, nodes_map_, state_prefix_, freed_channel_;
  internal_router::Circuits circuits_;
  internal_router::Observations observations_;

  internal::Mutex mu_;
  std::condition_variable cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, NodeSpec> registry_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, NodeAggregate> aggregates_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::int64_t> usage_ ABSL_GUARDED_BY(mu_);
  std::map<std::uint64_t, std::string> tickets_ ABSL_GUARDED_BY(mu_);  // id -> node
  std::uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  std::uint64_t release_generation_ ABSL_GUARDED_BY(mu_) = 0;
  // acquire_async calls not yet called back.
  std::size_t pending_async_ ABSL_GUARDED_BY(mu_) = 0;
  // Until then the pool counts as saturated: releases are announced on
  // freed_channel_.
  Clock::TimePoint saturated_until_ ABSL_GUARDED_BY(mu_){};
  internal_router::RequestCache requests_ ABSL_GUARDED_BY(mu_);
  RouterStats stats_ ABSL_GUARDED_BY(mu_);

  std::shared_ptr<MapMirror> nodes_mirror_, breakers_mirror_;  // set by attach()
  Subscription freed_sub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Router>> Router::create(Coordinator& coordinator,
                                                       RouterOptions options) {
  FLEET_RETURN_IF_ERROR(validate_options(options));
  auto router = std::make_unique<RouterImpl>(coordinator, std::move(options));
  FLEET_RETURN_IF_ERROR(router->start());
  return std::unique_ptr<Router>(std::move(router));
}

}  // namespace fleet::router
