// Value types exchanged with a fleet::Coordinator. Plain structs, copyable,
// no backend types. See coordinator.hpp for the operations that use them.
#ifndef FLEET_TYPES_HPP_
#define FLEET_TYPES_HPP_

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "fleet/clock.hpp"

namespace fleet {

// ---- membership -----------------------------------------------------------

// What an instance says about itself when it joins the fleet.
struct InstanceInfo {
  std::string id;        // a name (see names.hpp), unique among live members
  std::string hostname;  // free text, may be empty
  std::string version;   // free text, may be empty
  // Wall time the instance started. Default (epoch): join() fills in now.
  Clock::WallTime started_at{};
  std::map<std::string, std::string> metadata;  // free-form, any bytes
};

// A live member as seen by everyone.
struct Member {
  InstanceInfo info;
  std::string session_id;  // the Coordinator session that joined it
  Clock::WallTime last_heartbeat{};
};

enum class MemberEventType {
  kJoined,   // a session called join()
  kLeft,     // a session called leave()
  kExpired,  // a session stopped heartbeating for longer than its TTL
};

struct MemberEvent {
  MemberEventType type;
  Member member;
};

// ---- node state -----------------------------------------------------------

// How the views of several instances of one metric combine.
enum class Aggregation { kSum, kAvg, kMin, kMax };

// Declares, per metric name, how to aggregate it. Metrics not listed use
// `default_aggregation`.
struct AggregationSpec {
  std::map<std::string, Aggregation> metrics;
  Aggregation default_aggregation = Aggregation::kAvg;
};

struct AggregatedMetric {
  double value = 0;
  std::uint32_t reporters = 0;  // live sessions that reported this metric
};

// One node's metrics combined over every live session's view of it.
struct NodeAggregate {
  std::string node_id;
  std::map<std::string, AggregatedMetric> metrics;
  std::uint32_t reporters = 0;  // live sessions with a view of this node
};

// ---- locks and leader election --------------------------------------------

enum class LeaseKind { kLock, kLeadership };

// A granted lock or leadership. The pair (owner, fence) identifies the grant.
struct Lease {
  LeaseKind kind = LeaseKind::kLock;
  std::string name;   // lock or election name
  std::string owner;  // session id of the holder
  // Fencing token: strictly greater than the token of every earlier grant of
  // this name, across all holders and backends' restarts of the holder. Pass
  // it to the protected resource, which rejects tokens lower than one seen.
  // On Redis a token is at least the server's time in microseconds, so
  // tokens keep growing after Redis lost its data (the last one is gone with
  // it); in-process they count 1, 2, 3, ... (the store cannot lose them).
  // Compare tokens of one lock name on one backend only.
  std::uint64_t fence = 0;
  std::chrono::milliseconds ttl{0};
  // The holder's conservative estimate of the expiry, on its own Clock
  // (measured from before the request was sent).
  Clock::TimePoint expires_at{};
};

// The current holder of an election.
struct Leader {
  std::string election;
  std::string value;  // what the leader campaigned with (e.g. its address)
  std::string owner;  // session id of the leader
  std::uint64_t fence = 0;
};

// ---- maps -------------------------------------------------------------------

struct Entry {
  std::string value;
  // The map's revision at the entry's last write: strictly increasing over
  // all writes to one map (never reused, even after a delete).
  std::uint64_t version = 0;
};

struct MapEntry {
  std::string key;
  Entry entry;
};

struct ClaimResult {
  bool claimed = false;  // true when this call created the entry
  Entry entry;           // the entry now in place (ours, or the winner's)
};

// One operation of Coordinator::apply, with the meaning of the single call
// of the same name: claim, put, compare_and_set, compare_and_delete, erase.
enum class MapOpType { kClaim, kPut, kCompareAndSet, kCompareAndDelete, kErase };

struct MapOp {
  MapOpType type = MapOpType::kPut;
  std::string key;
  std::string value;                 // kClaim, kPut, kCompareAndSet
  std::string expected;              // kCompareAndSet, kCompareAndDelete
  std::chrono::milliseconds ttl{0};  // kClaim, kPut, kCompareAndSet; 0: none

  static MapOp claim(std::string key, std::string value,
                     std::chrono::milliseconds ttl = std::chrono::milliseconds(0));
  static MapOp put(std::string key, std::string value,
                   std::chrono::milliseconds ttl = std::chrono::milliseconds(0));
  static MapOp compare_and_set(
      std::string key, std::string expected, std::string value,
      std::chrono::milliseconds ttl = std::chrono::milliseconds(0));
  static MapOp compare_and_delete(std::string key, std::string expected);
  static MapOp erase(std::string key);
};

struct MapOpResult {
  // The operation wrote or deleted: true for every put; for claim, what
  // ClaimResult::claimed says; for the others, what the single call returns.
  bool applied = false;
  // claim: the entry now in place (ours or the winner's); put and an applied
  // compare_and_set: the new entry; otherwise empty (version 0).
  Entry entry;
};

// Most operations in one Coordinator::apply call, and most bytes of keys,
// values and expected values together.
inline constexpr std::size_t kMaxMapBatchOps = 1000;
inline constexpr std::size_t kMaxMapBatchBytes = 16 * 1024 * 1024;

enum class WatchEventType { kSet, kDeleted, kExpired };

struct WatchEvent {
  WatchEventType type;
  std::string map;
  std::string key;
  std::string value;          // new value for kSet; empty otherwise
  std::uint64_t version = 0;  // map revision of this change
};

// ---- slot pools -------------------------------------------------------------
// A slot pool counts the slots in use on each of its targets (requests in
// flight per backend node, rooms per media server) over every session.
// Coordinator::acquire_slot picks a target and takes a slot on it in one
// atomic step; the choice follows SlotRequest, identically on every backend.

struct SlotCandidate {
  std::string target;         // name rules (see names.hpp)
  std::int64_t capacity = 0;  // most slots in use at once; > 0
  double score = 0;           // lower is better; finite
  std::int32_t tier = 0;      // lower tiers are preferred, see tier_load_limit
};

// How acquire_slot chooses. With `used` the slots in use on a candidate
// (every live session's) and load = used / capacity, before this slot, and
// the candidates taken in order from index rotate % size, wrapping around:
//  1. a candidate has room when used < capacity; only those are eligible;
//     with sample = k > 0 only the first k of them are;
//  2. if some eligible candidate has load < tier_load_limit, only the
//     lowest tier that has one counts, and in it only those candidates;
//     otherwise every eligible candidate does;
//  3. the lowest score + load_weight * load wins; ties go to the earliest.
// No eligible candidate: no slot is taken.
struct SlotRequest {
  std::vector<SlotCandidate> candidates;  // 1..kMaxSlotCandidates, distinct targets
  double load_weight = 1.0;               // finite, >= 0
  double tier_load_limit = 1.0;           // (0, 1]
  std::uint32_t sample = 0;               // 0: all eligible; k: power of k choices
  std::uint32_t rotate = 0;  // where the order starts (equal ones take turns)
};

inline constexpr std::size_t kMaxSlotCandidates = 256;

struct SlotGrant {
  std::string target;
  std::int64_t used = 0;      // slots in use on target, this one included
  std::int64_t capacity = 0;  // the capacity it was granted under
};

// ---- messaging --------------------------------------------------------------

struct Message {
  std::string channel;
  std::string payload;
  std::string publisher;  // session id of the publisher
  // 1, 2, 3, ... per publisher session: a gap means messages were lost.
  std::uint64_t sequence = 0;
};

// ---- connection -------------------------------------------------------------

enum class ConnectionState {
  kConnected,  // the backend is reachable
  // Unreachable; our leases and membership may still be valid. (Redis)
  // Also while only the pub/sub connection is down: calls work, but
  // messages and watch events are being missed.
  kSuspended,
  // The backend dropped this session: it was unreachable for longer than
  // its TTL, or the backend lost its data. Others saw it leave; leases may
  // be gone (renew() tells). Drop what a lease protected.
  kLost,
  // Reachable again, and the backend holds this session's record again:
  // membership, node views, owned contributions and slots; subscriptions
  // and watches are back. Re-read what events would have told meanwhile.
  kReconnected,
};

std::string_view to_string(MemberEventType type);
std::string_view to_string(Aggregation aggregation);
std::string_view to_string(LeaseKind kind);
std::string_view to_string(WatchEventType type);
std::string_view to_string(ConnectionState state);

}  // namespace fleet

#endif  // FLEET_TYPES_HPP_
