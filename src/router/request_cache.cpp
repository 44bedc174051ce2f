#include "router/request_cache.hpp"

#include <algorithm>

#include "internal/status.hpp"
#include "router/policy.hpp"

namespace fleet::router::internal_router {

RequestCache::Cached RequestCache::compose(
    const Hints& hints, Clock::TimePoint now,
    const std::map<std::string, NodeSpec>& registry,
    const std::map<std::string, NodeAggregate>& aggregates,
    const Circuits& circuits) const {
  const auto open = circuits.open_all(now);
  PoolView view{&registry, &aggregates, &open};
  auto request = std::make_shared<SlotRequest>();
  std::optional<std::chrono::milliseconds> changes_in;
  Cached out;
  out.status = compose_request(o_, hints, view, request.get(), &changes_in);
  out.valid_until = changes_in ? now + *changes_in : Clock::TimePoint::max();
  out.request = std::move(request);
  return out;
}

absl::Status RequestCache::get(const Hints& hints, Clock::TimePoint now,
                               const std::map<std::string, NodeSpec>& registry,
                               const std::map<std::string, NodeAggregate>& aggregates,
                               const Circuits& circuits,
                               std::shared_ptr<const SlotRequest>* shape,
                               std::uint32_t* rotate) {
  if (hints.exclude.empty() && !hints.origin) {
    auto key = std::make_pair(static_cast<int>(hints.priority), hints.label);
    auto it = cache_.find(key);
    if (it == cache_.end() || now >= it->second.valid_until) {
      it = cache_
               .insert_or_assign(std::move(key),
                                 compose(hints, now, registry, aggregates, circuits))
               .first;
    }
    FLEET_RETURN_IF_ERROR(it->second.status);
    *shape = it->second.request;
  } else {
    Cached built = compose(hints, now, registry, aggregates, circuits);
    FLEET_RETURN_IF_ERROR(built.status);
    *shape = std::move(built.request);
  }
  *rotate = static_cast<std::uint32_t>(rotation_++ % (*shape)->candidates.size());
  if (o_.policy == Policy::kPowerOfTwo) {
    auto shuffled = std::make_shared<SlotRequest>(**shape);
    std::shuffle(shuffled->candidates.begin(), shuffled->candidates.end(), rng_);
    *shape = std::move(shuffled);
  }
  return absl::OkStatus();
}

}  // namespace fleet::router::internal_router
