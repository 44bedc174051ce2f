#include "internal/slots.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fleet/names.hpp"
#include "fmt/format.h"
#include "internal/validate.hpp"

namespace fleet::internal {

absl::Status validate_slot_request(std::string_view pool, const SlotRequest& request) {
  FLEET_RETURN_IF_ERROR(validate_name("pool name", pool));
  const auto& c = request.candidates;
  if (c.empty() || c.size() > kMaxSlotCandidates) {
    return absl::InvalidArgumentError(
        fmt::format("a slot request needs 1 to {} candidates (got {})",
                    kMaxSlotCandidates, c.size()));
  }
  std::vector<std::string_view> targets;
  targets.reserve(c.size());
  for (const auto& cand : c) {
    FLEET_RETURN_IF_ERROR(validate_name("slot target", cand.target));
    targets.push_back(cand.target);
    if (cand.capacity <= 0) {
      return absl::InvalidArgumentError(
          fmt::format("slot target '{}' has capacity {}; it must be positive",
                      cand.target, cand.capacity));
    }
    if (!std::isfinite(cand.score)) {
      return absl::InvalidArgumentError(
          fmt::format("slot target '{}' has a score that is not finite", cand.target));
    }
  }
  std::sort(targets.begin(), targets.end());
  if (auto twice = std::adjacent_find(targets.begin(), targets.end());
      twice != targets.end()) {
    return absl::InvalidArgumentError(
        fmt::format("slot target '{}' is listed twice", *twice));
  }
  if (!std::isfinite(request.load_weight) || request.load_weight < 0) {
    return absl::InvalidArgumentError("load_weight must be finite and not negative");
  }
  if (!(request.tier_load_limit > 0 && request.tier_load_limit <= 1)) {
    return absl::InvalidArgumentError("tier_load_limit must be in (0, 1]");
  }
  return absl::OkStatus();
}

// One pass, as slot_acquire.lua does it: the best eligible candidate
// overall, and the best one in the lowest tier under the load limit.
std::optional<std::size_t> choose_slot(
    const SlotRequest& request,
    const std::function<std::int64_t(const std::string&)>& used) {
  const std::size_t n = request.candidates.size();
  std::optional<std::size_t> best, tier_best;
  double best_score = 0, tier_best_score = 0;
  std::int32_t tier_best_tier = 0;
  std::uint32_t seen = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (request.rotate + k) % n;
    const SlotCandidate& c = request.candidates[i];
    const std::int64_t u = used(c.target);
    if (u >= c.capacity) continue;
    const double load = static_cast<double>(u) / static_cast<double>(c.capacity);
    const double score = c.score + request.load_weight * load;
    if (!best || score < best_score) {
      best = i;
      best_score = score;
    }
    if (load < request.tier_load_limit &&
        (!tier_best || c.tier < tier_best_tier ||
         (c.tier == tier_best_tier && score < tier_best_score))) {
      tier_best = i;
      tier_best_score = score;
      tier_best_tier = c.tier;
    }
    if (++seen == request.sample) break;
  }
  return tier_best ? tier_best : best;
}

}  // namespace fleet::internal
