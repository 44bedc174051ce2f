#include "router/circuits.hpp"

#include <algorithm>

#include "internal/parse.hpp"

namespace fleet::router::internal_router {

using internal::MapMirror;
using internal::MutexLock;

void Circuits::on_change(const MapMirror::Change& ch) {
  MutexLock lock(mu_);
  if (ch.kind == MapMirror::Kind::kSet) {
    open_until_[ch.key] = closes_at(ch.value);
    own_trips_.erase(ch.key);
  } else if (own_trips_.count(ch.key) == 0) {
    open_until_.erase(ch.key);
  }
}

Circuits::Ms Circuits::open_for(const std::string& node, Clock::TimePoint now) const {
  MutexLock lock(mu_);
  auto it = open_until_.find(node);
  if (it == open_until_.end() || it->second <= now) return Ms::zero();
  return std::chrono::ceil<Ms>(it->second - now);
}

std::map<std::string, Circuits::Ms> Circuits::open_all(Clock::TimePoint now) const {
  MutexLock lock(mu_);
  std::map<std::string, Ms> out;
  for (const auto& [id, until] : open_until_) {
    out[id] = until <= now ? Ms::zero() : std::chrono::ceil<Ms>(until - now);
  }
  return out;
}

bool Circuits::trip(const std::string& node, Clock::TimePoint now) {
  MutexLock lock(mu_);
  auto it = open_until_.find(node);
  if (it != open_until_.end() && it->second > now) return false;
  open_until_[node] = now + cooldown_;
  own_trips_.insert(node);
  return true;
}

void Circuits::share(const std::string& node) {
  auto put = c_.put(map_, node, closes_text(cooldown_), cooldown_);
  if (!put.ok()) {
    log_.warn("could not share the open circuit of '{}': {}", node,
              put.status().ToString());
  }
}

absl::StatusOr<std::size_t> Circuits::republish() {
  std::map<std::string, Clock::TimePoint> open;
  {
    MutexLock lock(mu_);
    open = open_until_;
  }
  const auto now = c_.clock()->now();
  std::size_t n = 0;
  for (const auto& [id, until] : open) {
    if (until <= now) continue;
    const auto left = std::chrono::ceil<Ms>(until - now);
    auto claimed = c_.claim(map_, id, closes_text(left), left);
    if (!claimed.ok()) return claimed.status();
    ++n;
  }
  return n;
}

void Circuits::forget_closed(Clock::TimePoint now) {
  MutexLock lock(mu_);
  for (auto it = own_trips_.begin(); it != own_trips_.end();) {
    auto open = open_until_.find(*it);
    it = open != open_until_.end() && open->second > now ? std::next(it)
                                                         : own_trips_.erase(it);
  }
}

Clock::TimePoint Circuits::closes_at(const std::string& value) const {
  std::int64_t ms = 0;
  if (!internal::parse_int(value, &ms)) ms = 0;
  const auto wall_ms =
      std::chrono::duration_cast<Ms>(c_.clock()->wall_now().time_since_epoch()).count();
  const long long left = std::clamp<long long>(ms - wall_ms, 0, 24LL * 3600 * 1000);
  return c_.clock()->now() + Ms(left);
}

std::string Circuits::closes_text(Ms left) const {
  const auto closes = c_.clock()->wall_now() + left;
  return std::to_string(
      std::chrono::duration_cast<Ms>(closes.time_since_epoch()).count());
}

}  // namespace fleet::router::internal_router
