#include "relay/copies.hpp"

#include "fmt/format.h"
#include "relay/codec.hpp"

namespace fleet::relay::internal_relay {

using internal::MapMirror;
using internal::MutexLock;

void Copies::apply(const MapMirror::Change& ch, std::uint64_t losses, Effects* out) {
  MutexLock lock(mu);
  if (ch.kind == MapMirror::Kind::kSet) {
    set_locked(ch, losses, out);
  } else {
    erase_locked(ch, out);
  }
}

void Copies::set_locked(const MapMirror::Change& ch, std::uint64_t losses, Effects* out) {
  auto s = decode_session(ch.key, ch.value);
  if (!s.ok()) {
    if (restoring_) ++restored_.malformed;
    log_.warn("skipped a malformed session record '{}': {}", ch.key,
              std::string(s.status().message()));
    return;
  }
  if (s->owner == me_) {
    foreign.erase(ch.key);
    auto it = own.find(ch.key);
    if (it != own.end() && it->second.s.fence == s->fence) {
      if (it->second.entry_version < ch.version) {
        // Our own write; after one of unknown outcome, what landed. A change
        // the stream told may have been lost since: it keeps `losses`; a
        // read shows what is stored now.
        const std::uint64_t seen = ch.reread ? losses : it->second.losses;
        it->second = Copy{std::move(*s), ch.value, ch.version, false, seen};
      }
    } else if (it == own.end() && pending_create.count(ch.key) != 0) {
      out->roll_back.push_back(ch.key);  // a create that returned an error landed
    } else if (it == own.end() && restoring_ && s->fence != restore_fence_) {
      restored_.adopt.push_back(Copy{std::move(*s), ch.value, ch.version, false, 0});
    }
    return;
  }
  // A peer's session.
  if (restoring_ && s->taken_from == me_) {
    ++restored_.lost;
    out->events.push_back(SessionEvent{
        SessionEventType::kLost, *s,
        fmt::format("taken over by '{}' while this instance was away", s->owner)});
  }
  if (auto it = own.find(ch.key);
      it != own.end() && it->second.entry_version < ch.version) {
    out->events.push_back(SessionEvent{SessionEventType::kLost, it->second.s,
                                       fmt::format("now owned by '{}'", s->owner)});
    own.erase(it);
    unsure.erase(ch.key);
  }
  // The mirror tells changes in order: the newest copy wins.
  if (replicates(groups_, s->group)) {
    foreign[ch.key] = Copy{std::move(*s), ch.value, ch.version, false, 0};
  } else {
    foreign.erase(ch.key);
  }
}

void Copies::erase_locked(const MapMirror::Change& ch, Effects* out) {
  foreign.erase(ch.key);
  // Own sessions a re-read no longer finds are read back by the relay
  // (a write may have put one back since; one lost with the backend's data
  // is put back): not decided here.
  if (ch.reread) return;
  auto it = own.find(ch.key);
  if (it == own.end() || it->second.entry_version >= ch.version) return;
  if (!it->second.removing) {
    const bool expired = ch.cause == WatchEventType::kExpired;
    const char* why = expired ? "its ttl passed"
                      : unsure.count(ch.key) != 0
                          ? "deleted (a remove whose answer was lost)"
                          : "deleted by another instance";
    out->events.push_back(
        SessionEvent{expired ? SessionEventType::kExpired : SessionEventType::kLost,
                     it->second.s, why});
  }
  unsure.erase(ch.key);
  own.erase(it);
}

void Copies::begin_restore(std::uint64_t fence) {
  MutexLock lock(mu);
  restoring_ = true;
  restore_fence_ = fence;
  restored_ = Restored{};
}

Restored Copies::end_restore() {
  MutexLock lock(mu);
  restoring_ = false;
  return std::move(restored_);
}

std::vector<Session> Copies::list(bool own_sessions) const {
  MutexLock lock(mu);
  const auto& m = own_sessions ? own : foreign;
  std::vector<Session> out;
  out.reserve(m.size());
  for (const auto& [id, copy] : m) out.push_back(copy.s);
  return out;
}

}  // namespace fleet::relay::internal_relay
