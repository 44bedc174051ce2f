// The SlotRequest for a request's hints, composed by the policy
// (policy.hpp) once per change of the pool view and shared by the requests
// with the same common hints (priority and label, no exclusions, no
// origin); `rotate` makes equal nodes take turns, and power of two gets its
// own shuffled copy. Not thread-safe: the router holds its lock around it.
#ifndef FLEET_SRC_ROUTER_REQUEST_CACHE_HPP_
#define FLEET_SRC_ROUTER_REQUEST_CACHE_HPP_

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "fleet/router.hpp"
#include "router/circuits.hpp"

namespace fleet::router::internal_router {

class RequestCache {
 public:
  explicit RequestCache(const RouterOptions& o)
      : o_(o), rng_(o.seed != 0 ? o.seed : std::random_device{}()) {}

  // The request for `hints` now, and where its candidates start.
  absl::Status get(const Hints& hints, Clock::TimePoint now,
                   const std::map<std::string, NodeSpec>& registry,
                   const std::map<std::string, NodeAggregate>& aggregates,
                   const Circuits& circuits, std::shared_ptr<const SlotRequest>* shape,
                   std::uint32_t* rotate);
  // The pool view changed: every cached request is stale.
  void clear() { cache_.clear(); }

 private:
  struct Cached {
    absl::Status status;
    std::shared_ptr<const SlotRequest> request;
    Clock::TimePoint valid_until;
  };
  Cached compose(const Hints& hints, Clock::TimePoint now,
                 const std::map<std::string, NodeSpec>& registry,
                 const std::map<std::string, NodeAggregate>& aggregates,
                 const Circuits& circuits) const;

  const RouterOptions& o_;
  std::map<std::pair<int, std::string>, Cached> cache_;  // by (priority, label)
  std::size_t rotation_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace fleet::router::internal_router

#endif  // FLEET_SRC_ROUTER_REQUEST_CACHE_HPP_
