// What one gateway measures of the pool's nodes — its own requests in
// flight, latency and success (EWMA), host metrics it was told — and the
// views of them it publishes as Coordinator node state
// "router/<pool>/<node id>" (aggregated over the gateways by
// observation_spec()). Published again only when they change: the session
// re-establishes its views itself after a fault.
#ifndef FLEET_SRC_ROUTER_OBSERVATIONS_HPP_
#define FLEET_SRC_ROUTER_OBSERVATIONS_HPP_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fleet/router.hpp"
#include "internal/mutex.hpp"

namespace fleet::router::internal_router {

class Observations {
 public:
  using View = std::map<std::string, double>;
  explicit Observations(double ewma_alpha);

  // A slot taken on `node` by this gateway.
  void started(const std::string& node) ABSL_LOCKS_EXCLUDED(mu_);
  // One released; returns the node's consecutive failures after it.
  int finished(const std::string& node, bool success, double ms) ABSL_LOCKS_EXCLUDED(mu_);
  void host_metrics(const std::string& node, std::optional<double> cpu,
                    std::optional<double> gpu_free_mb) ABSL_LOCKS_EXCLUDED(mu_);
  std::int64_t own_inflight(const std::string& node) const ABSL_LOCKS_EXCLUDED(mu_);

  struct Figures {
    std::int64_t own_inflight = 0;
    std::uint64_t decisions = 0, failures = 0;
  };
  Figures figures(const std::string& node) const ABSL_LOCKS_EXCLUDED(mu_);
  // The latency histogram of released requests.
  void fill(RouterStats* stats) const ABSL_LOCKS_EXCLUDED(mu_);

  // Views that differ from what was last published — of every `registered`
  // node and of any other this gateway still has requests on — and the
  // published ones to withdraw.
  void changes(const std::set<std::string>& registered,
               std::vector<std::pair<std::string, View>>* publish,
               std::vector<std::string>* withdraw) const ABSL_LOCKS_EXCLUDED(mu_);
  void published(const std::string& node, const View& view) ABSL_LOCKS_EXCLUDED(mu_);
  void withdrawn(const std::string& node) ABSL_LOCKS_EXCLUDED(mu_);

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

  const double alpha_;
  mutable internal::Mutex mu_;
  std::map<std::string, Local> local_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, View> published_ ABSL_GUARDED_BY(mu_);
  std::vector<double> bounds_ms_;  // const after construction
  std::vector<std::uint64_t> counts_ ABSL_GUARDED_BY(mu_);
  double sum_ms_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fleet::router::internal_router

#endif  // FLEET_SRC_ROUTER_OBSERVATIONS_HPP_
