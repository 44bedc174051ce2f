#include "history.hpp"

#include <algorithm>
#include <set>
#include <tuple>

namespace fleet::testing {
namespace {

// Times as milliseconds since the first event, for readable messages.
std::string ms_since(History::Time t, History::Time origin) {
  return std::to_string(
             std::chrono::duration_cast<std::chrono::microseconds>(t - origin).count() /
             1000.0) +
         " ms";
}

}  // namespace

void History::lock_granted(const std::string& lock, const std::string& holder,
                           std::uint64_t fence, Time asked, Time granted,
                           Time believed_expiry) {
  std::lock_guard<std::mutex> l(mu_);
  locks_.push_back(LockGrant{lock, holder, fence, asked, granted, believed_expiry});
}

void History::lock_released(const std::string& lock, const std::string& holder,
                            std::uint64_t fence, Time at) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = locks_.rbegin(); it != locks_.rend(); ++it) {
    if (it->lock == lock && it->holder == holder && it->fence == fence) {
      it->end = std::min(it->end, at);
      return;
    }
  }
  errors_.push_back("lock '" + lock + "': " + holder + " released fence " +
                    std::to_string(fence) + " it was never granted");
}

void History::claim(const std::string& map, const std::string& key,
                    const std::string& claimer, bool claimed, const std::string& winner,
                    Time at) {
  std::lock_guard<std::mutex> l(mu_);
  claims_.push_back(Claim{map, key, claimer, claimed, winner, at, {}});
}

void History::claim_failed(const std::string& map, const std::string& key,
                           const std::string& claimer, const std::string& error,
                           Time at) {
  std::lock_guard<std::mutex> l(mu_);
  failed_claims_.push_back(Claim{map, key, claimer, false, "", at, error});
}

void History::slot_granted(const std::string& pool, const std::string& target,
                           std::int64_t capacity, const std::string& holder,
                           std::uint64_t ticket, Time at) {
  std::lock_guard<std::mutex> l(mu_);
  slots_.push_back(Slot{pool, target, holder, capacity, ticket, at, at, true});
}

void History::slot_released(const std::string& pool, const std::string& target,
                            const std::string& holder, std::uint64_t ticket, Time at) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& s : slots_) {
    if (s.open && s.pool == pool && s.target == target && s.holder == holder &&
        s.ticket == ticket) {
      s.open = false;
      s.released = at;
      return;
    }
  }
  errors_.push_back("slot on '" + target + "' of pool '" + pool + "': " + holder +
                    " released ticket " + std::to_string(ticket) + " it did not hold");
}

void History::holder_died(const std::string& holder, Time at) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& s : slots_) {
    if (s.open && s.holder == holder) {
      s.open = false;
      s.released = at;
    }
  }
  for (auto& g : locks_) {
    if (g.holder == holder) g.end = std::min(g.end, at);
  }
}

void History::data_lost(Time at) {
  std::lock_guard<std::mutex> l(mu_);
  losses_.push_back(at);
}

std::vector<std::string> History::check(bool none_held_at_end) const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out = errors_;
  Time origin = Time::max();
  for (const auto& g : locks_) origin = std::min(origin, g.asked);
  for (const auto& c : claims_) origin = std::min(origin, c.at);
  for (const auto& s : slots_) origin = std::min(origin, s.granted);

  // Locks: every pair of grants of one lock.
  for (std::size_t i = 0; i < locks_.size(); ++i) {
    for (std::size_t j = 0; j < locks_.size(); ++j) {
      const LockGrant &a = locks_[i], &b = locks_[j];
      if (i == j || a.lock != b.lock) continue;
      const std::string who =
          "lock '" + a.lock + "': " + a.holder + " (fence " + std::to_string(a.fence) +
          ", " + ms_since(a.granted, origin) + ") and " + b.holder + " (fence " +
          std::to_string(b.fence) + ", " + ms_since(b.granted, origin) + ")";
      // a's grant came back before b was even asked for: b is later.
      if (a.granted < b.asked && b.fence <= a.fence) {
        out.push_back(who + ": the later grant has the lower fence");
      }
      const bool overlap = a.granted < b.end && b.granted < a.end;
      const bool a_first = a.granted < b.granted || (a.granted == b.granted && i < j);
      if (overlap && a_first && b.fence <= a.fence) {
        out.push_back(who + ": held at once, and the later holder's fence is not higher");
      }
    }
  }

  // Claims: per key and per span between data losses.
  std::vector<Time> losses = losses_;
  std::sort(losses.begin(), losses.end());
  auto span_of = [&](Time t) {
    return static_cast<std::size_t>(std::upper_bound(losses.begin(), losses.end(), t) -
                                    losses.begin());
  };
  std::map<std::tuple<std::string, std::string, std::size_t>, std::vector<const Claim*>>
      by_key;
  for (const auto& c : claims_) by_key[{c.map, c.key, span_of(c.at)}].push_back(&c);
  for (const auto& [k, cs] : by_key) {
    const std::string key = std::get<0>(k) + "/" + std::get<1>(k);
    std::vector<const Claim*> winners;
    for (const Claim* c : cs) {
      if (c->claimed) winners.push_back(c);
    }
    if (winners.size() > 1) {
      out.push_back("claim '" + key + "': " + std::to_string(winners.size()) +
                    " owners (" + winners[0]->claimer + ", " + winners[1]->claimer +
                    ", ...)");
    }
    std::set<std::string> told;
    for (const Claim* c : cs) told.insert(c->winner);
    if (told.size() > 1) {
      // Every answer, in time order: who asked, what it was told, when.
      std::vector<const Claim*> in_order = cs;
      for (const auto& f : failed_claims_) {
        if (f.map == std::get<0>(k) && f.key == std::get<1>(k)) in_order.push_back(&f);
      }
      std::sort(in_order.begin(), in_order.end(),
                [](const Claim* x, const Claim* y) { return x->at < y->at; });
      std::string answers;
      for (const Claim* c : in_order) {
        answers +=
            (answers.empty() ? "" : "; ") + c->claimer +
            (c->error.empty() ? " told " + c->winner : " failed (" + c->error + ")") +
            (c->claimed ? " (claimed)" : "") + " at " + ms_since(c->at, origin);
      }
      out.push_back("claim '" + key + "': claimers were told " +
                    std::to_string(told.size()) + " different owners: " + answers);
    }
  }

  // Slots: in use per target at every grant, and what is left at the end.
  std::map<std::pair<std::string, std::string>, std::vector<const Slot*>> by_target;
  for (const auto& s : slots_) by_target[{s.pool, s.target}].push_back(&s);
  for (const auto& [k, ss] : by_target) {
    struct Edge {
      Time at;
      int delta;
      std::int64_t capacity;
    };
    std::vector<Edge> edges;
    for (const Slot* s : ss) {
      edges.push_back({s->granted, +1, s->capacity});
      if (!s->open) edges.push_back({s->released, -1, s->capacity});
    }
    // At equal times releases first: a slot freed and taken in the same
    // instant was never held twice.
    std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) {
      return a.at != b.at ? a.at < b.at : a.delta < b.delta;
    });
    std::int64_t in_use = 0, worst = 0;
    Time worst_at{};
    std::int64_t capacity = 0;
    for (const auto& e : edges) {
      in_use += e.delta;
      if (e.delta > 0 && in_use > e.capacity && in_use > worst) {
        worst = in_use;
        worst_at = e.at;
        capacity = e.capacity;
      }
    }
    if (worst > 0) {
      out.push_back("slots on '" + k.second + "' of pool '" + k.first + "': " +
                    std::to_string(worst) + " in use at " + ms_since(worst_at, origin) +
                    ", capacity " + std::to_string(capacity));
    }
    if (none_held_at_end) {
      std::size_t left = 0;
      for (const Slot* s : ss) left += s->open ? 1 : 0;
      if (left > 0) {
        out.push_back("slots on '" + k.second + "' of pool '" + k.first +
                      "': " + std::to_string(left) + " still held at the end");
      }
    }
  }
  return out;
}

std::string History::summary() const {
  std::lock_guard<std::mutex> l(mu_);
  return std::to_string(locks_.size()) + " lock grants, " +
         std::to_string(claims_.size()) + " claims, " + std::to_string(slots_.size()) +
         " slot grants";
}

}  // namespace fleet::testing
