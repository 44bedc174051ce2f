#include "internal/slots.hpp"

#include <cmath>
#include <set>
#include <vector>

#include "fleet/names.hpp"
#include "fmt/format.h"
#include "internal/validate.hpp"

namespace fleet::internal {

absl::Status validate_slot_request(std::string_view pool, const SlotRequest& request) {
  FLEET_RETURN_IF_ERROR(validate_name("pool name", pool));
  const auto& c = request.candidates;
  if (c.empty() || c.size() > kMaxSlotCandidates) {
    return absl::InvalidArgumentError(fmt::format(
        "a slot request needs 1 to {} candidates (got {})", kMaxSlotCandidates, c.size()));
  }
  std::set<std::string_view> seen;
  for (const auto& cand : c) {
    FLEET_RETURN_IF_ERROR(validate_name("slot target", cand.target));
    if (!seen.insert(cand.target).second) {
      return absl::InvalidArgumentError(
          fmt::format("slot target '{}' is listed twice", cand.target));
    }
    if (cand.capacity <= 0) {
      return absl::InvalidArgumentError(fmt::format(
          "slot target '{}' has capacity {}; it must be positive", cand.target,
          cand.capacity));
    }
    if (!std::isfinite(cand.score)) {
      return absl::InvalidArgumentError(
          fmt::format("slot target '{}' has a score that is not finite", cand.target));
    }
  }
  if (!std::isfinite(request.load_weight) || request.load_weight < 0) {
    return absl::InvalidArgumentError("load_weight must be finite and not negative");
  }
  if (!(request.tier_load_limit > 0 && request.tier_load_limit <= 1)) {
    return absl::InvalidArgumentError("tier_load_limit must be in (0, 1]");
  }
  return absl::OkStatus();
}

std::optional<std::size_t> choose_slot(
    const SlotRequest& request, const std::function<std::int64_t(const std::string&)>& used) {
  struct Eligible {
    std::size_t index;
    double load;
  };
  std::vector<Eligible> eligible;
  for (std::size_t i = 0; i < request.candidates.size(); ++i) {
    const auto& c = request.candidates[i];
    const std::int64_t u = used(c.target);
    if (u >= c.capacity) continue;
    eligible.push_back({i, static_cast<double>(u) / static_cast<double>(c.capacity)});
    if (request.sample > 0 && eligible.size() == request.sample) break;
  }
  if (eligible.empty()) return std::nullopt;

  std::optional<std::int32_t> tier;
  for (const auto& e : eligible) {
    const auto t = request.candidates[e.index].tier;
    if (e.load < request.tier_load_limit && (!tier || t < *tier)) tier = t;
  }
  std::optional<std::size_t> best;
  double best_score = 0;
  for (const auto& e : eligible) {
    const auto& c = request.candidates[e.index];
    if (tier && (c.tier != *tier || !(e.load < request.tier_load_limit))) continue;
    const double score = c.score + request.load_weight * e.load;
    if (!best || score < best_score) {
      best = e.index;
      best_score = score;
    }
  }
  return best;
}

}  // namespace fleet::internal
