// fleet::rooms: placement by claim / compare-and-set on one map, a locate
// cache kept by that map's change stream, room state in one map per room,
// broadcasts on a channel per room, requests answered over pub/sub.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "fleet/names.hpp"
#include "fleet/rooms.hpp"
#include "fmt/format.h"
#include "internal/status.hpp"
#include "internal/logger.hpp"
#include "internal/rendezvous.hpp"
#include "rooms/internal.hpp"

namespace fleet::rooms {

namespace {

using namespace internal_rooms;
using std::chrono::milliseconds;

constexpr std::size_t kMaxNamespaceBytes = 48;
constexpr std::size_t kBatch = 1000;  // kMaxMapBatchOps

std::uint64_t weight(std::string_view a, std::string_view b) {
  return internal::rendezvous_weight(a, b);
}

std::string index_map(std::string_view name, std::string_view instance) {
  return fmt::format("rooms/{}/at/{}", name, instance);
}
std::string broadcast_channel(std::string_view name, std::string_view room) {
  return fmt::format("rooms/{}/bc/{}", name, room);
}
std::string request_channel(std::string_view name) {
  return fmt::format("rooms/{}/req", name);
}
std::string reply_channel(std::string_view name, std::string_view instance) {
  return fmt::format("rooms/{}/resp/{}", name, instance);
}

// Length-prefixed fields ("<n>:<bytes>"), for request replies whose fields
// are any bytes.
void put_field(std::string* out, std::string_view field) {
  fmt::format_to(std::back_inserter(*out), "{}:", field.size());
  out->append(field);
}
bool take_field(std::string_view* in, std::string_view* field) {
  const std::size_t colon = in->find(':');
  std::uint64_t n = 0;
  if (colon == std::string_view::npos || !parse_u64(in->substr(0, colon), &n) ||
      n > in->size() - colon - 1) {
    return false;
  }
  *field = in->substr(colon + 1, n);
  in->remove_prefix(colon + 1 + n);
  return true;
}

constexpr std::string_view kParticipantsTopic = "fleet.participants";
constexpr std::string_view kDisconnectTopic = "fleet.disconnect";

class RoomsImpl final : public Rooms {
 public:
  RoomsImpl(Coordinator& c, RoomsOptions o, std::string me)
      : c_(c),
        o_(std::move(o)),
        me_(std::move(me)),
        log_(o_.log_sink, LogLevel::kInfo, "rooms"),
        incarnation_(std::random_device{}() ^
                     (static_cast<std::uint64_t>(std::random_device{}()) << 32)) {
    if (o_.host) {
      self_.id = me_;
      self_.info = *o_.host;
    }
  }

  ~RoomsImpl() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    // Callbacks capture `this`: cancel them (waiting for a running one)
    // before anything they touch goes. Never under mu_.
    std::vector<Subscription> subs;
    std::map<std::string, LocalRoom, std::less<>> rooms;
    {
      std::lock_guard<std::mutex> lock(mu_);
      subs = std::move(subs_);
      rooms = std::move(local_);
    }
    subs.clear();
    rooms.clear();
  }

  absl::Status start() {
    // Change streams first, so that nothing written after the loads is missed.
    auto add = [&](absl::StatusOr<Subscription> s) -> absl::Status {
      if (!s.ok()) return s.status();
      subs_.push_back(std::move(*s));
      return absl::OkStatus();
    };
    FLEET_RETURN_IF_ERROR(add(c_.watch(nodes_map(o_.name), "", [this](const WatchEvent& e) { on_node_event(e); })));
    FLEET_RETURN_IF_ERROR(add(c_.watch(placement_map(o_.name), "", [this](const WatchEvent& e) { on_placement_event(e); })));
    FLEET_RETURN_IF_ERROR(add(c_.subscribe(request_channel(o_.name), [this](const Message& m) { on_request_message(m); })));
    FLEET_RETURN_IF_ERROR(add(c_.subscribe(reply_channel(o_.name, me_), [this](const Message& m) { on_reply_message(m); })));
    FLEET_RETURN_IF_ERROR(add(c_.watch_members([this](const MemberEvent& e) { on_member_event(e); })));
    seen_losses_ = c_.data_losses();
    FLEET_RETURN_IF_ERROR(refresh_nodes());
    FLEET_RETURN_IF_ERROR(refresh_live());
    if (o_.host) {
      auto all = c_.scan(placement_map(o_.name));
      if (!all.ok()) return all.status();
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& e : *all) {
        auto p = decode_placement(e.key, e.entry.value);
        if (!p.ok()) {
          log_.warn("skipping a malformed placement of room '{}'", e.key);
          continue;
        }
        if (p->node == me_) hosted_.insert(e.key);
        cache_[e.key] = Cached{*p, e.entry.version};
      }
      self_.stats.rooms = static_cast<std::int64_t>(hosted_.size());
      if (!hosted_.empty()) {
        log_.info("node '{}' restarted with {} rooms still placed on it", me_,
                  hosted_.size());
      }
    }
    FLEET_RETURN_IF_ERROR(publish_record());
    FLEET_RETURN_IF_ERROR(add(c_.watch_connection([this](ConnectionState st) { on_connection(st); })));
    log_.info(
        "instance '{}' started{}", me_,
        o_.host ? fmt::format(" hosting rooms at {} (region '{}', {})", o_.host->address,
                              o_.host->region, to_string(o_.host->state))
                : std::string(" (not hosting)"));
    if (o_.background) worker_ = std::thread([this] { worker(); });
    return absl::OkStatus();
  }

  const std::string& instance_id() const override { return me_; }

  // ---- nodes ------------------------------------------------------------------

  absl::Status set_node_state(NodeState state) override {
    if (!o_.host) return not_host();
    {
      std::lock_guard<std::mutex> lock(mu_);
      self_.info.state = state;
    }
    log_.info("node '{}' is now {}", me_, to_string(state));
    return publish_record();
  }

  absl::Status report_load(std::int64_t clients, double cpu) override {
    if (!o_.host) return not_host();
    if (clients < 0 || !(cpu >= 0 && cpu <= 1e6)) {
      return absl::InvalidArgumentError(
          "clients must be >= 0 and cpu a finite value >= 0");
    }
    std::lock_guard<std::mutex> lock(mu_);
    self_.stats.clients = clients;
    self_.stats.cpu = cpu;
    return absl::OkStatus();
  }

  std::vector<Node> nodes() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Node> out;
    for (const auto& [id, rec] : registry_) {
      if (rec.node && live_.count(id) != 0) out.push_back(*rec.node);
    }
    return out;
  }

  // ---- placement ----------------------------------------------------------------

  absl::StatusOr<Placement> assign(std::string_view room) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    return assign_preferring(std::string(room), {});
  }

  absl::StatusOr<std::optional<Placement>> locate(std::string_view room) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    std::uint64_t epoch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = cache_.find(room);
      if (it != cache_.end()) {
        ++stats_.locate_hits;
        log_.log(LogLevel::kDebug, "room located: room={} node={} cache=hit", room,
                 it->second.p.node);
        return std::optional<Placement>(it->second.p);
      }
      ++stats_.locate_misses;
      epoch = epoch_;
    }
    auto got = c_.get(placement_map(o_.name), room);
    if (!got.ok()) return got.status();
    if (!got->has_value()) return std::optional<Placement>();
    auto p = decode_placement(room, (*got)->value);
    if (!p.ok()) return p.status();
    remember(*p, (*got)->version, epoch);
    log_.info("room located: room={} node={} cache=miss", room, p->node);
    return std::optional<Placement>(*p);
  }

  absl::Status release(std::string_view room) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    auto participants = c_.scan(room_map(o_.name, room), kParticipantPrefix, 1);
    if (!participants.ok()) return participants.status();
    if (!participants->empty()) {
      return absl::FailedPreconditionError(
          fmt::format("room '{}' still has participants", room));
    }
    auto released = release_if_empty(std::string(room), "released");
    return released.status();
  }

  absl::StatusOr<Placement> migrate(std::string_view room, std::string_view to) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    auto got = c_.get(placement_map(o_.name), room);
    if (!got.ok()) return got.status();
    if (!got->has_value()) {
      return absl::NotFoundError(fmt::format("room '{}' is not assigned", room));
    }
    auto cur = decode_placement(room, (*got)->value);
    if (!cur.ok()) return cur.status();
    std::optional<Node> target;
    if (!to.empty()) {
      bool known;
      {
        std::lock_guard<std::mutex> lock(mu_);
        known = is_live_node(std::string(to));
      }
      if (!known) {
        // It may have started since our last look.
        FLEET_RETURN_IF_ERROR(refresh_nodes());
        FLEET_RETURN_IF_ERROR(refresh_live());
      }
      std::lock_guard<std::mutex> lock(mu_);
      auto it = registry_.find(to);
      if (it == registry_.end() || !it->second.node || live_.count(it->first) == 0 ||
          it->second.node->info.state != NodeState::kServing) {
        return absl::FailedPreconditionError(
            fmt::format("node '{}' is not a live serving node", to));
      }
      target = *it->second.node;
    } else {
      auto chosen = select(std::string(room), {cur->node});
      if (!chosen.ok()) return chosen.status();
      target = chosen->first;
    }
    if (target->id == cur->node) return *cur;
    Placement next = moved(*cur, *target, "migrated");
    auto ok = c_.compare_and_set(placement_map(o_.name), room, (*got)->value,
                                 encode_placement(next));
    if (!ok.ok()) return ok.status();
    if (!*ok) {
      return absl::AbortedError(
          fmt::format("room '{}' changed while it was being migrated; try again", room));
    }
    log_.info("room moved: room={} from={} to={} cause=migrated", room, cur->node,
              next.node);
    note_assigned_locally(next.node);
    return next;
  }

  absl::StatusOr<std::size_t> migrate_all() override {
    if (!o_.host) return not_host();
    std::size_t moved_count = 0;
    absl::Status first_error;
    for (const auto& room : hosted()) {
      auto m = migrate(room, {});
      if (m.ok()) {
        if (m->node != me_) ++moved_count;
      } else if (first_error.ok()) {
        first_error = m.status();
      }
    }
    if (!first_error.ok() && moved_count == 0) return first_error;
    return moved_count;
  }

  std::vector<std::string> hosted() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return {hosted_.begin(), hosted_.end()};
  }

  // ---- room state -------------------------------------------------------------------

  absl::StatusOr<Placement> join(std::string_view room, std::string_view identity,
                                 std::string_view metadata) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    FLEET_RETURN_IF_ERROR(validate_identity(identity));
    if (metadata.size() > kMaxMetadataBytes) {
      return absl::InvalidArgumentError(
          fmt::format("participant metadata is {} bytes; at most {} are allowed",
                      metadata.size(), kMaxMetadataBytes));
    }
    const std::string r(room), id(identity), meta(metadata);
    std::lock_guard<std::mutex> join_lock(join_mu_);
    auto placement = assign_preferring(r, {});
    if (!placement.ok()) return placement.status();
    FLEET_RETURN_IF_ERROR(open_local_room(r));
    absl::Status st = c_.put(index_map(o_.name, me_), r + "\n" + id, "").status();
    if (st.ok()) {
      st =
          c_.put(room_map(o_.name, r), participant_key(id), encode_participant(me_, meta))
              .status();
    }
    if (!st.ok()) {
      // The writes may have landed: take them back now or, failing that,
      // from the background check, so nothing names a member nobody holds.
      log_.warn("join of '{}' to room '{}' failed ({}); undoing it", id, r,
                std::string(st.message()));
      undo_member(r, id, meta);
      close_local_room_if_unused(r);
      return st;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      local_[r].members[id] = meta;
    }
    // The room may have been released by a last leave racing with us (it
    // read no participant before our write): place it again, where it was.
    auto still = c_.get(placement_map(o_.name), r);
    if (still.ok() && !still->has_value()) {
      log_.info("room '{}' was released while '{}' joined; placing it again", r, id);
      placement = assign_preferring(r, placement->node);
      if (!placement.ok()) return placement.status();
    }
    log_.info("participant routed: room={} identity={} instance={} node={} address={}", r,
              id, me_, placement->node, placement->address);
    return placement;
  }

  absl::Status leave(std::string_view room, std::string_view identity) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    FLEET_RETURN_IF_ERROR(validate_identity(identity));
    const std::string r(room), id(identity);
    std::lock_guard<std::mutex> join_lock(join_mu_);
    std::string meta;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = local_.find(r);
      if (it == local_.end() || it->second.members.count(id) == 0) {
        return absl::NotFoundError(fmt::format(
            "'{}' is not a member of room '{}' through this instance", id, r));
      }
      meta = it->second.members[id];
      it->second.members.erase(id);
    }
    undo_member(r, id, meta);
    close_local_room_if_unused(r);
    auto released = release_if_empty(r, "empty");
    if (!released.ok()) {
      log_.warn("room '{}': could not check whether it is empty: {}", r,
                std::string(released.status().message()));
    }
    return absl::OkStatus();
  }

  absl::Status set_metadata(std::string_view room, std::string_view metadata) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    if (metadata.size() > kMaxMetadataBytes) {
      return absl::InvalidArgumentError(
          fmt::format("room metadata is {} bytes; at most {} are allowed",
                      metadata.size(), kMaxMetadataBytes));
    }
    return c_.put(room_map(o_.name, room), kMetadataKey, metadata).status();
  }

  absl::Status set_flag(std::string_view room, std::string_view flag,
                        std::string_view value) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    FLEET_RETURN_IF_ERROR(validate_name("room flag", flag));
    if (value.size() > kMaxMetadataBytes) {
      return absl::InvalidArgumentError(
          fmt::format("flag value is {} bytes; at most {} are allowed", value.size(),
                      kMaxMetadataBytes));
    }
    return c_.put(room_map(o_.name, room), flag_key(flag), value).status();
  }

  absl::StatusOr<RoomState> state(std::string_view room) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    RoomState out;
    out.room = std::string(room);
    auto got = c_.get(placement_map(o_.name), room);
    if (!got.ok()) return got.status();
    if (got->has_value()) {
      auto p = decode_placement(room, (*got)->value);
      if (!p.ok()) return p.status();
      out.placement = *p;
    }
    auto entries = c_.scan(room_map(o_.name, room));
    if (!entries.ok()) return entries.status();
    for (const auto& e : *entries) apply_state_entry(&out, e.key, e.entry.value);
    return out;
  }

  std::vector<std::string> local_members(std::string_view room) const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    auto it = local_.find(room);
    if (it == local_.end()) return out;
    for (const auto& [id, meta] : it->second.members) out.push_back(id);
    return out;
  }

  // ---- broadcast ------------------------------------------------------------------

  absl::Status broadcast(std::string_view room, std::string_view payload,
                         std::string_view from,
                         const std::vector<std::string>& except) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    if (payload.size() > o_.max_message_bytes) {
      return absl::InvalidArgumentError(
          fmt::format("broadcast to room '{}' is {} bytes; the limit is {} "
                      "(RoomsOptions::max_message_bytes)",
                      room, payload.size(), o_.max_message_bytes));
    }
    if (!from.empty()) {
      FLEET_RETURN_IF_ERROR(validate_identity(from));
    }
    std::string except_list;
    for (const auto& e : except) {
      FLEET_RETURN_IF_ERROR(validate_identity(e));
      if (!except_list.empty()) except_list += kListSeparator;
      except_list += e;
    }
    const std::string r(room);
    std::uint64_t seq;
    {
      // Sequence numbers in the order the messages are published.
      std::lock_guard<std::mutex> send_lock(send_mu_);
      {
        std::lock_guard<std::mutex> lock(mu_);
        seq = ++send_seq_[r];
      }
      std::string body = fmt::format("{}\n{}\n{}\n{}\n{}\n{}\n", kBroadcastMagic, me_,
                                     incarnation_, seq, from, except_list);
      body.append(payload);
      absl::Status st = c_.publish(broadcast_channel(o_.name, r), body);
      if (!st.ok()) return st;
    }
    Delivery d;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.broadcasts_sent;
      auto it = local_.find(r);
      if (it == local_.end() || !o_.on_message) return absl::OkStatus();
      d.recipients = recipients(it->second, except);
    }
    if (d.recipients.empty()) return absl::OkStatus();
    d.room = r;
    d.sender = me_;
    d.from = std::string(from);
    d.sequence = seq;
    d.payload = std::string(payload);
    o_.on_message(d);
    return absl::OkStatus();
  }

  // ---- requests -------------------------------------------------------------------

  RequestResult request(std::string_view topic, std::string_view body,
                        std::chrono::milliseconds timeout) override {
    RequestResult out;
    if (absl::Status s = validate_name("request topic", topic); !s.ok()) {
      out.status = s;
      return out;
    }
    if (body.size() > o_.max_message_bytes) {
      out.status = absl::InvalidArgumentError(
          fmt::format("request body is {} bytes; the limit is {}", body.size(),
                      o_.max_message_bytes));
      return out;
    }
    if (topic.substr(0, 6) == "fleet.") {
      out.status = absl::InvalidArgumentError(fmt::format(
          "request topic '{}': topics starting with 'fleet.' are reserved", topic));
      return out;
    }
    return send_request(topic, body, timeout);
  }

  absl::StatusOr<std::vector<Participant>> participants_everywhere(
      std::string_view room, std::chrono::milliseconds timeout,
      RequestResult* result) override {
    FLEET_RETURN_IF_ERROR(validate_room(room));
    RequestResult r = send_request(kParticipantsTopic, room, timeout);
    std::vector<Participant> out;
    for (const auto& reply : r.replies) {
      if (!reply.status.ok()) continue;
      std::string_view in = reply.body;
      std::string_view id, meta;
      while (!in.empty() && take_field(&in, &id) && take_field(&in, &meta)) {
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
    FLEET_RETURN_IF_ERROR(validate_identity(identity));
    RequestResult r = send_request(kDisconnectTopic, identity, timeout);
    std::size_t closed = 0;
    for (const auto& reply : r.replies) {
      std::uint64_t n = 0;
      if (reply.status.ok() && parse_u64(reply.body, &n)) closed += n;
    }
    absl::Status st = r.status;
    if (result != nullptr) *result = std::move(r);
    if (!st.ok()) return st;
    return closed;
  }

  RoomsStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  // ---- the check ------------------------------------------------------------------

  absl::Status run_once() override {
    absl::Status first;
    auto note = [&first](absl::Status s) {
      if (first.ok() && !s.ok()) first = std::move(s);
    };
    if (c_.data_losses() != seen_losses_) note(republish());
    note(publish_record());
    note(retry_undos());
    note(refresh_nodes());
    note(refresh_live());
    if (!first.ok()) return first;
    // Instances that are gone: their members leave, their rooms move.
    std::vector<std::string> to_clean;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const auto now = c_.clock()->now();
      std::vector<std::string> alive;
      for (const auto& [id, rec] : registry_) {
        if (live_.count(id) != 0) alive.push_back(id);
      }
      for (auto it = dead_since_.begin(); it != dead_since_.end();) {
        if (registry_.count(it->first) == 0 || live_.count(it->first) != 0) {
          it = dead_since_.erase(it);
        } else {
          ++it;
        }
      }
      for (const auto& [id, rec] : registry_) {
        if (live_.count(id) != 0) continue;
        auto since = dead_since_.emplace(id, now).first->second;
        std::string chosen;
        std::uint64_t best = 0;
        for (const auto& a : alive) {
          const std::uint64_t w = weight(id, a);
          if (chosen.empty() || w > best) {
            chosen = a;
            best = w;
          }
        }
        if (chosen == me_ || now - since >= o_.takeover_grace) to_clean.push_back(id);
      }
    }
    for (const auto& dead : to_clean) note(clean_up_instance(dead));
    return first;
  }

 private:
  struct Cached {
    Placement p;
    std::uint64_t version = 0;
  };
  struct Registered {
    std::string raw;           // the stored record, for compare_and_delete
    std::optional<Node> node;  // set for hosts
  };
  struct LocalRoom {
    std::map<std::string, std::string> members;  // identity -> metadata
    Subscription broadcasts, changes;
    // The room map as its change stream tells.
    RoomState copy;
    // Last sequence number per sender incarnation.
    std::map<std::string, std::uint64_t> last_seq;
  };
  struct Pending {
    std::set<std::string> expected;
    std::map<std::string, Reply> replies;
  };
  struct Undo {
    std::string room, identity, metadata;
  };

  static absl::Status not_host() {
    return absl::FailedPreconditionError(
        "this instance does not host rooms (RoomsOptions::host is not set)");
  }

  static std::vector<std::string> recipients(const LocalRoom& lr,
                                             const std::vector<std::string>& except) {
    std::vector<std::string> out;
    for (const auto& [id, meta] : lr.members) {
      if (std::find(except.begin(), except.end(), id) == except.end()) out.push_back(id);
    }
    return out;
  }

  static void apply_state_entry(RoomState* s, const std::string& key,
                                const std::string& value) {
    if (key == kMetadataKey) {
      s->metadata = value;
    } else if (key.compare(0, kFlagPrefix.size(), kFlagPrefix) == 0) {
      s->flags[key.substr(kFlagPrefix.size())] = value;
    } else if (key.compare(0, kParticipantPrefix.size(), kParticipantPrefix) == 0) {
      auto p = decode_participant(key, value);
      if (!p.ok()) return;
      auto it =
          std::find_if(s->participants.begin(), s->participants.end(),
                       [&](const Participant& q) { return q.identity == p->identity; });
      if (it != s->participants.end()) {
        *it = *p;
      } else {
        s->participants.insert(
            std::upper_bound(s->participants.begin(), s->participants.end(), *p,
                             [](const Participant& a, const Participant& b) {
                               return a.identity < b.identity;
                             }),
            *p);
      }
    }
  }

  // ---- records --------------------------------------------------------------------

  absl::Status publish_record() {
    std::string value;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (o_.host) self_.stats.rooms = static_cast<std::int64_t>(hosted_.size());
      value = encode_node(self_, o_.host.has_value(), c_.session_id());
      if (value == published_record_) return absl::OkStatus();
    }
    auto put = c_.put(nodes_map(o_.name), me_, value);
    if (!put.ok()) return put.status();
    std::lock_guard<std::mutex> lock(mu_);
    published_record_ = value;
    absorb_record(me_, value);
    return absl::OkStatus();
  }

  void absorb_record(const std::string& id, const std::string& value) {
    Registered rec;
    rec.raw = value;
    auto n = decode_node(id, value);
    if (n.ok()) {
      rec.node = *n;
    } else if (n.status().code() != absl::StatusCode::kNotFound) {
      log_.warn("skipping a malformed node record of '{}'", id);
      return;
    }
    registry_[id] = std::move(rec);
  }

  absl::Status refresh_nodes() {
    auto all = c_.scan(nodes_map(o_.name));
    if (!all.ok()) return all.status();
    std::lock_guard<std::mutex> lock(mu_);
    registry_.clear();
    for (const auto& e : *all) absorb_record(e.key, e.entry.value);
    return absl::OkStatus();
  }

  absl::Status refresh_live() {
    auto members = c_.members();
    if (!members.ok()) return members.status();
    std::lock_guard<std::mutex> lock(mu_);
    live_.clear();
    for (const auto& m : *members) live_.insert(m.info.id);
    return absl::OkStatus();
  }

  void on_node_event(const WatchEvent& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (e.type == WatchEventType::kSet) {
      absorb_record(e.key, e.value);
    } else {
      registry_.erase(e.key);
    }
  }

  void on_member_event(const MemberEvent& e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (e.type == MemberEventType::kJoined) {
        live_.insert(e.member.info.id);
      } else {
        live_.erase(e.member.info.id);
        check_now_ = true;
      }
    }
    if (e.type != MemberEventType::kJoined) {
      log_.info("instance '{}' {}: its rooms and members will be moved and removed",
                e.member.info.id, to_string(e.type));
      cv_.notify_all();
    }
  }

  // ---- placement ------------------------------------------------------------------

  void remember(const Placement& p, std::uint64_t version, std::uint64_t epoch) {
    std::lock_guard<std::mutex> lock(mu_);
    if (epoch != epoch_) return;  // a change arrived meanwhile: it may be newer
    auto& slot = cache_[p.room];
    if (slot.version <= version) slot = Cached{p, version};
  }

  static Placement moved(const Placement& cur, const Node& to, std::string cause) {
    Placement next;
    next.room = cur.room;
    next.node = to.id;
    next.address = to.info.address;
    next.generation = cur.generation + 1;
    next.cause = std::move(cause);
    next.previous_node = cur.node;
    return next;
  }

  void note_assigned_locally(const std::string& node) {
    // Until the node publishes its count again, count what we placed there,
    // so that a burst of assignments spreads.
    std::lock_guard<std::mutex> lock(mu_);
    auto it = registry_.find(node);
    if (it != registry_.end() && it->second.node) ++it->second.node->stats.rooms;
  }

  bool is_live_node(const std::string& node) const {
    return live_.count(node) != 0 && registry_.count(node) != 0 &&
           registry_.at(node).node.has_value();
  }

  // Chooses a node for `room`: live, serving, with room under max_rooms;
  // nodes of this instance's region first; then the lowest load; ties by
  // the room's rendezvous weight. Returns it with a one-line reason.
  absl::StatusOr<std::pair<Node, std::string>> select(
      const std::string& room, const std::set<std::string>& exclude) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<const Node*> candidates;
    std::size_t in_region = 0;
    for (const auto& [id, rec] : registry_) {
      if (!rec.node || live_.count(id) == 0 || exclude.count(id) != 0) continue;
      const Node& n = *rec.node;
      if (n.info.state != NodeState::kServing) continue;
      if (n.info.max_rooms > 0 && n.stats.rooms >= n.info.max_rooms) continue;
      candidates.push_back(&n);
      if (!o_.region.empty() && n.info.region == o_.region) ++in_region;
    }
    if (candidates.empty()) {
      return absl::FailedPreconditionError(
          fmt::format("no live serving node with room for room '{}' ({} nodes known)",
                      room, registry_.size()));
    }
    const bool regional = in_region > 0;
    auto load = [](const Node& n) {
      const double rooms = n.info.max_rooms > 0
                               ? static_cast<double>(n.stats.rooms) / n.info.max_rooms
                               : static_cast<double>(n.stats.rooms) / 1000.0;
      return rooms + std::min(n.stats.cpu, 1.0) * 0.5;
    };
    const Node* best = nullptr;
    double best_load = 0;
    std::uint64_t best_w = 0;
    for (const Node* n : candidates) {
      if (regional && n->info.region != o_.region) continue;
      const double l = load(*n);
      const std::uint64_t w = weight(room, n->id);
      if (best == nullptr || l < best_load - 1e-9 ||
          (std::abs(l - best_load) <= 1e-9 && w > best_w)) {
        best = n;
        best_load = l;
        best_w = w;
      }
    }
    std::string why =
        fmt::format("least loaded of {} serving node(s){} ({} rooms, cpu {:.2f})",
                    regional ? in_region : candidates.size(),
                    regional ? fmt::format(" in region '{}'", o_.region) : std::string(),
                    best->stats.rooms, best->stats.cpu);
    return std::make_pair(*best, std::move(why));
  }

  absl::StatusOr<Placement> assign_preferring(const std::string& room,
                                              const std::string& preferred) {
    const std::string map = placement_map(o_.name);
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto got = c_.get(map, room);
      if (!got.ok()) return got.status();
      std::optional<Placement> cur;
      if (got->has_value()) {
        auto p = decode_placement(room, (*got)->value);
        if (!p.ok()) return p.status();
        cur = *p;
        bool live;
        {
          std::lock_guard<std::mutex> lock(mu_);
          live = is_live_node(cur->node);
        }
        if (!live) {
          // Our view may be behind: ask the backend before moving anything.
          FLEET_RETURN_IF_ERROR(refresh_live());
          std::lock_guard<std::mutex> lock(mu_);
          live = live_.count(cur->node) != 0;
        }
        if (live) {
          remember(*cur, (*got)->version, current_epoch());
          return *cur;
        }
      }
      std::optional<std::pair<Node, std::string>> choice;
      if (!preferred.empty()) {
        std::lock_guard<std::mutex> lock(mu_);
        if (is_live_node(preferred)) {
          choice = std::make_pair(*registry_.at(preferred).node,
                                  std::string("where it was before"));
        }
      }
      if (!choice) {
        auto c = select(room, {});
        if (!c.ok()) {
          // Nodes that started since our last look are not in our view yet.
          FLEET_RETURN_IF_ERROR(refresh_nodes());
          FLEET_RETURN_IF_ERROR(refresh_live());
          c = select(room, {});
        }
        if (!c.ok()) return c.status();
        choice = std::move(*c);
      }
      const Node& node = choice->first;
      if (!cur) {
        Placement next;
        next.room = room;
        next.node = node.id;
        next.address = node.info.address;
        next.generation = 1;
        next.cause = "assigned";
        auto claimed = c_.claim(map, room, encode_placement(next));
        if (!claimed.ok()) return claimed.status();
        if (claimed->claimed) {
          log_.info("room assigned: room={} node={} why={}", room, node.id,
                    choice->second);
          note_assigned_locally(node.id);
          return next;
        }
        continue;  // someone else placed it first: look at theirs
      }
      Placement next = moved(*cur, node, "node-died");
      auto swapped = c_.compare_and_set(map, room, (*got)->value, encode_placement(next));
      if (!swapped.ok()) return swapped.status();
      if (*swapped) {
        log_.info("room moved: room={} from={} to={} cause=node-died why={}", room,
                  cur->node, node.id, choice->second);
        note_assigned_locally(node.id);
        return next;
      }
    }
    return absl::AbortedError(fmt::format(
        "room '{}' kept changing while it was being assigned; try again", room));
  }

  std::uint64_t current_epoch() const {
    std::lock_guard<std::mutex> lock(mu_);
    return epoch_;
  }

  void on_placement_event(const WatchEvent& e) {
    RoomEvent ev;
    ev.room = e.key;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++epoch_;
      if (e.type == WatchEventType::kSet) {
        auto p = decode_placement(e.key, e.value);
        if (!p.ok()) {
          cache_.erase(e.key);
          log_.warn("skipping a malformed placement of room '{}'", e.key);
          return;
        }
        cache_[e.key] = Cached{*p, e.version};
        if (p->node == me_) {
          if (hosted_.insert(e.key).second) check_now_ = true;
        } else if (hosted_.erase(e.key) != 0) {
          check_now_ = true;
        }
        auto lr = local_.find(e.key);
        if (lr != local_.end()) lr->second.copy.placement = *p;
        ev.type =
            p->previous_node.empty() ? RoomEventType::kAssigned : RoomEventType::kMoved;
        if (ev.type == RoomEventType::kMoved && p->previous_node == p->node) {
          ev.type = RoomEventType::kAssigned;
        }
        ev.from = p->previous_node;
        ev.to = p->node;
        ev.cause = p->cause;
      } else {
        auto it = cache_.find(e.key);
        if (it != cache_.end()) {
          ev.from = it->second.p.node;
          cache_.erase(it);
        }
        if (hosted_.erase(e.key) != 0) check_now_ = true;
        auto lr = local_.find(e.key);
        if (lr != local_.end()) lr->second.copy.placement.reset();
        ev.type = RoomEventType::kReleased;
        ev.cause = e.type == WatchEventType::kExpired ? "expired" : "released";
      }
    }
    if (o_.host) cv_.notify_all();  // re-publish our room count soon
    if (ev.type == RoomEventType::kMoved) {
      log_.log(LogLevel::kDebug, "room moved: room={} from={} to={} cause={}", ev.room,
               ev.from, ev.to, ev.cause);
    }
    if (o_.on_room_event) o_.on_room_event(ev);
  }

  // Releases `room` when nobody is in it: its placement (compare-and-delete
  // of what was read) and its state. Returns whether it released.
  absl::StatusOr<bool> release_if_empty(const std::string& room, std::string_view cause) {
    const std::string rmap = room_map(o_.name, room);
    auto participants = c_.scan(rmap, kParticipantPrefix, 1);
    if (!participants.ok()) return participants.status();
    if (!participants->empty()) return false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = local_.find(room);
      if (it != local_.end() && !it->second.members.empty()) return false;
    }
    auto got = c_.get(placement_map(o_.name), room);
    if (!got.ok()) return got.status();
    if (got->has_value()) {
      auto deleted = c_.compare_and_delete(placement_map(o_.name), room, (*got)->value);
      if (!deleted.ok()) return deleted.status();
      if (!*deleted) return false;  // it changed: whoever changed it decides
    }
    auto rest = c_.scan(rmap);
    if (!rest.ok()) return rest.status();
    std::vector<MapOp> ops;
    bool rejoined = false;
    for (const auto& e : *rest) {
      if (e.key.compare(0, kParticipantPrefix.size(), kParticipantPrefix) == 0) {
        rejoined = true;  // a join raced us: that joiner places the room again
        continue;
      }
      ops.push_back(MapOp::compare_and_delete(e.key, e.entry.value));
    }
    if (!rejoined && !ops.empty()) {
      auto applied = c_.apply(rmap, ops);
      if (!applied.ok()) return applied.status();
    }
    log_.info("room released: room={} cause={}", room, cause);
    return true;
  }

  // ---- local members ----------------------------------------------------------------

  // Subscribes to the room's broadcasts and changes when this instance has
  // no member of it yet, and loads the room's state.
  absl::Status open_local_room(const std::string& room) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (local_.count(room) != 0) return absl::OkStatus();
    }
    auto changes =
        c_.watch(room_map(o_.name, room), "",
                 [this, room](const WatchEvent& e) { on_room_change(room, e); });
    if (!changes.ok()) return changes.status();
    auto broadcasts =
        c_.subscribe(broadcast_channel(o_.name, room),
                     [this, room](const Message& m) { on_broadcast(room, m); });
    if (!broadcasts.ok()) return broadcasts.status();
    auto entries = c_.scan(room_map(o_.name, room));
    if (!entries.ok()) return entries.status();
    std::lock_guard<std::mutex> lock(mu_);
    LocalRoom& lr = local_[room];
    lr.changes = std::move(*changes);
    lr.broadcasts = std::move(*broadcasts);
    lr.copy.room = room;
    for (const auto& e : *entries) apply_state_entry(&lr.copy, e.key, e.entry.value);
    auto cached = cache_.find(room);
    if (cached != cache_.end()) lr.copy.placement = cached->second.p;
    return absl::OkStatus();
  }

  void close_local_room_if_unused(const std::string& room) {
    LocalRoom gone;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = local_.find(room);
      if (it == local_.end() || !it->second.members.empty()) return;
      gone = std::move(it->second);
      local_.erase(it);
    }
    // `gone` cancels its subscriptions here, outside mu_.
  }

  // Removes a member's entries (the participant only while it is ours).
  void undo_member(const std::string& room, const std::string& identity,
                   const std::string& metadata) {
    absl::Status st = remove_member_entries(room, identity, metadata);
    if (!st.ok()) {
      log_.warn("could not remove '{}' from room '{}' yet ({}); retrying", identity, room,
                std::string(st.message()));
      std::lock_guard<std::mutex> lock(mu_);
      undos_.push_back(Undo{room, identity, metadata});
    }
  }

  absl::Status remove_member_entries(const std::string& room, const std::string& identity,
                                     const std::string& metadata) {
    {
      // Joined again meanwhile: nothing to undo.
      std::lock_guard<std::mutex> lock(mu_);
      auto it = local_.find(room);
      if (it != local_.end() && it->second.members.count(identity) != 0) {
        return absl::OkStatus();
      }
    }
    auto deleted =
        c_.compare_and_delete(room_map(o_.name, room), participant_key(identity),
                              encode_participant(me_, metadata));
    if (!deleted.ok()) return deleted.status();
    return c_.erase(index_map(o_.name, me_), room + "\n" + identity).status();
  }

  absl::Status retry_undos() {
    std::vector<Undo> todo;
    {
      std::lock_guard<std::mutex> lock(mu_);
      todo.swap(undos_);
    }
    absl::Status first;
    for (auto& u : todo) {
      absl::Status st = remove_member_entries(u.room, u.identity, u.metadata);
      if (st.ok()) {
        auto r = release_if_empty(u.room, "empty");
        (void)r;
        continue;
      }
      if (first.ok()) first = st;
      std::lock_guard<std::mutex> lock(mu_);
      undos_.push_back(std::move(u));
    }
    return first;
  }

  void on_room_change(const std::string& room, const WatchEvent& e) {
    std::optional<ParticipantEvent> pe;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = local_.find(room);
      if (it == local_.end()) return;
      RoomState& copy = it->second.copy;
      const bool participant =
          e.key.compare(0, kParticipantPrefix.size(), kParticipantPrefix) == 0;
      if (e.type == WatchEventType::kSet) {
        if (participant) {
          auto p = decode_participant(e.key, e.value);
          if (!p.ok()) return;
          const bool known = std::any_of(
              copy.participants.begin(), copy.participants.end(),
              [&](const Participant& q) { return q.identity == p->identity; });
          pe = ParticipantEvent{
              known ? ParticipantEventType::kUpdated : ParticipantEventType::kJoined,
              room, *p};
        }
        apply_state_entry(&copy, e.key, e.value);
      } else if (participant) {
        const std::string id = e.key.substr(kParticipantPrefix.size());
        auto p = std::find_if(copy.participants.begin(), copy.participants.end(),
                              [&](const Participant& q) { return q.identity == id; });
        if (p != copy.participants.end()) {
          pe = ParticipantEvent{ParticipantEventType::kLeft, room, *p};
          copy.participants.erase(p);
        }
      } else if (e.key == kMetadataKey) {
        copy.metadata.clear();
      } else if (e.key.compare(0, kFlagPrefix.size(), kFlagPrefix) == 0) {
        copy.flags.erase(e.key.substr(kFlagPrefix.size()));
      }
    }
    if (pe && o_.on_participant) o_.on_participant(*pe);
  }

  void on_broadcast(const std::string& room, const Message& m) {
    std::string_view payload;
    auto f = split_fields(m.payload, 6, &payload);
    std::uint64_t seq = 0;
    if (f.size() != 6 || f[0] != kBroadcastMagic || f[1].empty() ||
        !parse_u64(f[3], &seq)) {
      log_.warn("skipping a malformed broadcast on room '{}'", room);
      return;
    }
    const std::string_view sender = f[1], incarnation = f[2];
    if (sender == me_ && incarnation == std::to_string(incarnation_)) return;  // ours
    std::vector<std::string> except;
    for (std::size_t pos = 0; pos < f[5].size();) {
      std::size_t end = f[5].find(kListSeparator, pos);
      if (end == std::string_view::npos) end = f[5].size();
      except.emplace_back(f[5].substr(pos, end - pos));
      pos = end + 1;
    }
    Delivery d;
    std::optional<Gap> gap;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = local_.find(room);
      if (it == local_.end()) return;
      ++stats_.broadcasts_received;
      auto& last = it->second.last_seq[fmt::format("{}/{}", sender, incarnation)];
      if (last != 0 && seq > last + 1) {
        gap = Gap{room, std::string(sender), seq - last - 1,
                  fmt::format("sequence jumped from {} to {}", last, seq)};
        ++stats_.gaps;
      } else if (last != 0 && seq <= last) {
        log_.warn("room '{}': broadcast {} from '{}' arrived after {}; delivering it",
                  room, seq, sender, last);
      }
      last = std::max(last, seq);
      d.recipients = recipients(it->second, except);
    }
    if (gap) {
      log_.warn("room '{}': missed {} broadcast(s) from '{}' ({})", room, gap->missed,
                gap->sender, gap->reason);
      if (o_.on_gap) o_.on_gap(*gap);
    }
    if (d.recipients.empty() || !o_.on_message) return;
    d.room = room;
    d.sender = std::string(sender);
    d.from = std::string(f[4]);
    d.sequence = seq;
    d.payload = std::string(payload);
    o_.on_message(d);
  }

  // ---- connection ------------------------------------------------------------------

  void on_connection(ConnectionState st) {
    if (st == ConnectionState::kConnected) return;
    std::vector<Gap> gaps;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The change stream may have missed events: nothing cached is certain.
      if (!cache_.empty()) ++stats_.cache_drops;
      cache_.clear();
      ++epoch_;
      if (st == ConnectionState::kReconnected) {
        for (auto& [room, lr] : local_) {
          lr.last_seq.clear();
          gaps.push_back(Gap{room, "", 0,
                             "the connection to the backend was interrupted: broadcasts "
                             "sent meanwhile were missed"});
          ++stats_.gaps;
        }
        resync_ = true;
        check_now_ = true;
      }
    }
    log_.info("connection {}: locate cache dropped{}", to_string(st),
              gaps.empty()
                  ? std::string()
                  : fmt::format("; {} room(s) may have missed broadcasts", gaps.size()));
    for (const auto& g : gaps) {
      if (o_.on_gap) o_.on_gap(g);
    }
    cv_.notify_all();
  }

  // After a reconnect: re-read what the change streams may have missed.
  absl::Status resync() {
    FLEET_RETURN_IF_ERROR(refresh_nodes());
    std::vector<std::string> rooms;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [room, lr] : local_) rooms.push_back(room);
    }
    for (const auto& room : rooms) {
      auto entries = c_.scan(room_map(o_.name, room));
      if (!entries.ok()) return entries.status();
      std::lock_guard<std::mutex> lock(mu_);
      auto it = local_.find(room);
      if (it == local_.end()) continue;
      RoomState fresh;
      fresh.room = room;
      fresh.placement = it->second.copy.placement;
      for (const auto& e : *entries) apply_state_entry(&fresh, e.key, e.entry.value);
      it->second.copy = std::move(fresh);
    }
    if (o_.host) {
      auto all = c_.scan(placement_map(o_.name));
      if (!all.ok()) return all.status();
      std::lock_guard<std::mutex> lock(mu_);
      std::set<std::string> mine;
      for (const auto& e : *all) {
        auto p = decode_placement(e.key, e.entry.value);
        if (p.ok() && p->node == me_) mine.insert(e.key);
      }
      // After a data loss the map is empty until we re-publish: keep ours.
      if (c_.data_losses() == seen_losses_) hosted_ = std::move(mine);
    }
    return absl::OkStatus();
  }

  // The backend lost its data: put back what this instance holds — its
  // record, its members, the rooms it hosts (and where its members' rooms
  // were), the state its copies know. Claims, so the first writer wins and
  // later ones see what it wrote.
  absl::Status republish() {
    const std::uint64_t losses = c_.data_losses();
    {
      std::lock_guard<std::mutex> lock(mu_);
      published_record_.clear();
    }
    FLEET_RETURN_IF_ERROR(publish_record());
    std::vector<std::pair<std::string, Placement>> placements;
    std::vector<std::pair<std::string, RoomState>> copies;
    std::map<std::string, std::map<std::string, std::string>> members;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& room : hosted_) {
        auto it = cache_.find(room);
        Placement p;
        if (it != cache_.end()) {
          p = it->second.p;
        } else {
          p.room = room;
          p.node = me_;
          p.address = self_.info.address;
          p.generation = 1;
        }
        placements.emplace_back(room, p);
      }
      for (const auto& [room, lr] : local_) {
        members[room] = lr.members;
        copies.emplace_back(room, lr.copy);
        // A room on a node that is gone is placed again by the next join.
        if (lr.copy.placement && hosted_.count(room) == 0 &&
            live_.count(lr.copy.placement->node) != 0) {
          placements.emplace_back(room, *lr.copy.placement);
        }
      }
    }
    std::vector<MapOp> ops;
    for (auto& [room, p] : placements) {
      p.cause = "republished";
      ops.push_back(MapOp::claim(room, encode_placement(p)));
    }
    for (std::size_t i = 0; i < ops.size(); i += kBatch) {
      std::vector<MapOp> chunk(
          ops.begin() + static_cast<std::ptrdiff_t>(i),
          ops.begin() + static_cast<std::ptrdiff_t>(std::min(ops.size(), i + kBatch)));
      auto r = c_.apply(placement_map(o_.name), chunk);
      if (!r.ok()) return r.status();
    }
    std::vector<MapOp> index;
    for (const auto& [room, state] : copies) {
      std::vector<MapOp> room_ops;
      if (!state.metadata.empty())
        room_ops.push_back(MapOp::claim(std::string(kMetadataKey), state.metadata));
      for (const auto& [flag, value] : state.flags)
        room_ops.push_back(MapOp::claim(flag_key(flag), value));
      for (const auto& [id, meta] : members[room]) {
        room_ops.push_back(
            MapOp::put(participant_key(id), encode_participant(me_, meta)));
        index.push_back(MapOp::put(room + "\n" + id, ""));
      }
      auto r = c_.apply(room_map(o_.name, room), room_ops);
      if (!r.ok()) return r.status();
    }
    for (std::size_t i = 0; i < index.size(); i += kBatch) {
      std::vector<MapOp> chunk(index.begin() + static_cast<std::ptrdiff_t>(i),
                               index.begin() + static_cast<std::ptrdiff_t>(
                                                   std::min(index.size(), i + kBatch)));
      auto r = c_.apply(index_map(o_.name, me_), chunk);
      if (!r.ok()) return r.status();
    }
    seen_losses_ = losses;
    log_.info(
        "backend lost its data: re-published {} placement(s), {} room(s) with members",
        placements.size(), copies.size());
    return absl::OkStatus();
  }

  // ---- instances that are gone ------------------------------------------------------

  absl::Status clean_up_instance(const std::string& dead) {
    std::string raw;
    bool was_host = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = registry_.find(dead);
      if (it == registry_.end()) return absl::OkStatus();
      raw = it->second.raw;
      was_host = it->second.node.has_value();
    }
    // 1. Its members leave.
    const std::string imap = index_map(o_.name, dead);
    auto index = c_.scan(imap);
    if (!index.ok()) return index.status();
    std::map<std::string, std::vector<std::string>> by_room;
    for (const auto& e : *index) {
      const std::size_t nl = e.key.find('\n');
      if (nl == std::string::npos) continue;
      by_room[e.key.substr(0, nl)].push_back(e.key.substr(nl + 1));
    }
    std::set<std::string> touched;
    std::size_t removed = 0;
    for (const auto& [room, ids] : by_room) {
      const std::string rmap = room_map(o_.name, room);
      auto entries = c_.scan(rmap, kParticipantPrefix);
      if (!entries.ok()) return entries.status();
      std::vector<MapOp> ops;
      for (const auto& e : *entries) {
        auto p = decode_participant(e.key, e.entry.value);
        if (p.ok() && p->instance == dead) {
          ops.push_back(MapOp::compare_and_delete(e.key, e.entry.value));
        }
      }
      if (!ops.empty()) {
        auto r = c_.apply(rmap, ops);
        if (!r.ok()) return r.status();
        for (const auto& res : *r) removed += res.applied ? 1 : 0;
      }
      touched.insert(room);
    }
    std::vector<MapOp> erase_index;
    for (const auto& e : *index) erase_index.push_back(MapOp::erase(e.key));
    for (std::size_t i = 0; i < erase_index.size(); i += kBatch) {
      std::vector<MapOp> chunk(
          erase_index.begin() + static_cast<std::ptrdiff_t>(i),
          erase_index.begin() +
              static_cast<std::ptrdiff_t>(std::min(erase_index.size(), i + kBatch)));
      auto r = c_.apply(imap, chunk);
      if (!r.ok()) return r.status();
    }
    // 2. Its rooms move (or go, when nobody is left in them).
    std::size_t moved_count = 0, released = 0;
    if (was_host) {
      auto all = c_.scan(placement_map(o_.name));
      if (!all.ok()) return all.status();
      for (const auto& e : *all) {
        auto p = decode_placement(e.key, e.entry.value);
        if (!p.ok() || p->node != dead) continue;
        touched.erase(e.key);
        auto participants = c_.scan(room_map(o_.name, e.key), kParticipantPrefix, 1);
        if (!participants.ok()) return participants.status();
        if (participants->empty()) {
          auto r = release_if_empty(e.key, "node-died");
          if (!r.ok()) return r.status();
          released += *r ? 1 : 0;
          continue;
        }
        auto choice = select(e.key, {dead});
        if (!choice.ok()) {
          log_.warn("room '{}' stays on dead node '{}' for now: {}", e.key, dead,
                    std::string(choice.status().message()));
          return choice.status();
        }
        Placement next = moved(*p, choice->first, "node-died");
        auto swapped = c_.compare_and_set(placement_map(o_.name), e.key, e.entry.value,
                                          encode_placement(next));
        if (!swapped.ok()) return swapped.status();
        if (*swapped) {
          ++moved_count;
          note_assigned_locally(next.node);
          log_.info("room moved: room={} from={} to={} cause=node-died why={}", e.key,
                    dead, next.node, choice->second);
        }
      }
    }
    // Rooms its members were in, now perhaps empty.
    for (const auto& room : touched) {
      auto r = release_if_empty(room, "empty");
      if (!r.ok()) return r.status();
      released += *r ? 1 : 0;
    }
    // 3. Its record goes (unless it came back and wrote a new one).
    auto deleted = c_.compare_and_delete(nodes_map(o_.name), dead, raw);
    if (!deleted.ok()) return deleted.status();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.rooms_moved_here += moved_count;
      if (*deleted) {
        registry_.erase(dead);
        dead_since_.erase(dead);
      }
    }
    log_.info(
        "instance '{}' is gone: {} member(s) removed, {} room(s) moved, {} released",
        dead, removed, moved_count, released);
    return absl::OkStatus();
  }

  // ---- requests -------------------------------------------------------------------

  RequestResult send_request(std::string_view topic, std::string_view body,
                             std::chrono::milliseconds timeout) {
    RequestResult out;
    // Who must answer: every live member with a Rooms record, asked now.
    if (absl::Status s = refresh_live(); !s.ok()) {
      out.status = s;
      return out;
    }
    std::uint64_t id;
    std::set<std::string> expected;
    {
      std::lock_guard<std::mutex> lock(mu_);
      id = ++next_request_;
      for (const auto& [inst, rec] : registry_) {
        if (live_.count(inst) != 0) expected.insert(inst);
      }
      expected.insert(me_);
      pending_[id].expected = expected;
    }
    std::string msg = fmt::format("{}\n{}\n{}\n{}\n", kRequestMagic, id, me_, topic);
    msg.append(body);
    absl::Status st = c_.publish(request_channel(o_.name), msg);
    Pending done;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (st.ok()) {
        reply_cv_.wait_for(lock, timeout, [&] {
          const Pending& p = pending_[id];
          return p.replies.size() >= p.expected.size();
        });
      }
      done = std::move(pending_[id]);
      pending_.erase(id);
    }
    for (auto& [inst, reply] : done.replies) out.replies.push_back(std::move(reply));
    for (const auto& inst : done.expected) {
      if (done.replies.count(inst) == 0) out.missing.push_back(inst);
    }
    if (!st.ok()) {
      out.status = st;
    } else if (!out.missing.empty()) {
      std::string names;
      for (const auto& m : out.missing) names += (names.empty() ? "" : ", ") + m;
      out.status = absl::DeadlineExceededError(fmt::format(
          "request '{}': {} of {} instance(s) did not answer within {} ms: {}", topic,
          out.missing.size(), done.expected.size(), timeout.count(), names));
    }
    return out;
  }

  void on_request_message(const Message& m) {
    std::string_view body;
    auto f = split_fields(m.payload, 4, &body);
    if (f.size() != 4 || f[0] != kRequestMagic || f[2].empty()) {
      log_.warn("skipping a malformed request");
      return;
    }
    const std::string_view topic = f[3];
    absl::StatusOr<std::string> answer;
    if (topic == kParticipantsTopic) {
      std::string out;
      std::lock_guard<std::mutex> lock(mu_);
      auto it = local_.find(body);
      if (it != local_.end()) {
        for (const auto& [id, meta] : it->second.members) {
          put_field(&out, id);
          put_field(&out, meta);
        }
      }
      answer = std::move(out);
    } else if (topic == kDisconnectTopic) {
      const std::size_t n = o_.on_disconnect ? o_.on_disconnect(body) : 0;
      if (n > 0) log_.info("disconnected {} connection(s) of '{}' on request", n, body);
      answer = std::to_string(n);
    } else if (o_.on_request) {
      answer = o_.on_request(topic, body);
    } else {
      answer = absl::UnimplementedError(
          fmt::format("instance '{}' has no handler for request topic '{}'", me_, topic));
    }
    std::string reply =
        fmt::format("{}\n{}\n{}\n{}\n", kReplyMagic, f[1], me_,
                    answer.ok() ? 0 : static_cast<int>(answer.status().code()));
    reply.append(answer.ok() ? *answer : std::string(answer.status().message()));
    absl::Status st = c_.publish(reply_channel(o_.name, f[2]), reply);
    if (!st.ok()) {
      log_.warn("could not answer request {} of '{}': {}", f[1], f[2],
                std::string(st.message()));
    }
  }

  void on_reply_message(const Message& m) {
    std::string_view body;
    auto f = split_fields(m.payload, 4, &body);
    std::uint64_t id = 0, code = 0;
    if (f.size() != 4 || f[0] != kReplyMagic || !parse_u64(f[1], &id) ||
        !parse_u64(f[3], &code) || code > 16) {
      log_.warn("skipping a malformed reply");
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(id);
      if (it == pending_.end()) return;  // too late
      Reply r;
      r.instance = std::string(f[2]);
      if (code == 0) {
        r.body = std::string(body);
      } else {
        r.status = absl::Status(static_cast<absl::StatusCode>(code), std::string(body));
      }
      it->second.expected.insert(r.instance);  // joined meanwhile: count it
      it->second.replies[r.instance] = std::move(r);
    }
    reply_cv_.notify_all();
  }

  // ---- the background thread -------------------------------------------------------

  void worker() {
    auto next = std::chrono::steady_clock::now();
    for (;;) {
      bool again;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_until(lock, next, [this] { return stopping_ || check_now_; });
        if (stopping_) return;
        check_now_ = false;
        again = std::exchange(resync_, false);
      }
      if (again) {
        absl::Status s = resync();
        if (!s.ok()) {
          log_.warn("re-reading after a reconnect failed: {}", std::string(s.message()));
          std::lock_guard<std::mutex> lock(mu_);
          resync_ = true;
        }
      }
      absl::Status s = run_once();
      if (!s.ok()) log_.warn("check failed: {}", std::string(s.message()));
      next = std::chrono::steady_clock::now() + o_.check_interval;
    }
  }

  Coordinator& c_;
  const RoomsOptions o_;
  const std::string me_;
  const internal::Logger log_;
  const std::uint64_t incarnation_;
  std::uint64_t seen_losses_ = 0;  // worker / run_once only

  std::mutex join_mu_;  // joins and leaves, one at a time
  std::mutex send_mu_;  // broadcasts: numbered in publish order
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable reply_cv_;
  Node self_;
  std::string published_record_;
  std::map<std::string, Registered, std::less<>> registry_;  // nodes map
  std::set<std::string, std::less<>> live_;                  // live member ids
  std::map<std::string, Clock::TimePoint> dead_since_;
  std::map<std::string, Cached, std::less<>> cache_;
  std::uint64_t epoch_ = 0;  // +1 on every placement change seen
  std::set<std::string> hosted_;
  std::map<std::string, LocalRoom, std::less<>> local_;
  std::map<std::string, std::uint64_t> send_seq_;
  std::vector<Undo> undos_;
  std::map<std::uint64_t, Pending> pending_;
  std::uint64_t next_request_ = 0;
  RoomsStats stats_;
  bool check_now_ = false;
  bool resync_ = false;
  bool stopping_ = false;
  std::thread worker_;
  std::vector<Subscription> subs_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Rooms>> Rooms::create(Coordinator& coordinator,
                                                     RoomsOptions options) {
  FLEET_RETURN_IF_ERROR(validate_name("rooms name", options.name));
  if (options.name.size() > kMaxNamespaceBytes) {
    return absl::InvalidArgumentError(
        fmt::format("rooms name is {} bytes; at most {} are allowed", options.name.size(),
                    kMaxNamespaceBytes));
  }
  if (options.check_interval.count() <= 0 || options.takeover_grace.count() < 0) {
    return absl::InvalidArgumentError(
        "check_interval must be positive and takeover_grace not negative");
  }
  if (options.max_message_bytes == 0 || options.max_message_bytes > kMaxValueBytes / 2) {
    return absl::InvalidArgumentError(
        fmt::format("max_message_bytes must be between 1 and {}", kMaxValueBytes / 2));
  }
  if (options.host) {
    if (options.host->max_rooms < 0) {
      return absl::InvalidArgumentError("NodeInfo::max_rooms must not be negative");
    }
    if (options.host->address.find('\n') != std::string::npos) {
      return absl::InvalidArgumentError("NodeInfo::address must not contain a newline");
    }
  }
  auto members = coordinator.members();
  if (!members.ok()) return members.status();
  std::string me;
  for (const auto& m : *members) {
    if (m.session_id == coordinator.session_id()) me = m.info.id;
  }
  if (me.empty()) {
    return absl::FailedPreconditionError(
        "fleet::rooms needs a Coordinator that has joined: its instance id names the "
        "node");
  }
  auto rooms = std::make_unique<RoomsImpl>(coordinator, std::move(options), me);
  FLEET_RETURN_IF_ERROR(rooms->start());
  return std::unique_ptr<Rooms>(std::move(rooms));
}

}  // namespace fleet::rooms
