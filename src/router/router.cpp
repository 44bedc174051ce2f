// fleet::router::Router on the Coordinator interface. Shared state of one
// pool, for a pool named P:
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
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "fleet/names.hpp"
#include "fleet/router.hpp"
#include "fmt/format.h"
#include "internal/logger.hpp"
#include "internal/validate.hpp"
#include "nlohmann/json.hpp"

namespace fleet::router {
namespace {

using Json = nlohmann::json;
using Ms = std::chrono::milliseconds;

constexpr std::size_t kMaxPoolBytes = 64;
constexpr double kLatencyBoundsMs[] = {5,   10,   25,   50,   100,  250,
                                       500, 1000, 2500, 5000, 10000};

// Metric names of a gateway's observations of one node.
constexpr const char* kInflight = "inflight";
constexpr const char* kLatency = "latency_ms";
constexpr const char* kSuccess = "success";
constexpr const char* kCpu = "cpu";
constexpr const char* kGpuFree = "gpu_free_mb";

std::string encode_spec(const NodeSpec& n) {
  Json j;
  j["address"] = n.address;
  j["region"] = n.region.name;
  if (n.region.latitude) {
    j["lat"] = *n.region.latitude;
    j["lon"] = *n.region.longitude;
  }
  j["capacity"] = n.capacity;
  j["labels"] = n.labels;
  j["state"] = std::string(to_string(n.state));
  return j.dump();
}

std::optional<NodeSpec> decode_spec(const std::string& id, const std::string& text) {
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  try {
    NodeSpec n;
    n.id = id;
    n.address = j.at("address").get<std::string>();
    n.region.name = j.value("region", std::string());
    if (j.contains("lat") && j.contains("lon")) {
      n.region.latitude = j.at("lat").get<double>();
      n.region.longitude = j.at("lon").get<double>();
    }
    n.capacity = j.at("capacity").get<std::int64_t>();
    n.labels = j.value("labels", std::set<std::string>());
    auto st = parse_node_state(j.value("state", std::string("serving")));
    if (!st.ok() || n.capacity < 1) return std::nullopt;
    n.state = *st;
    return n;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

double distance_km(const Region& a, const Region& b) {
  constexpr double kPi = 3.14159265358979323846;
  constexpr double kEarthKm = 6371.0;
  auto rad = [&](double d) { return d * kPi / 180.0; };
  const double dlat = rad(*b.latitude - *a.latitude);
  const double dlon = rad(*b.longitude - *a.longitude);
  const double h = std::sin(dlat / 2) * std::sin(dlat / 2) +
                   std::cos(rad(*a.latitude)) * std::cos(rad(*b.latitude)) *
                       std::sin(dlon / 2) * std::sin(dlon / 2);
  return 2 * kEarthKm * std::asin(std::min(1.0, std::sqrt(h)));
}

// How far a node's region is from `origin`: 0 for the same region, the
// great-circle distance when both have coordinates, else "far".
double region_distance(const Region& origin, const Region& node) {
  constexpr double kUnknown = 1e9;
  if (!origin.name.empty() && origin.name == node.name) return 0;
  if (origin.latitude && node.latitude) return distance_km(origin, node);
  return kUnknown;
}

absl::Status validate_options(const RouterOptions& o) {
  FLEET_RETURN_IF_ERROR(validate_name("pool name", o.pool));
  if (o.pool.size() > kMaxPoolBytes) {
    return absl::InvalidArgumentError(
        fmt::format("pool name is longer than {} bytes", kMaxPoolBytes));
  }
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
  if (o.breaker_cooldown <= Ms::zero() || o.refresh_interval <= Ms::zero()) {
    return absl::InvalidArgumentError(
        "breaker_cooldown and refresh_interval must be positive");
  }
  if (!(o.ewma_alpha > 0 && o.ewma_alpha <= 1)) {
    return absl::InvalidArgumentError("ewma_alpha must be in (0, 1]");
  }
  return absl::OkStatus();
}

class RouterImpl final : public Router {
 public:
  RouterImpl(Coordinator& c, RouterOptions o)
      : c_(c),
        o_(std::move(o)),
        log_(o_.log_sink, LogLevel::kInfo, "router"),
        slot_pool_("router/" + o_.pool),
        nodes_map_("router/" + o_.pool + "/nodes"),
        breakers_map_("router/" + o_.pool + "/breakers"),
        state_prefix_("router/" + o_.pool + "/"),
        freed_channel_("router/" + o_.pool + "/freed"),
        rng_(o_.seed != 0 ? o_.seed : std::random_device{}()) {
    stats_.latency_bounds_ms.assign(std::begin(kLatencyBoundsMs),
                                    std::end(kLatencyBoundsMs));
    stats_.latency_counts.assign(stats_.latency_bounds_ms.size() + 1, 0);
  }

  ~RouterImpl() override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      stop_ = true;
      // acquire_async callbacks use this object: each comes within the
      // Coordinator's command timeout.
      cv_.wait(lock, [this] { return pending_async_ == 0; });
    }
    cv_.notify_all();
    if (refresher_.joinable()) refresher_.join();
    connection_watch_.cancel();
    registry_watch_.cancel();
    breaker_watch_.cancel();
    freed_sub_.cancel();
    // Tickets still held stay counted until the session leaves or expires,
    // exactly as after a crash: Coordinator::leave() frees them at once.
  }

  absl::Status start() {
    auto reg = c_.watch(nodes_map_, "", [this](const WatchEvent& e) { on_registry(e); });
    if (!reg.ok()) return reg.status();
    registry_watch_ = std::move(*reg);
    auto br = c_.watch(breakers_map_, "", [this](const WatchEvent& e) { on_breaker(e); });
    if (!br.ok()) return br.status();
    breaker_watch_ = std::move(*br);
    auto freed = c_.subscribe(freed_channel_, [this](const Message&) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++release_generation_;
      }
      cv_.notify_all();
    });
    if (!freed.ok()) return freed.status();
    freed_sub_ = std::move(*freed);
    // Back after an outage (and, after a data loss, with the registry to
    // re-register): refresh now rather than at the next interval.
    auto conn = c_.watch_connection([this](ConnectionState s) {
      if (s != ConnectionState::kReconnected) return;
      {
        std::lock_guard<std::mutex> lock(mu_);
        refresh_now_ = true;
      }
      cv_.notify_all();
    });
    if (!conn.ok()) return conn.status();
    connection_watch_ = std::move(*conn);
    {
      std::lock_guard<std::mutex> lock(mu_);
      losses_seen_ = c_.data_losses();
    }
    FLEET_RETURN_IF_ERROR(refresh());
    if (o_.background_refresh) refresher_ = std::thread([this] { refresh_loop(); });
    return absl::OkStatus();
  }

  const RouterOptions& options() const override { return o_; }

  // ---- registry ---------------------------------------------------------------

  absl::Status add_node(const NodeSpec& spec) override {
    FLEET_RETURN_IF_ERROR(validate_name("node id", spec.id));
    if (spec.id.size() > kMaxNodeIdBytes || spec.address.empty() || spec.capacity < 1) {
      return absl::InvalidArgumentError(
          fmt::format("node '{}': needs an address, a positive capacity and an id of at "
                      "most {} bytes",
                      spec.id, kMaxNodeIdBytes));
    }
    auto put = c_.put(nodes_map_, spec.id, encode_spec(spec));
    if (!put.ok()) return put.status();
    std::lock_guard<std::mutex> lock(mu_);
    registry_[spec.id] = spec;
    invalidate_locked();
    return absl::OkStatus();
  }

  absl::Status set_node_state(std::string_view node_id, NodeState state) override {
    NodeSpec spec;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = registry_.find(std::string(node_id));
      if (it == registry_.end()) {
        return absl::NotFoundError(
            fmt::format("no node '{}' in pool '{}'", node_id, o_.pool));
      }
      spec = it->second;
    }
    spec.state = state;
    auto st = add_node(spec);
    cv_.notify_all();
    return st;
  }

  absl::Status remove_node(std::string_view node_id) override {
    auto erased = c_.erase(nodes_map_, node_id);
    if (!erased.ok()) return erased.status();
    std::lock_guard<std::mutex> lock(mu_);
    registry_.erase(std::string(node_id));
    invalidate_locked();
    return absl::OkStatus();
  }

  // ---- decisions --------------------------------------------------------------

  absl::StatusOr<Ticket> acquire(const Hints& hints) override {
    Clock* clock = c_.clock();
    const auto deadline = clock->now() + hints.wait;
    bool waited = false;
    while (true) {
      std::shared_ptr<const SlotRequest> shape;
      std::uint32_t rotate = 0;
      std::uint64_t generation = 0;  // releases seen before this attempt
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto built = build_request_locked(hints, clock->now(), &shape, &rotate);
        if (!built.ok()) return built;
        generation = release_generation_;
      }
      SlotRequest request = *shape;
      request.rotate = rotate;
      auto grant = c_.acquire_slot(slot_pool_, request);
      if (!grant.ok()) return grant.status();
      std::unique_lock<std::mutex> lock(mu_);
      if (grant->has_value()) return granted_locked(**grant);
      mark_saturated_locked();
      if (clock->now() >= deadline) return rejected_locked(request);
      if (!waited) {
        waited = true;
        ++stats_.waits;
      }
      // Woken by a release of ours, or by another gateway's announcement
      // (freed_channel_); the poll is the backstop for a lost message.
      constexpr Ms kWaitPoll{50};
      const auto until = std::min(deadline, clock->now() + kWaitPoll);
      while (!stop_ && release_generation_ == generation && clock->now() < until) {
        clock->wait_until(lock, cv_, until);
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
      std::unique_lock<std::mutex> lock(mu_);
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
    return c_.acquire_slot_async(slot_pool_, request,
                                 [this, kept = std::move(shape), done = std::move(done)](
                                     absl::StatusOr<std::optional<SlotGrant>> grant) {
                                   absl::StatusOr<Ticket> ticket = absl::UnknownError("");
                                   {
                                     std::lock_guard<std::mutex> lock(mu_);
                                     if (!grant.ok()) {
                                       ticket = grant.status();
                                     } else if (grant->has_value()) {
                                       ticket = granted_locked(**grant);
                                     } else {
                                       mark_saturated_locked();
                                       ticket = rejected_locked(*kept);
                                     }
                                   }
                                   done(std::move(ticket));
                                   // Last: the destructor may return once this is zero.
                                   std::lock_guard<std::mutex> lock(mu_);
                                   if (--pending_async_ == 0) cv_.notify_all();
                                 });
  }

  absl::Status release(const Ticket& ticket, const Outcome& outcome) override {
    Clock* clock = c_.clock();
    bool trip = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = tickets_.find(ticket.id);
      if (it == tickets_.end() || it->second != ticket.node_id) {
        return absl::FailedPreconditionError(
            fmt::format("ticket {} for node '{}' is unknown or already released",
                        ticket.id, ticket.node_id));
      }
      tickets_.erase(it);
      const auto latency =
          outcome.latency.value_or(std::chrono::duration_cast<std::chrono::microseconds>(
              clock->now() - ticket.started));
      const double ms = static_cast<double>(latency.count()) / 1000.0;
      Local& l = local_[ticket.node_id];
      --l.own_inflight;
      const double a = o_.ewma_alpha;
      l.latency_ms = l.samples == 0 ? ms : (1 - a) * l.latency_ms + a * ms;
      const double ok = outcome.success ? 1.0 : 0.0;
      l.success = l.samples == 0 ? ok : (1 - a) * l.success + a * ok;
      ++l.samples;
      if (outcome.success) {
        l.consecutive_failures = 0;
      } else {
        ++l.failures;
        ++l.consecutive_failures;
        if (l.consecutive_failures >= o_.breaker_failures &&
            breaker_open_locked(ticket.node_id, clock->now()) == Ms::zero()) {
          trip = true;
          breakers_[ticket.node_id] = clock->now() + o_.breaker_cooldown;
          own_trips_.insert(ticket.node_id);
          invalidate_locked();
          ++stats_.breaker_trips;
        }
      }
      std::size_t b = 0;
      while (b < stats_.latency_bounds_ms.size() && ms > stats_.latency_bounds_ms[b]) ++b;
      ++stats_.latency_counts[b];
      stats_.latency_sum_ms += ms;
    }
    if (trip) {
      log_.warn("node '{}' of pool '{}' failed {} times in a row: out for {} ms",
                ticket.node_id, o_.pool, o_.breaker_failures,
                o_.breaker_cooldown.count());
      const auto closes = c_.clock()->wall_now() + o_.breaker_cooldown;
      const auto closes_ms =
          std::chrono::duration_cast<Ms>(closes.time_since_epoch()).count();
      auto put = c_.put(breakers_map_, ticket.node_id, std::to_string(closes_ms),
                        o_.breaker_cooldown);
      if (put.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        newer_locked(breakers_map_, ticket.node_id, put->version);
      } else {
        log_.warn("could not share the open circuit of '{}': {}", ticket.node_id,
                  put.status().ToString());
      }
    }
    absl::Status freed = free_slot(ticket.node_id);
    bool announce = false;
    {
      // Only now is the slot free for a waiter to take.
      std::lock_guard<std::mutex> lock(mu_);
      ++release_generation_;
      announce = clock->now() < saturated_until_;
    }
    cv_.notify_all();
    if (announce) {
      if (auto st = c_.publish(freed_channel_, ticket.node_id); !st.ok()) {
        log_.log(LogLevel::kDebug, "announcing a free slot: {}", st.ToString());
      }
    }
    return freed;
  }

  void report_host_metrics(std::string_view node_id, std::optional<double> cpu_load,
                           std::optional<double> gpu_free_mb) override {
    std::lock_guard<std::mutex> lock(mu_);
    Local& l = local_[std::string(node_id)];
    if (cpu_load && std::isfinite(*cpu_load)) l.cpu = *cpu_load;
    if (gpu_free_mb && std::isfinite(*gpu_free_mb)) l.gpu_free_mb = *gpu_free_mb;
  }

  // ---- refresh ----------------------------------------------------------------

  absl::Status refresh() override {
    // After the backend lost its data, what this gateway knows of the pool
    // goes back first; a loss noticed while reading discards what was read.
    for (int attempt = 0;; ++attempt) {
      const std::uint64_t losses = c_.data_losses();
      bool lost = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        lost = losses != losses_seen_;
      }
      if (lost) FLEET_RETURN_IF_ERROR(re_register(losses));
      absl::Status st = refresh_once(losses);
      if (!absl::IsAborted(st) || attempt == 2) return st;
    }
  }

  // The registry and the open circuits as this gateway knew them, written
  // back only where absent (claim), so that what another gateway wrote
  // since wins; versions start again with the backend's.
  absl::Status re_register(std::uint64_t losses) {
    std::map<std::string, NodeSpec> registry;
    std::map<std::string, Clock::TimePoint> breakers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      registry = registry_;
      breakers = breakers_;
      versions_.clear();
    }
    const auto now = c_.clock()->now();
    std::size_t circuits = 0;
    for (const auto& [id, spec] : registry) {
      auto claimed = c_.claim(nodes_map_, id, encode_spec(spec));
      if (!claimed.ok()) return claimed.status();
    }
    for (const auto& [id, until] : breakers) {
      if (until <= now) continue;
      const auto left = std::chrono::ceil<Ms>(until - now);
      const auto closes = c_.clock()->wall_now() + left;
      const auto closes_ms =
          std::chrono::duration_cast<Ms>(closes.time_since_epoch()).count();
      auto claimed = c_.claim(breakers_map_, id, std::to_string(closes_ms), left);
      if (!claimed.ok()) return claimed.status();
      ++circuits;
    }
    log_.warn(
        "pool '{}': the backend lost its data; re-registered {} nodes and {} open "
        "circuits",
        o_.pool, registry.size(), circuits);
    std::lock_guard<std::mutex> lock(mu_);
    losses_seen_ = losses;
    return absl::OkStatus();
  }

  // Aborted: the backend lost its data meanwhile (nothing read was kept).
  absl::Status refresh_once(std::uint64_t losses) {
    std::vector<std::pair<std::string, std::map<std::string, double>>> observations;
    std::vector<std::string> withdrawn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // A view of every registered node (in-flight 0 included), and of any
      // other node this gateway still has requests on.
      std::set<std::string> ids;
      for (const auto& [id, spec] : registry_) ids.insert(id);
      for (const auto& [id, l] : local_) {
        if (l.own_inflight > 0) ids.insert(id);
      }
      for (const auto& id : ids) {
        std::map<std::string, double> m;
        auto it = local_.find(id);
        const Local l = it == local_.end() ? Local{} : it->second;
        m[kInflight] = static_cast<double>(l.own_inflight);
        if (l.samples > 0) {
          m[kLatency] = l.latency_ms;
          m[kSuccess] = l.success;
        }
        if (l.cpu) m[kCpu] = *l.cpu;
        if (l.gpu_free_mb) m[kGpuFree] = *l.gpu_free_mb;
        auto p = published_.find(id);
        if (p == published_.end() || p->second != m) observations.emplace_back(id, m);
      }
      for (const auto& [id, m] : published_) {
        if (ids.count(id) == 0) withdrawn.push_back(id);
      }
    }
    absl::Status first_error;
    auto note = [&](const absl::Status& st) {
      if (!st.ok() && first_error.ok()) first_error = st;
    };
    for (const auto& [id, metrics] : observations) {
      absl::Status st = c_.publish_node_state(state_prefix_ + id, metrics);
      note(st);
      if (st.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        published_[id] = metrics;
      }
    }
    for (const auto& id : withdrawn) {
      absl::Status st = c_.remove_node_state(state_prefix_ + id);
      note(st);
      if (st.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        published_.erase(id);
      }
    }

    auto entries = c_.scan(nodes_map_);
    AggregationSpec spec;
    spec.metrics = {{kInflight, Aggregation::kSum},
                    {kLatency, Aggregation::kAvg},
                    {kSuccess, Aggregation::kAvg},
                    {kCpu, Aggregation::kMax},
                    {kGpuFree, Aggregation::kMax}};
    auto aggregates = c_.aggregate_all(spec);
    auto usage = c_.slot_usage(slot_pool_);
    auto breakers = c_.scan(breakers_map_);
    if (c_.data_losses() != losses) {
      return absl::AbortedError("the backend lost its data during the refresh");
    }

    std::lock_guard<std::mutex> lock(mu_);
    if (entries.ok()) {
      std::map<std::string, NodeSpec> registry;
      for (const auto& e : *entries) {
        newer_locked(nodes_map_, e.key, e.entry.version);
        auto node = decode_spec(e.key, e.entry.value);
        if (!node) {
          log_.warn("skipping malformed node '{}' in the registry of pool '{}'", e.key,
                    o_.pool);
          continue;
        }
        registry[e.key] = std::move(*node);
      }
      registry_ = std::move(registry);
    } else {
      note(entries.status());
    }
    if (aggregates.ok()) {
      aggregates_.clear();
      for (auto& a : *aggregates) {
        if (a.node_id.compare(0, state_prefix_.size(), state_prefix_) != 0) continue;
        const std::string id = a.node_id.substr(state_prefix_.size());
        if (id.find('/') != std::string::npos) continue;  // another pool's prefix
        aggregates_[id] = std::move(a);
      }
    } else {
      note(aggregates.status());
    }
    if (usage.ok()) {
      usage_ = std::move(*usage);
    } else {
      note(usage.status());
    }
    if (breakers.ok()) {
      std::map<std::string, Clock::TimePoint> open;
      for (const auto& e : *breakers) {
        newer_locked(breakers_map_, e.key, e.entry.version);
        open[e.key] = closes_at(e.entry.value);
      }
      // Our own trips count until their shared entry is seen.
      for (const auto& [id, until] : breakers_) {
        if (open.count(id) == 0 && own_trips_.count(id) > 0) open[id] = until;
      }
      own_trips_.clear();
      breakers_ = std::move(open);
    } else {
      note(breakers.status());
    }
    invalidate_locked();
    cv_.notify_all();
    return first_error;
  }

  // ---- views ------------------------------------------------------------------

  std::vector<NodeView> nodes() override {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = c_.clock()->now();
    std::vector<NodeView> out;
    for (const auto& [id, spec] : registry_) {
      NodeView v;
      v.spec = spec;
      auto u = usage_.find(id);
      v.cluster_inflight = u == usage_.end() ? 0 : u->second;
      auto l = local_.find(id);
      if (l != local_.end()) {
        v.own_inflight = l->second.own_inflight;
        v.decisions = l->second.decisions;
        v.failures = l->second.failures;
      }
      auto a = aggregates_.find(id);
      if (a != aggregates_.end()) {
        v.reporters = a->second.reporters;
        v.latency_ms = metric(a->second, kLatency);
        v.success_rate = metric(a->second, kSuccess);
        v.cpu_load = metric(a->second, kCpu);
        v.gpu_free_mb = metric(a->second, kGpuFree);
      }
      v.circuit_reopens_in = breaker_open_locked(id, now);
      v.circuit_open = v.circuit_reopens_in > Ms::zero();
      out.push_back(std::move(v));
    }
    return out;
  }

  RouterStats stats() override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  struct Local {
    std::int64_t own_inflight = 0;
    double latency_ms = 0;
    double success = 1;
    std::uint64_t samples = 0;
    int consecutive_failures = 0;
    std::uint64_t decisions = 0;
    std::uint64_t failures = 0;
    std::optional<double> cpu, gpu_free_mb;
  };

  static std::optional<double> metric(const NodeAggregate& a, const char* name) {
    auto it = a.metrics.find(name);
    if (it == a.metrics.end() || it->second.reporters == 0) return std::nullopt;
    return it->second.value;
  }

  // When a shared breaker entry closes, on our clock. Relative to the wall
  // clock, so that a watch event delivered late gives the same answer;
  // bounded by a day, so that a malformed value cannot keep a node out.
  Clock::TimePoint closes_at(const std::string& value) const {
    char* end = nullptr;
    const long long ms = std::strtoll(value.c_str(), &end, 10);
    const auto wall_ms =
        std::chrono::duration_cast<Ms>(c_.clock()->wall_now().time_since_epoch()).count();
    const long long left = std::clamp<long long>(ms - wall_ms, 0, 24LL * 3600 * 1000);
    return c_.clock()->now() + Ms(left);
  }

  // Watch events may arrive after a refresh() that already read a newer
  // state: only a change newer than what we know is applied.
  bool newer_locked(const std::string& map, const std::string& key,
                    std::uint64_t version) {
    auto& seen = versions_[map + '\n' + key];
    if (version <= seen) return false;
    seen = version;
    return true;
  }

  // Time left on the node's open circuit, zero if closed.
  Ms breaker_open_locked(const std::string& id, Clock::TimePoint now) const {
    auto it = breakers_.find(id);
    if (it == breakers_.end() || it->second <= now) return Ms::zero();
    return std::chrono::ceil<Ms>(it->second - now);
  }

  void on_registry(const WatchEvent& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!newer_locked(nodes_map_, e.key, e.version)) return;
    if (e.type == WatchEventType::kSet) {
      if (auto node = decode_spec(e.key, e.value)) {
        registry_[e.key] = std::move(*node);
      } else {
        log_.warn("skipping malformed node '{}' in the registry of pool '{}'", e.key,
                  o_.pool);
      }
    } else {
      registry_.erase(e.key);
    }
    invalidate_locked();
    cv_.notify_all();
  }

  void on_breaker(const WatchEvent& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!newer_locked(breakers_map_, e.key, e.version)) return;
    if (e.type == WatchEventType::kSet) {
      breakers_[e.key] = closes_at(e.value);
    } else if (own_trips_.count(e.key) == 0) {  // not the end of an older trip
      breakers_.erase(e.key);
    }
    invalidate_locked();
    cv_.notify_all();
  }

  // The request for `hints`: built once per change of the pool view and
  // shared (the common hints only); `rotate` makes equal nodes take turns,
  // and power of two gets its own shuffled copy.
  absl::Status build_request_locked(const Hints& hints, Clock::TimePoint now,
                                    std::shared_ptr<const SlotRequest>* shape,
                                    std::uint32_t* rotate) {
    if (hints.exclude.empty() && !hints.origin) {
      auto key = std::make_pair(static_cast<int>(hints.priority), hints.label);
      auto it = cache_.find(key);
      if (it == cache_.end() || now >= it->second.valid_until) {
        CachedRequest built;
        auto request = std::make_shared<SlotRequest>();
        built.status =
            compose_request_locked(hints, now, request.get(), &built.valid_until);
        built.request = std::move(request);
        it = cache_.insert_or_assign(std::move(key), std::move(built)).first;
      }
      if (!it->second.status.ok()) return it->second.status;
      *shape = it->second.request;
    } else {
      auto request = std::make_shared<SlotRequest>();
      Clock::TimePoint unused;
      FLEET_RETURN_IF_ERROR(compose_request_locked(hints, now, request.get(), &unused));
      *shape = std::move(request);
    }
    *rotate = static_cast<std::uint32_t>(rotation_++ % (*shape)->candidates.size());
    if (o_.policy == Policy::kPowerOfTwo) {
      auto shuffled = std::make_shared<SlotRequest>(**shape);
      std::shuffle(shuffled->candidates.begin(), shuffled->candidates.end(), rng_);
      *shape = std::move(shuffled);
    }
    return absl::OkStatus();
  }

  void mark_saturated_locked() {
    constexpr Ms kSaturationWindow{1000};
    saturated_until_ = c_.clock()->now() + kSaturationWindow;
  }

  // The pool view changed: cached requests are stale.
  void invalidate_locked() { cache_.clear(); }

  // *valid_until: when an open circuit among the nodes closes (the request
  // changes then), or far in the future.
  absl::Status compose_request_locked(const Hints& hints, Clock::TimePoint now,
                                      SlotRequest* request,
                                      Clock::TimePoint* valid_until) {
    *valid_until = Clock::TimePoint::max();
    std::vector<const NodeSpec*> nodes;
    bool any_label = hints.label.empty();
    for (const auto& [id, spec] : registry_) {
      if (!hints.label.empty() && spec.labels.count(hints.label) == 0) continue;
      any_label = true;
      const Ms open = breaker_open_locked(id, now);
      if (open > Ms::zero()) *valid_until = std::min(*valid_until, now + open);
      if (spec.state != NodeState::kServing || hints.exclude.count(id) > 0 ||
          open > Ms::zero()) {
        continue;
      }
      nodes.push_back(&spec);
    }
    if (registry_.empty()) {
      return absl::UnavailableError(fmt::format("pool '{}' has no nodes", o_.pool));
    }
    if (!any_label) {
      return absl::NotFoundError(
          fmt::format("no node of pool '{}' has label '{}'", o_.pool, hints.label));
    }
    if (nodes.empty()) {
      return absl::UnavailableError(fmt::format(
          "no node of pool '{}' can take requests now (draining, down, excluded or with "
          "an open circuit)",
          o_.pool));
    }
    const std::size_t n = nodes.size();
    request->candidates.clear();
    request->candidates.reserve(n);
    for (const NodeSpec* spec : nodes) {
      SlotCandidate c;
      c.target = spec->id;
      c.capacity = spec->capacity;
      if (hints.priority == Priority::kLow) {
        c.capacity = std::max<std::int64_t>(
            1, static_cast<std::int64_t>(std::floor(static_cast<double>(spec->capacity) *
                                                    o_.low_priority_share)));
      }
      request->candidates.push_back(std::move(c));
    }
    request->load_weight = 1.0;
    request->tier_load_limit = 1.0;
    request->sample = 0;
    switch (o_.policy) {
      case Policy::kLeastInflight:
        break;
      case Policy::kPowerOfTwo:
        request->sample = 2;
        break;
      case Policy::kRegionAware:
        set_tiers_locked(hints, nodes, request);
        request->tier_load_limit = o_.region_load_limit;
        break;
      case Policy::kWeighted:
        set_scores_locked(nodes, request);
        request->load_weight = o_.weights.inflight;
        break;
    }
    return absl::OkStatus();
  }

  void set_tiers_locked(const Hints& hints, const std::vector<const NodeSpec*>& nodes,
                        SlotRequest* request) const {
    const std::optional<Region>& origin = hints.origin ? hints.origin : o_.home;
    if (!origin) return;  // no location: one tier
    std::vector<double> distance(nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      distance[i] = region_distance(*origin, nodes[i]->region);
    }
    std::vector<double> sorted = distance;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      request->candidates[i].tier = static_cast<std::int32_t>(
          std::lower_bound(sorted.begin(), sorted.end(), distance[i]) - sorted.begin());
    }
  }

  void set_scores_locked(const std::vector<const NodeSpec*>& nodes,
                         SlotRequest* request) const {
    struct Factors {
      std::optional<double> latency, success, cpu, gpu;
    };
    std::vector<Factors> f(nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      auto a = aggregates_.find(nodes[i]->id);
      if (a == aggregates_.end()) continue;
      f[i] = {metric(a->second, kLatency), metric(a->second, kSuccess),
              metric(a->second, kCpu), metric(a->second, kGpuFree)};
    }
    // Unmeasured nodes get the mean of the measured ones: neutral.
    auto fill = [&](std::optional<double> Factors::*field, double fallback) {
      double sum = 0;
      int count = 0;
      for (const auto& x : f) {
        if (x.*field) {
          sum += *(x.*field);
          ++count;
        }
      }
      const double mean = count > 0 ? sum / count : fallback;
      double max = 0;
      for (auto& x : f) {
        if (!(x.*field)) x.*field = mean;
        max = std::max(max, *(x.*field));
      }
      return max;
    };
    const double max_latency = fill(&Factors::latency, 0);
    fill(&Factors::success, 1);
    fill(&Factors::cpu, 0);
    const double max_gpu = fill(&Factors::gpu, 0);
    const Weights& w = o_.weights;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      double score = 0;
      if (max_latency > 0) score += w.latency * *f[i].latency / max_latency;
      score += w.success * (1 - std::clamp(*f[i].success, 0.0, 1.0));
      score += w.load * std::clamp(*f[i].cpu, 0.0, 1.0);
      if (max_gpu > 0) score += w.gpu * (1 - *f[i].gpu / max_gpu);
      request->candidates[i].score = score;
    }
  }

  Ticket granted_locked(const SlotGrant& grant) {
    if (grant.used >= grant.capacity) mark_saturated_locked();
    return record_grant_locked(grant);
  }

  // No candidate of `request` had room, and no more waiting.
  absl::Status rejected_locked(const SlotRequest& request) {
    ++stats_.rejections;
    // Full, while this gateway's own requests leave room: the others'
    // requests fill it.
    std::int64_t own = 0, capacity = 0;
    for (const auto& c : request.candidates) {
      capacity += c.capacity;
      auto l = local_.find(c.target);
      if (l != local_.end()) own += l->second.own_inflight;
    }
    if (own < capacity) ++stats_.saw_other_gateways;
    return absl::ResourceExhaustedError(
        fmt::format("all {} eligible nodes of pool '{}' are at capacity",
                    request.candidates.size(), o_.pool));
  }

  Ticket record_grant_locked(const SlotGrant& grant) {
    Ticket t;
    t.id = next_ticket_++;
    t.node_id = grant.target;
    auto it = registry_.find(grant.target);
    if (it != registry_.end()) t.address = it->second.address;
    t.started = c_.clock()->now();
    Local& l = local_[grant.target];
    ++l.own_inflight;
    ++l.decisions;
    t.cluster_inflight = grant.used;
    t.own_inflight = l.own_inflight;
    if (grant.used > l.own_inflight) ++stats_.saw_other_gateways;
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
      log_.warn("slot on '{}' was already freed (the session left)", node);
      return absl::OkStatus();
    }
    return st;
  }

  void refresh_loop() {
    Clock* clock = c_.clock();
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      const auto next = clock->now() + o_.refresh_interval;
      while (!stop_ && !refresh_now_ && clock->now() < next) {
        clock->wait_until(lock, cv_, next);
      }
      if (stop_) break;
      refresh_now_ = false;
      lock.unlock();
      if (auto st = refresh(); !st.ok()) {
        log_.log(LogLevel::kDebug, "refresh of pool '{}': {}", o_.pool, st.ToString());
      }
      lock.lock();
    }
  }

  Coordinator& c_;
  const RouterOptions o_;
  const internal::Logger log_;
  const std::string slot_pool_, nodes_map_, breakers_map_, state_prefix_, freed_channel_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::map<std::string, NodeSpec> registry_;
  std::map<std::string, NodeAggregate> aggregates_;
  std::map<std::string, std::int64_t> usage_;
  std::map<std::string, Clock::TimePoint> breakers_;  // open until
  std::set<std::string> own_trips_;                   // tripped since the last refresh
  std::map<std::string, std::uint64_t> versions_;     // map + key -> last version seen
  std::map<std::string, Local> local_;
  std::map<std::uint64_t, std::string> tickets_;  // id -> node
  // The observations last published per node (published again only when
  // they change: the session re-establishes them itself after a fault).
  std::map<std::string, std::map<std::string, double>> published_;
  std::uint64_t losses_seen_ = 0;  // Coordinator::data_losses() handled
  bool refresh_now_ = false;       // the connection came back: refresh at once
  std::uint64_t next_ticket_ = 1;
  std::uint64_t release_generation_ = 0;
  std::size_t pending_async_ = 0;  // acquire_async calls not yet called back
  // Until then the pool counts as saturated (a node filled up, or a request
  // found no room): releases are announced on freed_channel_ to wake the
  // gateways that wait for a slot.
  Clock::TimePoint saturated_until_{};
  std::size_t rotation_ = 0;
  struct CachedRequest {
    absl::Status status;
    std::shared_ptr<const SlotRequest> request;
    Clock::TimePoint valid_until;
  };
  std::map<std::pair<int, std::string>, CachedRequest> cache_;  // (priority, label)
  std::mt19937_64 rng_;
  RouterStats stats_;

  Subscription registry_watch_, breaker_watch_, freed_sub_, connection_watch_;
  std::thread refresher_;
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
