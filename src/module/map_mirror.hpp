// A Coordinator map (or the keys under a prefix of it) kept in step on
// this instance: read once, then followed through its change stream, and
// read again whenever the stream may have missed a change. The mirror
// keeps only each key's version; what the module derives from the values
// (decoded records, a cache) it keeps itself, from the changes the mirror
// tells it — one listener, called in order, never twice for one change.
//
//   MapMirror nodes(c, "rooms/chat/nodes", "", [this](const MapMirror::Change& ch) {
//     if (ch.kind == MapMirror::Kind::kSet) absorb(ch.key, ch.value);
//     else forget(ch.key);
//   });
//   FLEET_RETURN_IF_ERROR(nodes.start());   // every entry, then every change
//   ...
//   nodes.interrupted();                    // SUSPENDED: exact() is false
//   FLEET_RETURN_IF_ERROR(nodes.resync());  // RECONNECTED: only what differs
//
// Ordering. Versions grow with every write to a map, so the mirror drops a
// change older than one it already told (a watch event delivered after a
// read that saw a newer value). A re-read tells what differs from what the
// listener heard: entries set or changed meanwhile, and entries gone; an
// event that arrives while the read is on its way wins over it.
//
// After the backend lost its data, versions start again from low numbers:
// forget_versions() makes the mirror take every change as new until the
// next resync(), which tells every entry again.
//
// Threads: every method is thread-safe. The listener runs on the thread
// that delivers the change — the Coordinator's event thread for the stream,
// the caller's for start(), resync() and offer() — with the mirror's lock
// held: it must be quick, must not call the mirror, and must not take a
// lock held by anyone who calls the mirror (lock order: mirror, then the
// module's).
#ifndef FLEET_SRC_MODULE_MAP_MIRROR_HPP_
#define FLEET_SRC_MODULE_MAP_MIRROR_HPP_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "fleet/coordinator.hpp"
#include "internal/mutex.hpp"

namespace fleet::internal {

class MapMirror {
 public:
  enum class Kind { kSet, kErased };
  struct Change {
    Kind kind;
    // What the stream reported (kSet, kDeleted, kExpired); kDeleted for an
    // entry a re-read no longer found.
    WatchEventType cause;
    const std::string& key;
    const std::string& value;  // kSet only
    std::uint64_t version;     // 0 for an erase found by a re-read
    // Found by a read (start, resync, offer), not reported by the stream:
    // the change may have happened any time since the last one told.
    bool reread;
  };
  using Listener = std::function<void(const Change&)>;

  MapMirror(Coordinator& c, std::string map, std::string key_prefix, Listener listener);
  ~MapMirror();  // stop()
  MapMirror(const MapMirror&) = delete;
  MapMirror& operator=(const MapMirror&) = delete;

  // Watches the map, then reads it: the listener hears every entry
  // (reread), then every change. The mirror is exact afterwards.
  absl::Status start();
  // Reads the map again and tells what differs. exact() afterwards.
  absl::Status resync();
  // The stream may have missed changes: exact() is false until resync().
  void interrupted();
  // The backend lost its data: every change counts as new until the next
  // resync(), which tells every entry again.
  void forget_versions();
  // Cancels the watch; after it returns the listener is not running and is
  // not called again.
  void stop();

  // Whether every change up to the last one delivered has been told (no
  // interruption since the last read).
  bool exact() const;
  // +1 for every change told.
  std::uint64_t generation() const;
  // An entry read outside the stream (a get() on a cache miss): told as a
  // kSet (reread) when no change was told since `generation` was read and
  // it is newer than what was told of `key`. Returns whether it was.
  bool offer(const std::string& key, const std::string& value, std::uint64_t version,
             std::uint64_t generation);
  // Keys known.
  std::size_t size() const;
  // Whether `key` is known (told as set, not since erased).
  bool contains(const std::string& key) const;
  const std::string& map() const { return map_; }

 private:
  void on_event(const WatchEvent& e);
  void tell_locked(Kind kind, WatchEventType cause, const std::string& key,
                   const std::string& value, std::uint64_t version, bool reread)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status read(bool first);

  Coordinator& c_;
  const std::string map_, prefix_;
  const Listener listener_;

  mutable Mutex mu_;
  std::map<std::string, std::uint64_t> versions_ ABSL_GUARDED_BY(mu_);
  // While a read is on its way: keys the stream changed meanwhile, with the
  // version of the change; the read does not override them.
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::uint64_t> changed_while_reading_ ABSL_GUARDED_BY(mu_);
  // Written under mu_; read without it (locate()'s hot path asks both).
  std::atomic<bool> exact_{false};
  std::atomic<std::uint64_t> generation_{0};
  bool forgotten_ ABSL_GUARDED_BY(mu_) = false;  // versions restart
  Mutex read_mu_;                                // one read at a time
  Subscription watch_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_MODULE_MAP_MIRROR_HPP_
