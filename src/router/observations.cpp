#include "router/observations.hpp"

#include <cmath>
#include <iterator>

#include "router/policy.hpp"

namespace fleet::router::internal_router {

using internal::MutexLock;

namespace {
constexpr double kLatencyBoundsMs[] = {5,   10,   25,   50,   100,  250,
                                       500, 1000, 2500, 5000, 10000};
}  // namespace

Observations::Observations(double ewma_alpha)
    : alpha_(ewma_alpha),
      bounds_ms_(std::begin(kLatencyBoundsMs), std::end(kLatencyBoundsMs)),
      counts_(bounds_ms_.size() + 1, 0) {}

void Observations::started(const std::string& node) {
  MutexLock lock(mu_);
  Local& l = local_[node];
  ++l.own_inflight;
  ++l.decisions;
}

int Observations::finished(const std::string& node, bool success, double ms) {
  MutexLock lock(mu_);
  Local& l = local_[node];
  --l.own_inflight;
  l.latency_ms = l.samples == 0 ? ms : (1 - alpha_) * l.latency_ms + alpha_ * ms;
  const double ok = success ? 1.0 : 0.0;
  l.success = l.samples == 0 ? ok : (1 - alpha_) * l.success + alpha_ * ok;
  ++l.samples;
  std::size_t b = 0;
  while (b < bounds_ms_.size() && ms > bounds_ms_[b]) ++b;
  ++counts_[b];
  sum_ms_ += ms;
  if (success) {
    l.consecutive_failures = 0;
  } else {
    ++l.failures;
    ++l.consecutive_failures;
  }
  return l.consecutive_failures;
}

void Observations::host_metrics(const std::string& node, std::optional<double> cpu,
                                std::optional<double> gpu_free_mb) {
  MutexLock lock(mu_);
  Local& l = local_[node];
  if (cpu && std::isfinite(*cpu)) l.cpu = *cpu;
  if (gpu_free_mb && std::isfinite(*gpu_free_mb)) l.gpu_free_mb = *gpu_free_mb;
}

std::int64_t Observations::own_inflight(const std::string& node) const {
  MutexLock lock(mu_);
  auto it = local_.find(node);
  return it == local_.end() ? 0 : it->second.own_inflight;
}

Observations::Figures Observations::figures(const std::string& node) const {
  MutexLock lock(mu_);
  auto it = local_.find(node);
  if (it == local_.end()) return {};
  return Figures{it->second.own_inflight, it->second.decisions, it->second.failures};
}

void Observations::fill(RouterStats* stats) const {
  MutexLock lock(mu_);
  stats->latency_bounds_ms = bounds_ms_;
  stats->latency_counts = counts_;
  stats->latency_sum_ms = sum_ms_;
}

void Observations::changes(const std::set<std::string>& registered,
                           std::vector<std::pair<std::string, View>>* publish,
                           std::vector<std::string>* withdraw) const {
  MutexLock lock(mu_);
  std::set<std::string> ids = registered;
  for (const auto& [id, l] : local_) {
    if (l.own_inflight > 0) ids.insert(id);
  }
  for (const auto& id : ids) {
    View m;
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
    if (p == published_.end() || p->second != m) publish->emplace_back(id, std::move(m));
  }
  for (const auto& [id, m] : published_) {
    if (ids.count(id) == 0) withdraw->push_back(id);
  }
}

void Observations::published(const std::string& node, const View& view) {
  MutexLock lock(mu_);
  published_[node] = view;
}

void Observations::withdrawn(const std::string& node) {
  MutexLock lock(mu_);
  published_.erase(node);
}

}  // namespace fleet::router::internal_router
