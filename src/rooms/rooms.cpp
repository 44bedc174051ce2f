// fleet::rooms on the module skeleton: the facade that ties its parts
// together — NodeRegistry (instances and nodes), Placements (where rooms
// are hosted), LocalRooms (this instance's members and room copies),
// Broadcasts, Cleanup (instances that are gone) and the generic Requests.
#include <algorithm>
#include <memory>
#include <mutex>

#include "fleet/names.hpp"
#include "fleet/rooms.hpp"
#include "fmt/format.h"
#include "internal/parse.hpp"
#include "internal/status.hpp"
#include "module/core.hpp"
#include "module/requests.hpp"
#include "rooms/broadcast.hpp"
#include "rooms/cleanup.hpp"
#include "rooms/context.hpp"
#include "rooms/internal.hpp"
#include "rooms/members.hpp"
#include "rooms/placement.hpp"
#include "rooms/registry.hpp"

namespace fleet::rooms {
namespace {

using namespace internal_rooms;
using internal::MutexLock;

absl::Status validate_options(const RoomsOptions& o) {
  FLEET_RETURN_IF_ERROR(validate_module_options(o, "rooms"));
  if (o.takeover_grace.count() < 0) {
    return absl::InvalidArgumentError("takeover_grace must not be negative");
  }
  if (o.max_message_bytes == 0 || o.max_message_bytes > kMaxValueBytes / 2) {
    return absl::InvalidArgumentError(
        fmt::format("max_message_bytes must be between 1 and {}", kMaxValueBytes / 2));
  }
  if (o.host) {
    if (o.host->max_rooms < 0) {
      return absl::InvalidArgumentError("NodeInfo::max_rooms must not be negative");
    }
    if (o.host->address.find('\n') != std::string::npos) {
      return absl::InvalidArgumentError("NodeInfo::address must not contain a newline");
    }
  }
  return absl::OkStatus();
}

absl::Status check_size(std::string_view what, std::string_view value, std::size_t max) {
  if (value.size() <= max) return absl::OkStatus();
  return absl::InvalidArgumentError(
      fmt::format("{} is {} bytes; at most {} are allowed", what, value.size(), max));
}

class RoomsImpl final : public Rooms, private internal::ModuleHooks {
 public:
  RoomsImpl(Coordinator& c, RoomsOptions o)
      : o_(std::move(o)),
        core_(c, o_, "rooms", /*names_instance=*/true),
        ctx_{c, o_, core_, {}},
        registry_(ctx_),
        placements_(ctx_, registry_,
                    [this](const std::string& room) { return local_.has_members(room); }),
        local_(ctx_,
               [this](const std::string& room) { return broadcasts_.subscribe(room); }),
        broadcasts_(ctx_, local_),
        cleanup_(ctx_, registry_, placements_),
        requests_(c, requests_prefix(o_.name), core_.log(),
                  [this](std::string_view topic, std::string_view body) {
                    return answer(topic, body);
                  }) {}

  // Everything that calls back into the parts stops before any part goes:
  // the worker and callback thread, then every change stream.
  ~RoomsImpl() override {
    core_.stop();
    requests_.stop();
    local_.stop();
    placements_.stop();
    registry_.stop();
  }

  absl::Status start() { return core_.start(this); }

  const std::string& instance_id() const override {
    static const std::string kNone;
    return core_.attached() ? ctx_.me : kNone;
  }

  // ---- nodes ------------------------------------------------------------------

  absl::Status set_node_state(NodeState state) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    if (!o_.host) return not_host();
    registry_.set_state(state);
    core_.log().info("node '{}' is now {}", ctx_.me, to_string(state));
    return registry_.publish_record();
  }

  absl::Status report_load(std::int64_t clients, double cpu) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    if (!o_.host) return not_host();
    if (clients < 0 || !(cpu >= 0 && cpu <= 1e6)) {
      return absl::InvalidArgumentError(
          "clients must be >= 0 and cpu a finite value >= 0");
    }
    registry_.set_load(clients, cpu);
    return absl::OkStatus();
  }

  std::vector<Node> nodes() const override {
    return core_.attached() ? registry_.nodes() : std::vector<Node>{};
  }

  // ---- placement ----------------------------------------------------------------

  absl::StatusOr<Placement> assign(std::string_view room) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    return placements_.assign(std::string(room), {});
  }

  absl::StatusOr<std::optional<Placement>> locate(std::string_view room) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    return placements_.locate(std::string(room));
  }

  absl::Status release(std::string_view room) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    FLEET_ASSIGN_OR_RETURN(auto participants,
                           ctx_.c.scan(room_map(o_.name, room), kParticipantPrefix, 1));
    if (!participants.empty()) {
      return absl::FailedPreconditionError(
          fmt::format("room '{}' still has participants", room));
    }
    return placements_.release_if_empty(std::string(room), "released").status();
  }

  absl::StatusOr<Placement> migrate(std::string_view room, std::string_view to) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    return placements_.migrate(std::string(room), to);
  }

  absl::StatusOr<std::size_t> migrate_all() override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    if (!o_.host) return not_host();
    std::size_t moved = 0;
    absl::Status first_error;
    for (const auto& room : placements_.hosted()) {
      auto m = placements_.migrate(room, {});
      if (m.ok()) {
        if (m->node != ctx_.me) ++moved;
      } else if (first_error.ok()) {
        first_error = m.status();
      }
    }
    if (!first_error.ok() && moved == 0) return first_error;
    return moved;
  }

  std::vector<std::string> hosted() const override {
    return core_.attached() ? placements_.hosted() : std::vector<std::string>{};
  }

  // ---- room state -----------------------------------------------------------------

  absl::StatusOr<Placement> join(std::string_view room, std::string_view identity,
                                 std::string_view metadata) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    FLEET_RETURN_IF_ERROR(validate_identity(identity));
    FLEET_RETURN_IF_ERROR(
        check_size("participant metadata", metadata, kMaxMetadataBytes));
    const std::string r(room), id(identity), meta(metadata);
    std::lock_guard<std::mutex> join_lock(join_mu_);
    FLEET_ASSIGN_OR_RETURN(Placement placement, placements_.assign(r, {}));
    FLEET_RETURN_IF_ERROR(local_.open(r));
    if (absl::Status st = local_.write_member(r, id, meta); !st.ok()) {
      // The writes may have landed: take them back now or, failing that,
      // from the check, so nothing names a member nobody holds.
      core_.log().warn("join of '{}' to room '{}' failed ({}); undoing it", id, r,
                       std::string(st.message()));
      local_.undo_member(r, id, meta);
      close_room_if_unused(r);
      return st;
    }
    local_.add(r, id, meta);
    // The room may have been released by a last leave racing with us (it
    // read no participant before our write): place it again, where it was.
    auto still = ctx_.c.get(placement_map(o_.name), r);
    if (still.ok() && !still->has_value()) {
      core_.log().info("room '{}' was released while '{}' joined; placing it again", r,
                       id);
      FLEET_ASSIGN_OR_RETURN(placement, placements_.assign(r, placement.node));
    }
    core_.log().info(
        "participant routed: room={} identity={} instance={} node={} address={}", r, id,
        ctx_.me, placement.node, placement.address);
    return placement;
  }

  absl::Status leave(std::string_view room, std::string_view identity) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    FLEET_RETURN_IF_ERROR(validate_identity(identity));
    const std::string r(room), id(identity);
    std::lock_guard<std::mutex> join_lock(join_mu_);
    auto meta = local_.remove(r, id);
    if (!meta) {
      return absl::NotFoundError(
          fmt::format("'{}' is not a member of room '{}' through this instance", id, r));
    }
    local_.undo_member(r, id, *meta);
    close_room_if_unused(r);
    auto released = placements_.release_if_empty(r, "empty");
    if (!released.ok()) {
      core_.log().warn("room '{}': could not check whether it is empty: {}", r,
                       std::string(released.status().message()));
    }
    return absl::OkStatus();
  }

  absl::Status set_metadata(std::string_view room, std::string_view metadata) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    FLEET_RETURN_IF_ERROR(check_size("room metadata", metadata, kMaxMetadataBytes));
    return ctx_.c.put(room_map(o_.name, room), kMetadataKey, metadata).status();
  }

  absl::Status set_flag(std::string_view room, std::string_view flag,
                        std::string_view value) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    FLEET_RETURN_IF_ERROR(validate_name("room flag", flag));
    FLEET_RETURN_IF_ERROR(check_size("flag value", value, kMaxMetadataBytes));
    return ctx_.c.put(room_map(o_.name, room), flag_key(flag), value).status();
  }

  absl::StatusOr<RoomState> state(std::string_view room) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    RoomState out;
    out.room = std::string(room);
    FLEET_ASSIGN_OR_RETURN(auto got, ctx_.c.get(placement_map(o_.name), room));
    if (got.has_value()) {
      FLEET_ASSIGN_OR_RETURN(out.placement, decode_placement(room, got->value));
    }
    FLEET_ASSIGN_OR_RETURN(auto entries, ctx_.c.scan(room_map(o_.name, room)));
    for (const auto& e : entries) apply_state_entry(&out, e.key, e.entry.value);
    return out;
  }

  std::vector<std::string> local_members(std::string_view room) const override {
    return local_.members(std::string(room));
  }

  // ---- broadcast --------------------------------------------------------------------

  absl::Status broadcast(std::string_view room, std::string_view payload,
                         const BroadcastOptions& options) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    if (payload.size() > o_.max_message_bytes) {
      return absl::InvalidArgumentError(
          fmt::format("broadcast to room '{}' is {} bytes; the limit is {} "
                      "(RoomsOptions::max_message_bytes)",
                      room, payload.size(), o_.max_message_bytes));
    }
    if (!options.from.empty()) FLEET_RETURN_IF_ERROR(validate_identity(options.from));
    for (const auto& e : options.except) FLEET_RETURN_IF_ERROR(validate_identity(e));
    return broadcasts_.send(std::string(room), payload, options);
  }

  // ---- requests ---------------------------------------------------------------------

  RequestResult request(std::string_view topic, std::string_view body,
                        std::chrono::milliseconds timeout) override {
    RequestResult out;
    out.status = core_.ready();
    if (out.status.ok()) out.status = validate_name("request topic", topic);
    if (out.status.ok()) {
      out.status = check_size("request body", body, o_.max_message_bytes);
    }
    if (out.status.ok() && topic.substr(0, 6) == "fleet.") {
      out.status = absl::InvalidArgumentError(fmt::format(
          "request topic '{}': topics starting with 'fleet.' are reserved", topic));
    }
    if (!out.status.ok()) return out;
    return ask(topic, body, timeout);
  }

  absl::StatusOr<std::vector<Participant>> participants_everywhere(
      std::string_view room, std::chrono::milliseconds timeout,
      RequestResult* result) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_room(room));
    RequestResult r = ask(kParticipantsTopic, room, timeout);
    std::vector<Participant> out;
    for (const auto& reply : r.replies) {
      if (!reply.status.ok()) continue;
      std::string_view in = reply.body;
      std::string_view id, meta;
      while (!in.empty() && internal::take_field(&in, &id) &&
             internal::take_field(&in, &meta)) {
        out.push_back(Participant{std::string(id), reply.instance, std::string(meta)});
      }
    }
    std::sort(out.begin(), out.end(), [](const Participant& a, const Participant& b) {
      return std::tie(a.identity, a.instance) < std::tie(b.identity, b.instance);
    });
    absl::Status st = r.status;
    if (result != nullptr) *result = std::move(r);
    if (!st.ok()) return st;
    return out;
  }

  absl::StatusOr<std::size_t> disconnect_everywhere(std::string_view identity,
                                                    std::chrono::milliseconds timeout,
                                                    RequestResult* result) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_identity(identity));
    RequestResult r = ask(kDisconnectTopic, identity, timeout);
    std::size_t closed = 0;
    for (const auto& reply : r.replies) {
      std::uint64_t n = 0;
      if (reply.status.ok() && internal::parse_u64(reply.body, &n)) closed += n;
    }
    absl::Status st = r.status;
    if (result != nullptr) *result = std::move(r);
    if (!st.ok()) return st;
    return closed;
  }

  RoomsStats stats() const override {
    RoomsStats out;
    placements_.fill(&out);
    broadcasts_.fill(&out);
    out.checks = core_.steps();
    return out;
  }

  absl::Status run_once() override { return core_.run_once(); }

 private:
  // ---- module hooks -----------------------------------------------------------------

  absl::Status attach(const std::string& id) override {
    ctx_.me = id;
    FLEET_RETURN_IF_ERROR(registry_.attach());
    FLEET_RETURN_IF_ERROR(placements_.attach());
    FLEET_RETURN_IF_ERROR(requests_.attach(id));
    core_.log().info(
        "instance '{}' started{}", id,
        o_.host ? fmt::format(" hosting rooms at {} (region '{}', {})", o_.host->address,
                              o_.host->region, to_string(o_.host->state))
                : std::string(" (not hosting)"));
    return absl::OkStatus();
  }

  // Publishes the node record, retries undos, then handles instances that
  // are gone.
  absl::Status check() override {
    absl::Status first = registry_.publish_record();
    auto note = [&first](const absl::Status& s) {
      if (first.ok() && !s.ok()) first = s;
    };
    std::vector<std::string> emptied;
    note(local_.retry_undos(&emptied));
    for (const auto& room : emptied) (void)placements_.release_if_empty(room, "empty");
    if (!first.ok()) return first;
    return cleanup_.run();
  }

  // The backend lost its data: put back what this instance holds — its
  // record, the rooms it hosts (and where its members' rooms were), its
  // members, the state its copies know. Claims, so the first writer wins
  // and later ones see what it wrote.
  absl::Status republish() override {
    FLEET_RETURN_IF_ERROR(registry_.publish_record(/*force=*/true));
    FLEET_ASSIGN_OR_RETURN(const std::size_t placed,
                           placements_.republish(local_.rooms()));
    FLEET_ASSIGN_OR_RETURN(const std::size_t rooms, local_.republish());
    core_.log().info(
        "backend lost its data: re-published {} placement(s), {} room(s) with members",
        placed, rooms);
    return absl::OkStatus();
  }

  void on_connection(ConnectionState st) override {
    if (st == ConnectionState::kConnected || !core_.attached()) return;
    placements_.interrupted();
    std::vector<std::string> rooms;
    if (st == ConnectionState::kReconnected) {
      rooms = local_.rooms();
      broadcasts_.interrupted(rooms);
    }
    core_.log().info(
        "connection {}: locate cache paused until re-read{}", to_string(st),
        rooms.empty()
            ? std::string()
            : fmt::format("; {} room(s) may have missed broadcasts", rooms.size()));
  }

  void on_member(const MemberEvent& e) override {
    if (e.type == MemberEventType::kJoined || !core_.attached()) return;
    core_.log().info("instance '{}' {}: its rooms and members will be moved and removed",
                     e.member.info.id, to_string(e.type));
  }

  // ---- requests ---------------------------------------------------------------------

  // Every live instance with a Rooms record, and this one.
  RequestResult ask(std::string_view topic, std::string_view body,
                    std::chrono::milliseconds timeout) {
    if (absl::Status st = core_.live().refresh(); !st.ok()) {
      RequestResult out;
      out.status = st;
      return out;
    }
    std::set<std::string> expected;
    for (const auto& id : registry_.registered()) {
      if (core_.live().contains(id)) expected.insert(id);
    }
    expected.insert(ctx_.me);
    return requests_.ask(topic, body, std::move(expected), timeout);
  }

  // On the request thread.
  absl::StatusOr<std::string> answer(std::string_view topic, std::string_view body) {
    if (topic == kParticipantsTopic) return local_.participants_reply(std::string(body));
    if (topic == kDisconnectTopic) {
      const std::size_t n = o_.on_disconnect ? o_.on_disconnect(body) : 0;
      if (n > 0)
        core_.log().info("disconnected {} connection(s) of '{}' on request", n, body);
      return std::to_string(n);
    }
    if (o_.on_request) return o_.on_request(topic, body);
    return absl::UnimplementedError(fmt::format(
        "instance '{}' has no handler for request topic '{}'", ctx_.me, topic));
  }

  // ---- helpers ----------------------------------------------------------------------

  void close_room_if_unused(const std::string& room) {
    if (local_.close_if_unused(room)) broadcasts_.forget(room);
  }

  static absl::Status not_host() {
    return absl::FailedPreconditionError(
        "this instance does not host rooms (RoomsOptions::host is not set)");
  }

  const RoomsOptions o_;
  internal::ModuleCore core_;  // stopped first, destroyed after the parts
  Context ctx_;
  NodeRegistry registry_;
  Placements placements_;
  LocalRooms local_;
  Broadcasts broadcasts_;
  Cleanup cleanup_;
  internal::Requests requests_;
  std::mutex join_mu_;  // joins and leaves, one at a time
};

}  // namespace

absl::StatusOr<std::unique_ptr<Rooms>> Rooms::create(Coordinator& coordinator,
                                                     RoomsOptions options) {
  FLEET_RETURN_IF_ERROR(validate_options(options));
  auto rooms = std::make_unique<RoomsImpl>(coordinator, std::move(options));
  FLEET_RETURN_IF_ERROR(rooms->start());
  return std::unique_ptr<Rooms>(std::move(rooms));
}

}  // namespace fleet::rooms
