#include "module/map_mirror.hpp"

#include <algorithm>
#include <set>
#include <utility>

namespace fleet::internal {

MapMirror::MapMirror(Coordinator& c, std::string map, std::string key_prefix,
                     Listener listener)
    : c_(c),
      map_(std::move(map)),
      prefix_(std::move(key_prefix)),
      listener_(std::move(listener)) {}

MapMirror::~MapMirror() { stop(); }

void MapMirror::stop() { watch_.cancel(); }

absl::Status MapMirror::start() {
  // The stream first, so that nothing written after the read is missed.
  auto watch = c_.watch(map_, prefix_, [this](const WatchEvent& e) { on_event(e); });
  if (!watch.ok()) return watch.status();
  watch_ = std::move(*watch);
  return read(/*first=*/true);
}

absl::Status MapMirror::resync() { return read(/*first=*/false); }

void MapMirror::interrupted() {
  MutexLock lock(mu_);
  exact_ = false;
}

void MapMirror::forget_versions() {
  MutexLock lock(mu_);
  forgotten_ = true;
  exact_ = false;
}

bool MapMirror::exact() const { return exact_.load(std::memory_order_acquire); }

std::uint64_t MapMirror::generation() const {
  return generation_.load(std::memory_order_acquire);
}

std::size_t MapMirror::size() const {
  MutexLock lock(mu_);
  return versions_.size();
}

bool MapMirror::contains(const std::string& key) const {
  MutexLock lock(mu_);
  return versions_.count(key) != 0;
}

void MapMirror::tell_locked(Kind kind, WatchEventType cause, const std::string& key,
                            const std::string& value, std::uint64_t version,
                            bool reread) {
  ++generation_;
  listener_(Change{kind, cause, key, value, version, reread});
}

void MapMirror::on_event(const WatchEvent& e) {
  MutexLock lock(mu_);
  if (reading_) {
    auto& v = changed_while_reading_[e.key];
    v = std::max(v, e.version);
  }
  auto known = versions_.find(e.key);
  // A change older than one told: a read got ahead of the stream. (After a
  // data loss versions start again: every change is new.)
  const bool stale =
      !forgotten_ && known != versions_.end() && known->second >= e.version;
  if (e.type == WatchEventType::kSet) {
    if (stale) return;
    versions_[e.key] = e.version;
    tell_locked(Kind::kSet, e.type, e.key, e.value, e.version, false);
    return;
  }
  if (known == versions_.end() || stale) return;  // never told, or already newer
  versions_.erase(known);
  tell_locked(Kind::kErased, e.type, e.key, std::string(), e.version, false);
}

absl::Status MapMirror::read(bool first) {
  MutexLock one_read(read_mu_);
  {
    MutexLock lock(mu_);
    reading_ = true;
    changed_while_reading_.clear();
  }
  auto entries = c_.scan(map_, prefix_);
  MutexLock lock(mu_);
  reading_ = false;
  if (!entries.ok()) {
    changed_while_reading_.clear();
    return entries.status();
  }
  const bool all_new = forgotten_;
  std::set<std::string> seen;
  for (auto& e : *entries) {
    seen.insert(e.key);
    auto changed = changed_while_reading_.find(e.key);
    if (changed != changed_while_reading_.end() &&
        (all_new || changed->second >= e.entry.version)) {
      continue;  // the stream told a change after the read saw this
    }
    auto known = versions_.find(e.key);
    if (!all_new && known != versions_.end() && known->second >= e.entry.version) {
      continue;  // told already
    }
    versions_[e.key] = e.entry.version;
    tell_locked(Kind::kSet, WatchEventType::kSet, e.key, e.entry.value, e.entry.version,
                true);
  }
  if (!first) {
    static const std::string kNoValue;
    for (auto it = versions_.begin(); it != versions_.end();) {
      if (seen.count(it->first) != 0 || changed_while_reading_.count(it->first) != 0) {
        ++it;
        continue;
      }
      const std::string key = it->first;
      it = versions_.erase(it);
      tell_locked(Kind::kErased, WatchEventType::kDeleted, key, kNoValue, 0, true);
    }
  }
  changed_while_reading_.clear();
  forgotten_ = false;
  exact_ = true;
  return absl::OkStatus();
}

bool MapMirror::offer(const std::string& key, const std::string& value,
                      std::uint64_t version, std::uint64_t generation) {
  MutexLock lock(mu_);
  if (generation != generation_.load() || forgotten_) return false;
  auto known = versions_.find(key);
  if (known != versions_.end() && known->second >= version) return false;
  versions_[key] = version;
  tell_locked(Kind::kSet, WatchEventType::kSet, key, value, version, true);
  return true;
}

}  // namespace fleet::internal
