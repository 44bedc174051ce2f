#include "rooms/members.hpp"

#include <algorithm>

#include "fmt/format.h"
#include "internal/parse.hpp"
#include "internal/status.hpp"
#include "rooms/internal.hpp"

namespace fleet::rooms::internal_rooms {

using internal::MapMirror;
using internal::MutexLock;

LocalRooms::~LocalRooms() { stop(); }

void LocalRooms::stop() {
  std::map<std::string, LocalRoom, std::less<>> gone;
  {
    MutexLock lock(mu_);
    gone.swap(rooms_);
  }
  // Outside mu_: cancelling waits for a running callback, which may need it.
  for (auto& [room, lr] : gone) {
    if (lr.changes) lr.changes->stop();
    lr.broadcasts.cancel();
  }
}

absl::Status LocalRooms::open(const std::string& room) {
  {
    MutexLock lock(mu_);
    if (rooms_.count(room) != 0) return absl::OkStatus();
    rooms_[room].copy.room = room;  // the mirror's first read lands here
  }
  absl::Status st;
  auto broadcasts = subscribe_(room);
  std::shared_ptr<MapMirror> mirror;
  if (broadcasts.ok()) {
    mirror = ctx_.core.mirror(
        room_map(ctx_.o.name, room), "",
        [this, room](const MapMirror::Change& ch) { on_change(room, ch); });
    st = mirror->start();
  } else {
    st = broadcasts.status();
  }
  std::optional<LocalRoom> failed;
  {
    MutexLock lock(mu_);
    auto it = rooms_.find(room);
    if (st.ok()) {
      it->second.changes = std::move(mirror);
      it->second.broadcasts = std::move(*broadcasts);
      it->second.loading = false;
    } else {
      failed = std::move(it->second);
      rooms_.erase(it);
    }
  }
  if (failed && failed->changes) failed->changes->stop();
  if (mirror) mirror->stop();  // (only left here on failure)
  return st;
}

bool LocalRooms::close_if_unused(const std::string& room) {
  std::optional<LocalRoom> gone;
  {
    MutexLock lock(mu_);
    auto it = rooms_.find(room);
    if (it == rooms_.end() || !it->second.members.empty()) return false;
    gone = std::move(it->second);
    rooms_.erase(it);
  }
  // Its mirror and subscription stop here, outside mu_.
  if (gone->changes) gone->changes->stop();
  gone->broadcasts.cancel();
  return true;
}

void LocalRooms::on_change(const std::string& room, const MapMirror::Change& ch) {
  std::optional<ParticipantEvent> pe;
  {
    MutexLock lock(mu_);
    auto it = rooms_.find(room);
    if (it == rooms_.end()) return;
    RoomState& copy = it->second.copy;
    const bool participant =
        ch.key.compare(0, kParticipantPrefix.size(), kParticipantPrefix) == 0;
    if (ch.kind == MapMirror::Kind::kSet) {
      if (participant) {
        auto p = decode_participant(ch.key, ch.value);
        if (!p.ok()) return;
        const bool known =
            std::any_of(copy.participants.begin(), copy.participants.end(),
                        [&](const Participant& q) { return q.identity == p->identity; });
        pe = ParticipantEvent{
            known ? ParticipantEventType::kUpdated : ParticipantEventType::kJoined, room,
            *p};
      }
      apply_state_entry(&copy, ch.key, ch.value);
    } else if (participant) {
      const std::string id = ch.key.substr(kParticipantPrefix.size());
      auto p = std::find_if(copy.participants.begin(), copy.participants.end(),
                            [&](const Participant& q) { return q.identity == id; });
      if (p != copy.participants.end()) {
        pe = ParticipantEvent{ParticipantEventType::kLeft, room, *p};
        copy.participants.erase(p);
      }
    } else if (ch.key == kMetadataKey) {
      copy.metadata.clear();
    } else if (ch.key.compare(0, kFlagPrefix.size(), kFlagPrefix) == 0) {
      copy.flags.erase(ch.key.substr(kFlagPrefix.size()));
    }
    if (it->second.loading) pe.reset();  // what is, not what happened
  }
  if (pe) ctx_.post(ctx_.o.on_participant, std::move(*pe));
}

absl::Status LocalRooms::write_member(const std::string& room,
                                      const std::string& identity,
                                      const std::string& metadata) {
  FLEET_RETURN_IF_ERROR(
      ctx_.c.put(index_map(ctx_.o.name, ctx_.me), room + "\n" + identity, "").status());
  return ctx_.c
      .put(room_map(ctx_.o.name, room), participant_key(identity),
           encode_participant(ctx_.me, metadata))
      .status();
}

void LocalRooms::undo_member(const std::string& room, const std::string& identity,
                             const std::string& metadata) {
  Undo u{room, identity, metadata};
  absl::Status st = remove_entries(u);
  if (st.ok()) return;
  ctx_.log().warn("could not remove '{}' from room '{}' yet ({}); retrying", identity,
                  room, std::string(st.message()));
  MutexLock lock(mu_);
  undos_.push_back(std::move(u));
}

absl::Status LocalRooms::remove_entries(const Undo& u) {
  {
    // Joined again meanwhile: nothing to undo.
    MutexLock lock(mu_);
    auto it = rooms_.find(u.room);
    if (it != rooms_.end() && it->second.members.count(u.identity) != 0) {
      return absl::OkStatus();
    }
  }
  FLEET_RETURN_IF_ERROR(ctx_.c
                            .compare_and_delete(room_map(ctx_.o.name, u.room),
                                                participant_key(u.identity),
                                                encode_participant(ctx_.me, u.metadata))
                            .status());
  return ctx_.c.erase(index_map(ctx_.o.name, ctx_.me), u.room + "\n" + u.identity)
      .status();
}

absl::Status LocalRooms::retry_undos(std::vector<std::string>* emptied) {
  std::vector<Undo> todo;
  {
    MutexLock lock(mu_);
    todo.swap(undos_);
  }
  absl::Status first;
  for (auto& u : todo) {
    absl::Status st = remove_entries(u);
    if (st.ok()) {
      emptied->push_back(u.room);
      continue;
    }
    if (first.ok()) first = st;
    MutexLock lock(mu_);
    undos_.push_back(std::move(u));
  }
  return first;
}

void LocalRooms::add(const std::string& room, const std::string& identity,
                     const std::string& metadata) {
  MutexLock lock(mu_);
  rooms_[room].members[identity] = metadata;
}

std::optional<std::string> LocalRooms::remove(const std::string& room,
                                              const std::string& identity) {
  MutexLock lock(mu_);
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return std::nullopt;
  auto m = it->second.members.find(identity);
  if (m == it->second.members.end()) return std::nullopt;
  std::string metadata = std::move(m->second);
  it->second.members.erase(m);
  return metadata;
}

bool LocalRooms::has_members(const std::string& room) const {
  MutexLock lock(mu_);
  auto it = rooms_.find(room);
  return it != rooms_.end() && !it->second.members.empty();
}

std::vector<std::string> LocalRooms::members(const std::string& room) const {
  MutexLock lock(mu_);
  std::vector<std::string> out;
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return out;
  for (const auto& [id, meta] : it->second.members) out.push_back(id);
  return out;
}

std::optional<std::vector<std::string>> LocalRooms::recipients(
    const std::string& room, const std::vector<std::string>& except) const {
  MutexLock lock(mu_);
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& [id, meta] : it->second.members) {
    if (std::find(except.begin(), except.end(), id) == except.end()) out.push_back(id);
  }
  return out;
}

std::vector<std::string> LocalRooms::rooms() const {
  MutexLock lock(mu_);
  std::vector<std::string> out;
  for (const auto& [room, lr] : rooms_) out.push_back(room);
  return out;
}

std::string LocalRooms::participants_reply(const std::string& room) const {
  MutexLock lock(mu_);
  std::string out;
  auto it = rooms_.find(room);
  if (it == rooms_.end()) return out;
  for (const auto& [id, meta] : it->second.members) {
    internal::put_field(&out, id);
    internal::put_field(&out, meta);
  }
  return out;
}

absl::StatusOr<std::size_t> LocalRooms::republish() {
  struct Copy {
    std::string room;
    RoomState state;
    std::map<std::string, std::string> members;
  };
  std::vector<Copy> copies;
  {
    MutexLock lock(mu_);
    for (const auto& [room, lr] : rooms_)
      copies.push_back(Copy{room, lr.copy, lr.members});
  }
  std::vector<MapOp> index;
  for (const auto& c : copies) {
    std::vector<MapOp> ops;
    if (!c.state.metadata.empty()) {
      ops.push_back(MapOp::claim(std::string(kMetadataKey), c.state.metadata));
    }
    for (const auto& [flag, value] : c.state.flags) {
      ops.push_back(MapOp::claim(flag_key(flag), value));
    }
    for (const auto& [id, meta] : c.members) {
      ops.push_back(MapOp::put(participant_key(id), encode_participant(ctx_.me, meta)));
      index.push_back(MapOp::put(c.room + "\n" + id, ""));
    }
    FLEET_RETURN_IF_ERROR(ctx_.c.apply(room_map(ctx_.o.name, c.room), ops).status());
  }
  for (std::size_t i = 0; i < index.size(); i += kMaxMapBatchOps) {
    std::vector<MapOp> chunk(index.begin() + static_cast<std::ptrdiff_t>(i),
                             index.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                 index.size(), i + kMaxMapBatchOps)));
    FLEET_RETURN_IF_ERROR(ctx_.c.apply(index_map(ctx_.o.name, ctx_.me), chunk).status());
  }
  return copies.size();
}

}  // namespace fleet::rooms::internal_rooms
