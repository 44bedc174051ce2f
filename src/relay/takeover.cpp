#include "relay/takeover.hpp"

#include <algorithm>

#include "fmt/format.h"
#include "internal/rendezvous.hpp"
#include "internal/status.hpp"
#include "relay/codec.hpp"

namespace fleet::relay::internal_relay {

using internal::MutexLock;
using std::chrono::milliseconds;

absl::StatusOr<std::uint64_t> Takeover::next_fence() {
  auto lease = c_.lock(fence_lock(o_.name), milliseconds(2000), milliseconds(5000));
  if (!lease.ok()) return lease.status();
  if (!lease->has_value()) {
    return absl::UnavailableError("could not get a fencing token within 5 s");
  }
  (void)c_.release(**lease);  // the token is what we wanted; it expires anyway
  return (*lease)->fence;
}

absl::Status Takeover::run(const std::set<std::string, std::less<>>& live,
                           std::vector<Session>* taken) {
  const auto now = c_.clock()->now();
  const std::uint64_t losses = c_.data_losses();
  if (losses != losses_seen_) {
    // After the backend lost its data every instance re-joins and
    // re-publishes within about a heartbeat: until takeover_grace has
    // passed, an owner missing from the members is not taken for gone.
    losses_seen_ = losses;
    loss_noticed_at_ = now;
  }
  if (live.count(me_) == 0) return absl::OkStatus();  // we are not a member now
  FLEET_ASSIGN_OR_RETURN(auto registry, c_.scan(instances_map(o_.name)));
  std::vector<std::pair<std::string, std::string>> peers;  // live relay instances
  for (const auto& e : registry) {
    if (live.count(e.key) != 0) peers.emplace_back(e.key, e.entry.value);
  }
  if (loss_noticed_at_ != Clock::TimePoint{} &&
      now - loss_noticed_at_ < o_.takeover_grace) {
    return absl::OkStatus();
  }
  std::map<std::string, std::vector<Copy>> take;  // by map
  std::size_t count = 0;
  {
    MutexLock lock(copies_.mu);
    for (auto it = orphaned_since_.begin(); it != orphaned_since_.end();) {
      auto f = copies_.foreign.find(it->first);
      it = (f == copies_.foreign.end() || live.count(f->second.s.owner) != 0)
               ? orphaned_since_.erase(it)
               : std::next(it);
    }
    for (const auto& [id, c] : copies_.foreign) {
      if (live.count(c.s.owner) != 0) continue;
      const auto since = orphaned_since_.emplace(id, now).first->second;
      std::string chosen;
      std::uint64_t best = 0;
      for (const auto& [peer, groups] : peers) {
        if (!replicates(groups, c.s.group)) continue;
        const std::uint64_t w = internal::rendezvous_weight(id, peer);
        if (chosen.empty() || w > best) {
          chosen = peer;
          best = w;
        }
      }
      if (chosen != me_ && now - since < o_.takeover_grace) continue;
      if (o_.max_takeover != 0 && count >= o_.max_takeover) break;
      take[bucket_map(o_.name, id)].push_back(c);
      ++count;
    }
  }
  if (count == 0) return absl::OkStatus();
  FLEET_ASSIGN_OR_RETURN(const std::uint64_t fence, next_fence());
  const std::size_t before = taken->size();
  for (auto& [map, copies] : take) {
    // On an error the next check reads back and retries.
    FLEET_RETURN_IF_ERROR(rewrite_as_own(
        map, copies,
        [&](Session& s) {
          s.taken_from = s.owner;
          s.owner = me_;
          s.fence = fence;
        },
        taken));
  }
  for (std::size_t i = before; i < taken->size(); ++i)
    orphaned_since_.erase((*taken)[i].id);
  return absl::OkStatus();
}

absl::Status Takeover::rewrite_as_own(const std::string& map,
                                      const std::vector<Copy>& copies,
                                      const std::function<void(Session&)>& change,
                                      std::vector<Session>* taken) {
  for (std::size_t i = 0; i < copies.size(); i += kMaxMapBatchOps) {
    std::vector<MapOp> ops;
    std::vector<Copy> next;
    for (std::size_t j = i; j < std::min(copies.size(), i + kMaxMapBatchOps); ++j) {
      Copy c = copies[j];
      change(c.s);
      c.s.version += 1;
      c.raw = encode_session(c.s);
      ops.push_back(MapOp::compare_and_set(c.s.id, copies[j].raw, c.raw, c.s.ttl));
      next.push_back(std::move(c));
    }
    const std::uint64_t losses = c_.data_losses();
    FLEET_ASSIGN_OR_RETURN(auto r, c_.apply(map, ops));
    MutexLock lock(copies_.mu);
    for (std::size_t j = 0; j < next.size(); ++j) {
      if (!r[j].applied) continue;
      next[j].entry_version = r[j].entry.version;
      next[j].losses = losses;
      copies_.foreign.erase(next[j].s.id);
      if (taken != nullptr) taken->push_back(next[j].s);
      copies_.own[next[j].s.id] = std::move(next[j]);
    }
  }
  return absl::OkStatus();
}

}  // namespace fleet::relay::internal_relay
