// fleet::rooms — rooms hosted on one node each, clients on any instance.
//
// Real-time services (SFUs, chat, games, editors) host each room on one node
// and let clients connect to any instance. Each instance creates a Rooms on
// its own Coordinator session (a fleet module: module.hpp); an instance that
// hosts rooms says so with `host`:
//
//   fleet::rooms::RoomsOptions o;                  // a fleet::ModuleOptions
//   o.host = fleet::rooms::NodeInfo{"10.0.0.7:7880"};
//   o.on_message = [&](const fleet::rooms::Delivery& d) {
//     send(d.recipients, d.payload);
//   };
//   auto rooms = fleet::rooms::Rooms::create(*coordinator, o).value();
//   auto where = rooms->join("standup", "alice", R"({"name":"Alice"})");
//   if (!where.ok()) return where.status();          // join assigns the room
//   fleet::rooms::BroadcastOptions from_alice;
//   from_alice.from = "alice";                     // Delivery::from
//   from_alice.except = {"alice"};                 // everyone but her
//   if (auto st = rooms->broadcast("standup", "hello", from_alice); !st.ok()) ...
//
// The Rooms names this instance (and node) by the Coordinator's instance id,
// so it starts once the Coordinator has joined — created before join(), its
// calls return FailedPrecondition until then.
//
// Placement: assign() keeps a room on its node while that node is a live
// member; otherwise it selects a serving node (capacity, region, load) and
// claims the room for it in one atomic step, so any number of instances
// racing for a room agree on one node. locate() answers from a local mirror
// of the placement map, kept exact by its change stream (no round trip on a
// hit); while the stream may have missed a change (the connection was
// interrupted) it asks the backend instead, until the mirror is re-read.
// When a node stops being a live member, exactly one survivor (rendezvous
// choice; any after `takeover_grace`) moves each of its rooms with a
// compare-and-set, and every instance gets kMoved.
//
// Room state (participants, metadata, flags) lives in one map per room; the
// instances with members of a room keep a copy from its change stream.
// Broadcasts go to a channel per room that only instances with members of
// the room subscribe to. Each carries a sequence number per (sender, room):
// a receiver reports a gap, and after any interruption of its connection to
// the backend it reports every room that may have missed messages.
//
// Errors: InvalidArgument (bad room name, identity, oversized payload),
// NotFound (no such room / participant), ResourceExhausted (every live
// serving node is at max_rooms), Unavailable (no live serving node at all,
// or the backend cannot be reached), FailedPrecondition (this instance does
// not host, or the Coordinator has not joined), DeadlineExceeded (a request
// some instances did not answer: the partial result comes with it), and the
// Coordinator's DeadlineExceeded when the backend is too slow.
//
// Threads: every method is safe from any thread. on_room_event,
// on_participant, on_gap and on_message run on the Rooms' callback thread,
// one at a time, in the order of the events (this instance's own
// broadcasts included), never on the Coordinator's event thread; on_request
// and on_disconnect run on the Rooms' request thread. Both may call the
// Rooms — request() too: a request sent from on_request gets this
// instance's answer computed inline. See docs/threading.md.
//
// Lifetime: the Coordinator must outlive the Rooms; destroy the Rooms
// first. Destroying it does not leave the rooms: the members' instance
// leaving or expiring cleans them up. Call leave() for a clean exit.
#ifndef FLEET_ROOMS_HPP_
#define FLEET_ROOMS_HPP_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
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

namespace fleet::rooms {

inline constexpr std::size_t kMaxRoomNameBytes = 128;
inline constexpr std::size_t kMaxIdentityBytes = 128;
inline constexpr std::size_t kMaxMetadataBytes = 16 * 1024;

enum class NodeState { kStarting, kServing, kDraining };
std::string_view to_string(NodeState state);
// "starting", "serving", "draining".
absl::StatusOr<NodeState> parse_node_state(std::string_view text);

// What a room-hosting node says about itself.
struct NodeInfo {
  std::string address;         // where clients reach it (host:port), free text
  std::string region;          // empty: unknown
  std::int64_t max_rooms = 0;  // 0: no limit
  NodeState state = NodeState::kServing;
};

struct NodeStats {
  std::int64_t rooms = 0;    // filled in by the Rooms (rooms placed here)
  std::int64_t clients = 0;  // as the application reports
  double cpu = 0;            // 0..1, as the application reports
};

struct Node {
  std::string id;  // the instance id
  NodeInfo info;
  NodeStats stats;
};

struct Placement {
  std::string room;
  std::string node;     // the hosting node's id
  std::string address;  // its NodeInfo::address
  // 1 when first assigned, +1 on every move.
  std::uint64_t generation = 0;
  std::string cause;          // "assigned", "node-died", "migrated", "republished"
  std::string previous_node;  // empty when first assigned
};

enum class RoomEventType {
  kAssigned,  // a room was placed on a node
  kMoved,     // a room moved to another node (cause: node-died, migrated, ...)
  kReleased,  // a room was released (empty, or release())
};
std::string_view to_string(RoomEventType type);

struct RoomEvent {
  RoomEventType type;
  std::string room;
  std::string from;  // node; empty for kAssigned
  std::string to;    // node; empty for kReleased
  std::string cause;
};

struct Participant {
  std::string identity;
  std::string instance;  // the instance the participant is connected to
  std::string metadata;
};

struct RoomState {
  std::string room;
  std::optional<Placement> placement;
  std::string metadata;
  std::map<std::string, std::string> flags;
  std::vector<Participant> participants;  // ordered by identity
};

enum class ParticipantEventType { kJoined, kLeft, kUpdated };
// "joined", "left", "updated".
std::string_view to_string(ParticipantEventType type);

// A change of a room this instance has members in.
struct ParticipantEvent {
  ParticipantEventType type;
  std::string room;
  Participant participant;
};

// A broadcast reaching this instance.
struct Delivery {
  std::string room;
  std::string sender;          // instance id of the sender
  std::string from;            // identity of the sending participant, may be empty
  std::uint64_t sequence = 0;  // per (sender incarnation, room): 1, 2, 3, ...
  std::string payload;
  // This instance's members of the room, minus the except-list.
  std::vector<std::string> recipients;
};

// This instance may have missed broadcasts of `room`.
struct Gap {
  std::string room;
  std::string sender;        // empty when the connection to the backend was lost
  std::uint64_t missed = 0;  // known count; 0 when unknown
  std::string reason;
};

// Requests across instances (request(), participants_everywhere(), ...)
// answer with the module skeleton's types.
using fleet::Reply;
using fleet::RequestResult;

// Who a broadcast is from, and who does not receive it.
struct BroadcastOptions {
  // The sending participant's identity (Delivery::from); empty: none.
  std::string from;
  // Identities that do not receive it. The sender receives its own
  // broadcast unless it is listed here.
  std::vector<std::string> except;
};

struct RoomsStats {
  std::uint64_t locate_hits = 0, locate_misses = 0;
  // Times the locate cache stopped answering until the placement map was
  // re-read (the stream may have missed changes).
  std::uint64_t cache_drops = 0;
  std::uint64_t broadcasts_sent = 0;
  // Broadcasts the backend did not take (unreachable): delivered to this
  // instance's members only; the other instances report them as a gap.
  std::uint64_t broadcasts_local_only = 0;
  std::uint64_t broadcasts_received = 0;  // from the backend (other instances)
  std::uint64_t gaps = 0;
  std::uint64_t rooms_moved_here = 0;  // moves this instance made
  std::uint64_t checks = 0;            // checks completed (worker or run_once)
};

// ModuleOptions::name is the rooms namespace inside the Coordinator's;
// check_interval: how often the node record (stats) is re-published and
// instances that are gone are looked for.
struct RoomsOptions : ModuleOptions {
  // Set: this instance hosts rooms (a node).
  std::optional<NodeInfo> host;
  // Where this instance is: nodes of the same region are preferred.
  std::string region;
  // Largest broadcast payload; larger ones are refused (InvalidArgument).
  std::size_t max_message_bytes = 64 * 1024;
  // A dead node's rooms not moved by the chosen survivor this long after it
  // went are moved by any instance.
  std::chrono::milliseconds takeover_grace{2000};
  // On the callback thread.
  std::function<void(const RoomEvent&)> on_room_event;
  std::function<void(const Delivery&)> on_message;
  std::function<void(const Gap&)> on_gap;
  std::function<void(const ParticipantEvent&)> on_participant;
  // On the request thread: answers requests of application topics (see
  // Rooms::request).
  std::function<absl::StatusOr<std::string>(std::string_view topic,
                                            std::string_view body)>
      on_request;
  // On the request thread: disconnects this instance's connections of
  // `identity` (Rooms::disconnect_everywhere); returns how many it closed.
  std::function<std::size_t(std::string_view identity)> on_disconnect;
};

class Rooms {
 public:
  // Starts; once the Coordinator has joined (at once if it has) registers
  // this instance (and node, with `host`) and loads the nodes and
  // placements. InvalidArgument for bad options; a load's error when the
  // Coordinator had joined.
  static absl::StatusOr<std::unique_ptr<Rooms>> create(Coordinator& coordinator,
                                                       RoomsOptions options);
  // Stops; does not leave the rooms (the members' instance dying or leaving
  // the fleet cleans them up). Call leave() for a clean exit.
  virtual ~Rooms() = default;

  // Empty until the Rooms has started.
  virtual const std::string& instance_id() const = 0;

  // ---- nodes ----------------------------------------------------------------
  // FailedPrecondition when this instance does not host.
  virtual absl::Status set_node_state(NodeState state) = 0;
  virtual absl::Status report_load(std::int64_t clients, double cpu) = 0;
  // Live nodes as last seen (no round trip), ordered by id.
  virtual std::vector<Node> nodes() const = 0;

  // ---- placement ------------------------------------------------------------
  virtual absl::StatusOr<Placement> assign(std::string_view room) = 0;
  // nullopt when the room is not assigned.
  virtual absl::StatusOr<std::optional<Placement>> locate(std::string_view room) = 0;
  // Releases the room's placement and state (FailedPrecondition while it
  // has participants). OK if it was not assigned.
  virtual absl::Status release(std::string_view room) = 0;
  // Moves the room to `to` (empty: select one; not this room's node).
  virtual absl::StatusOr<Placement> migrate(std::string_view room,
                                            std::string_view to = {}) = 0;
  // Moves every room this node hosts elsewhere; returns how many moved.
  virtual absl::StatusOr<std::size_t> migrate_all() = 0;
  // Rooms placed on this node (from the change stream).
  virtual std::vector<std::string> hosted() const = 0;

  // ---- room state -----------------------------------------------------------
  // Adds a participant connected to this instance (assigning the room when
  // needed); returns the placement. Joining again updates the metadata.
  virtual absl::StatusOr<Placement> join(std::string_view room, std::string_view identity,
                                         std::string_view metadata = {}) = 0;
  // NotFound when the identity is not a member through this instance. The
  // room is released when its last participant leaves.
  virtual absl::Status leave(std::string_view room, std::string_view identity) = 0;
  virtual absl::Status set_metadata(std::string_view room, std::string_view metadata) = 0;
  virtual absl::Status set_flag(std::string_view room, std::string_view flag,
                                std::string_view value) = 0;
  // The stored state (one round trip per map).
  virtual absl::StatusOr<RoomState> state(std::string_view room) = 0;
  // This instance's members of `room`.
  virtual std::vector<std::string> local_members(std::string_view room) const = 0;

  // ---- broadcast ------------------------------------------------------------
  // Delivers `payload` to the room's members on every instance but those in
  // options.except (the sender too, unless listed there). Only instances
  // with members of the room receive it; this instance's own members get it
  // through on_message like everyone else.
  // When the backend does not take it (unreachable: Unavailable, or
  // DeadlineExceeded when it may have), this instance's members still get
  // it and the error says "reached this instance's members only"; the other
  // instances report the broadcasts they missed as a Gap of exactly that
  // many when the sender's next broadcast reaches them.
  virtual absl::Status broadcast(std::string_view room, std::string_view payload,
                                 const BroadcastOptions& options = {}) = 0;

  // ---- requests across instances ---------------------------------------------
  // Asks every live Rooms instance (this one included); waits for all of
  // them, at most `timeout` (on the Coordinator's clock). Topics starting
  // with "fleet." are reserved.
  virtual RequestResult request(std::string_view topic, std::string_view body,
                                std::chrono::milliseconds timeout) = 0;
  // Every participant of `room` as their instances report them.
  virtual absl::StatusOr<std::vector<Participant>> participants_everywhere(
      std::string_view room, std::chrono::milliseconds timeout,
      RequestResult* result = nullptr) = 0;
  // Asks every instance to disconnect `identity` (on_disconnect); returns the
  // number of connections closed.
  virtual absl::StatusOr<std::size_t> disconnect_everywhere(
      std::string_view identity, std::chrono::milliseconds timeout,
      RequestResult* result = nullptr) = 0;

  virtual RoomsStats stats() const = 0;
  // One check: publish the node record, move rooms of nodes that are gone,
  // clean up members of instances that are gone; then waits for the events
  // it caused to be delivered. The worker runs it every check_interval and
  // at once on a membership change. FailedPrecondition until the
  // Coordinator has joined.
  virtual absl::Status run_once() = 0;
};

// Record codecs, for tools (fleetctl) that read the maps directly.
std::string placement_map(std::string_view name);
std::string nodes_map(std::string_view name);
std::string room_map(std::string_view name, std::string_view room);
absl::StatusOr<Placement> decode_placement(std::string_view room, std::string_view value);
absl::StatusOr<Node> decode_node(std::string_view id, std::string_view value);
// A room map's participant entry: key "p\n<identity>".
absl::StatusOr<Participant> decode_participant(std::string_view key,
                                               std::string_view value);
absl::Status validate_room(std::string_view room);
absl::Status validate_identity(std::string_view identity);

// True for an error of Rooms::broadcast() whose broadcast this instance's
// members did get (the backend did not take it for the other instances).
bool reached_local_members_only(const absl::Status& status);

}  // namespace fleet::rooms

#endif  // FLEET_ROOMS_HPP_
