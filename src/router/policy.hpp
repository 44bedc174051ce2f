// The router's policies as a pure function: from the pool as a gateway
// sees it (registry, aggregated observations, open circuits) and a
// request's hints to the SlotRequest that Coordinator::acquire_slot decides
// on atomically. No I/O, no clock, no lock: table-tested in
// tests/unit/router_policy_test.cpp.
#ifndef FLEET_SRC_ROUTER_POLICY_HPP_
#define FLEET_SRC_ROUTER_POLICY_HPP_

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "fleet/router.hpp"
#include "fleet/types.hpp"

namespace fleet::router::internal_router {

// Metric names of a gateway's observations of one node (node state
// "router/<pool>/<node id>"), and how they aggregate over gateways.
inline constexpr const char* kInflight = "inflight";
inline constexpr const char* kLatency = "latency_ms";
inline constexpr const char* kSuccess = "success";
inline constexpr const char* kCpu = "cpu";
inline constexpr const char* kGpuFree = "gpu_free_mb";
AggregationSpec observation_spec();
// A metric of an aggregate, nullopt when no gateway reported it.
std::optional<double> metric(const NodeAggregate& a, const char* name);

// What the policy reads.
struct PoolView {
  const std::map<std::string, NodeSpec>* registry;         // by node id
  const std::map<std::string, NodeAggregate>* aggregates;  // by node id
  // Time left on each open circuit (absent or zero: closed).
  const std::map<std::string, std::chrono::milliseconds>* open_for;
};

// The request for `hints` under `options`' policy and weights. Errors:
// Unavailable (no node at all, or none can take requests: draining, down,
// excluded, open circuit), NotFound (no node has hints.label).
// *changes_in: when the request changes by itself (the first open circuit
// among the label's nodes closes); nullopt if never.
absl::Status compose_request(const RouterOptions& options, const Hints& hints,
                             const PoolView& pool, SlotRequest* request,
                             std::optional<std::chrono::milliseconds>* changes_in);

// Great-circle distance in km between two regions with coordinates.
double distance_km(const Region& a, const Region& b);
// 0 for the same region, distance_km when both have coordinates, else
// "far" (1e9).
double region_distance(const Region& origin, const Region& node);

}  // namespace fleet::router::internal_router

#endif  // FLEET_SRC_ROUTER_POLICY_HPP_
