#include "router/policy.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fmt/format.h"

namespace fleet::router::internal_router {

using Ms = std::chrono::milliseconds;

AggregationSpec observation_spec() {
  AggregationSpec spec;
  spec.metrics = {{kInflight, Aggregation::kSum},
                  {kLatency, Aggregation::kAvg},
                  {kSuccess, Aggregation::kAvg},
                  {kCpu, Aggregation::kMax},
                  {kGpuFree, Aggregation::kMax}};
  return spec;
}

std::optional<double> metric(const NodeAggregate& a, const char* name) {
  auto it = a.metrics.find(name);
  if (it == a.metrics.end() || it->second.reporters == 0) return std::nullopt;
  return it->second.value;
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

double region_distance(const Region& origin, const Region& node) {
  constexpr double kUnknown = 1e9;
  if (!origin.name.empty() && origin.name == node.name) return 0;
  if (origin.latitude && node.latitude) return distance_km(origin, node);
  return kUnknown;
}

namespace {

Ms open_for(const PoolView& pool, const std::string& id) {
  auto it = pool.open_for->find(id);
  return it == pool.open_for->end() ? Ms::zero() : std::max(Ms::zero(), it->second);
}

// Tiers by distance from the origin: the nearest region is tier 0.
void set_tiers(const std::optional<Region>& origin,
               const std::vector<const NodeSpec*>& nodes, SlotRequest* request) {
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

// Scores as router.hpp's Weights describe; unmeasured nodes get the mean
// of the measured ones for each factor (neutral).
void set_scores(const Weights& w, const PoolView& pool,
                const std::vector<const NodeSpec*>& nodes, SlotRequest* request) {
  struct Factors {
    std::optional<double> latency, success, cpu, gpu;
  };
  std::vector<Factors> f(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    auto a = pool.aggregates->find(nodes[i]->id);
    if (a == pool.aggregates->end()) continue;
    f[i] = {metric(a->second, kLatency), metric(a->second, kSuccess),
            metric(a->second, kCpu), metric(a->second, kGpuFree)};
  }
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
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    double score = 0;
    if (max_latency > 0) score += w.latency * *f[i].latency / max_latency;
    score += w.success * (1 - std::clamp(*f[i].success, 0.0, 1.0));
    score += w.load * std::clamp(*f[i].cpu, 0.0, 1.0);
    if (max_gpu > 0) score += w.gpu * (1 - *f[i].gpu / max_gpu);
    request->candidates[i].score = score;
  }
}

}  // namespace

absl::Status compose_request(const RouterOptions& o, const Hints& hints,
                             const PoolView& pool, SlotRequest* request,
                             std::optional<Ms>* changes_in) {
  changes_in->reset();
  std::vector<const NodeSpec*> nodes;
  bool any_label = hints.label.empty();
  for (const auto& [id, spec] : *pool.registry) {
    if (!hints.label.empty() && spec.labels.count(hints.label) == 0) continue;
    any_label = true;
    const Ms open = open_for(pool, id);
    if (open > Ms::zero()) *changes_in = std::min(changes_in->value_or(Ms::max()), open);
    if (spec.state != BackendState::kServing || hints.exclude.count(id) > 0 ||
        open > Ms::zero()) {
      continue;
    }
    nodes.push_back(&spec);
  }
  if (pool.registry->empty()) {
    return absl::UnavailableError(fmt::format("pool '{}' has no nodes", o.name));
  }
  if (!any_label) {
    return absl::NotFoundError(
        fmt::format("no node of pool '{}' has label '{}'", o.name, hints.label));
  }
  if (nodes.empty()) {
    return absl::UnavailableError(fmt::format(
        "no node of pool '{}' can take requests now (draining, down, excluded or with "
        "an open circuit)",
        o.name));
  }
  request->candidates.clear();
  request->candidates.reserve(nodes.size());
  for (const NodeSpec* spec : nodes) {
    SlotCandidate c;
    c.target = spec->id;
    c.capacity = spec->capacity;
    if (hints.priority == Priority::kLow) {
      c.capacity = std::max<std::int64_t>(
          1, static_cast<std::int64_t>(
                 std::floor(static_cast<double>(spec->capacity) * o.low_priority_share)));
    }
    request->candidates.push_back(std::move(c));
  }
  request->load_weight = 1.0;
  request->tier_load_limit = 1.0;
  request->sample = 0;
  request->rotate = 0;
  switch (o.policy) {
    case Policy::kLeastInflight:
      break;
    case Policy::kPowerOfTwo:
      request->sample = 2;
      break;
    case Policy::kRegionAware:
      set_tiers(hints.origin ? hints.origin : o.home, nodes, request);
      request->tier_load_limit = o.region_load_limit;
      break;
    case Policy::kWeighted:
      set_scores(o.weights, pool, nodes, request);
      request->load_weight = o.weights.inflight;
      break;
  }
  return absl::OkStatus();
}

}  // namespace fleet::router::internal_router
