// fleet::relay — per-session state that outlives the instance holding it.
//
// Media relays, game hosts and other stateful servers keep a document per
// session (ports, peers, codecs, ...). Each instance creates a Relay on its
// own Coordinator session (a fleet module: module.hpp); the relay names the
// sessions' owner by the session's instance id, so it starts working once
// the Coordinator has joined (before that its calls return
// FailedPrecondition):
//
//   fleet::relay::RelayOptions o;
//   o.on_event = [&](const fleet::relay::SessionEvent& e) {
//     if (e.type == fleet::relay::SessionEventType::kTaken) serve(e.session);
//     if (e.type == fleet::relay::SessionEventType::kLost) stop(e.session.id);
//   };
//   auto relay = fleet::relay::Relay::create(*coordinator, o).value();
//   for (const auto& s : relay->own()) serve(s);        // restored on start
//   relay->create_session("call-17", R"({"port":40000})");
//   relay->update("call-17", R"({"port":40000,"peer":"10.0.0.9:5004"})");
//
// Every session has one owner (an instance id) with a fencing token, and a
// version that grows on every write. Only the owner changes or deletes the
// stored copy, and only while the stored copy is the one it last wrote: each
// write is a compare-and-set, so a paused or restarted former owner cannot
// overwrite, resurrect or delete what a peer took over. Peers keep FOREIGN
// copies, updated in place from the map's change stream. When an owner
// stops being a live member, each of its sessions is taken by exactly one
// live peer (a compare-and-set with a new fencing token; which peer is
// chosen by rendezvous hashing, so the sessions spread), which gets kTaken.
//
// Errors: InvalidArgument (bad id, oversized document), NotFound (no such
// session), AlreadyExists (create of an existing id), FailedPrecondition
// (not the owner: another instance owns it now, or it was deleted), and the
// Coordinator's Unavailable / DeadlineExceeded when the write's outcome is
// unknown: such a write is never reported as success; the next call on the
// session reads back what was stored and carries on from there.
//
// Threads: every method is safe from any thread. on_event runs on the
// relay's callback thread, in order, one at a time (never on the
// Coordinator's event thread); it may call the Relay. The check runs on the
// relay's worker (or in run_once()). See docs/relay.md.
//
// Lifetime: the Coordinator must outlive the Relay; destroy the Relay
// first. Destroying it does not touch the stored sessions: its peers take
// them over once this instance leaves or expires.
#ifndef FLEET_RELAY_HPP_
#define FLEET_RELAY_HPP_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fleet/coordinator.hpp"
#include "fleet/log.hpp"
#include "fleet/module.hpp"

namespace fleet::relay {

inline constexpr std::size_t kMaxDocumentBytes = 64 * 1024;
// Sessions are spread over this many maps (see docs/relay.md); every
// instance of one namespace must agree on it, so it is fixed.
inline constexpr std::size_t kBuckets = 16;

struct Session {
  std::string id;
  std::string owner;                 // instance id of the owner
  std::uint64_t fence = 0;           // the owner's fencing token for this session
  std::uint64_t version = 0;         // 1 at creation, +1 on every write
  std::string group;                 // the owner's group (topology)
  std::string taken_from;            // the previous owner, when it was taken over
  std::chrono::milliseconds ttl{0};  // idle expiry; 0: none
  std::string document;
};

enum class SessionEventType {
  kTaken,    // this instance took the session over (taken_from: the old owner)
  kLost,     // this instance owned it and does not any more: stop serving it
  kExpired,  // one of this instance's sessions expired (its ttl passed)
  // A peer asked to delete one of our sessions (forward_remove) and the
  // relay deleted it: stop serving it.
  kRemovedOnRequest,
};
std::string_view to_string(SessionEventType type);

struct SessionEvent {
  SessionEventType type;
  Session session;     // kLost: as we last knew it
  std::string reason;  // one line, for logs
};

// ModuleOptions::name is the relay's namespace inside the Coordinator's:
// the instances of one relay share its sessions. check_interval: how often
// the relay looks for sessions of owners that are gone and re-checks what
// it holds (membership events trigger a takeover at once; the check
// catches what an event could not: a missed event, a lost race).
struct RelayOptions : ModuleOptions {
  // This instance's group; its sessions carry it.
  std::string group;
  // Groups whose sessions this instance keeps foreign copies of and may take
  // over; empty: every group (replicate to all).
  std::set<std::string> replicate;
  // A session whose chosen taker has not taken it this long after its owner
  // went is taken by any eligible instance.
  std::chrono::milliseconds takeover_grace{2000};
  // Most sessions this instance takes over when owners go; 0: no limit.
  std::size_t max_takeover = 0;
  // On the relay's callback thread, one event at a time, in order.
  std::function<void(const SessionEvent&)> on_event;
};

struct Counts {
  std::size_t own = 0;
  std::size_t foreign = 0;
  std::size_t total() const { return own + foreign; }
};

struct RelayStats {
  std::uint64_t checks = 0;  // checks completed (worker or run_once)
  std::uint64_t taken = 0;   // sessions this instance took over
  std::uint64_t lost = 0;    // own sessions lost (kLost reported)
};

// What restore found on start.
struct RestoreReport {
  std::size_t own = 0;        // sessions this instance still owned (adopted)
  std::size_t foreign = 0;    // peers' sessions copied
  std::size_t lost = 0;       // sessions taken from this instance id meanwhile
  std::size_t malformed = 0;  // entries skipped with a warning
  std::chrono::microseconds took{0};
};

class Relay {
 public:
  // Starts; once the Coordinator has joined (at once if it has), restores:
  // own sessions are adopted with a new fencing token, peers' copied.
  // InvalidArgument for bad options; a restore's error when the
  // Coordinator had joined.
  static absl::StatusOr<std::unique_ptr<Relay>> create(Coordinator& coordinator,
                                                       RelayOptions options);
  virtual ~Relay() = default;

  // Empty, and an empty report, until the relay has started.
  virtual const std::string& instance_id() const = 0;
  virtual const RestoreReport& restore_report() const = 0;

  // Creates a session owned by this instance. AlreadyExists if the id is
  // taken (by anyone).
  virtual absl::StatusOr<Session> create_session(std::string_view id,
                                                 std::string_view document,
                                                 std::chrono::milliseconds ttl = {}) = 0;
  // Replaces the document (and restarts the ttl). FailedPrecondition when
  // this instance does not own it (kLost follows if it believed it did).
  virtual absl::StatusOr<Session> update(std::string_view id,
                                         std::string_view document) = 0;
  // Deletes one of this instance's sessions; FailedPrecondition for a
  // session owned by a peer (its stored copy is untouched): forward_remove.
  virtual absl::Status remove(std::string_view id) = 0;
  // Asks the owner of a foreign session to delete it: the owner's relay
  // deletes it (if it still owns that version or a later one) and reports
  // kRemovedOnRequest to its application. Fire and forget: the deletion
  // shows here as the foreign copy going away. NotFound if no copy is known
  // here; FailedPrecondition for one of our own sessions (use remove).
  virtual absl::Status forward_remove(std::string_view id) = 0;

  // This instance's copy of a session (own or foreign), or nullopt.
  virtual std::optional<Session> find(std::string_view id) const = 0;
  virtual std::vector<Session> own() const = 0;
  virtual std::vector<Session> foreign() const = 0;
  virtual Counts counts() const = 0;
  virtual RelayStats stats() const = 0;

  // One check: take over sessions of owners that are gone, re-read what may
  // be stale; then waits for the events it caused to be delivered. The
  // worker runs it every check_interval. FailedPrecondition until the
  // Coordinator has joined.
  virtual absl::Status run_once() = 0;
};

// Session record codec, for tools (fleetctl) that read the maps directly:
// the map holding session `id`, and the stored value's format.
std::string bucket_map(std::string_view relay_name, std::string_view id);
absl::StatusOr<Session> decode_session(std::string_view id, std::string_view value);
std::string encode_session(const Session& s);

}  // namespace fleet::relay

#endif  // FLEET_RELAY_HPP_
