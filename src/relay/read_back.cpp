#include "relay/read_back.hpp"

#include "fleet/status.hpp"
#include "fmt/format.h"
#include "internal/status.hpp"

namespace fleet::relay::internal_relay {

using internal::MutexLock;

absl::StatusOr<Copy> ReadBack::own_copy(std::string_view id) {
  const std::string key(id);
  {
    MutexLock lock(copies_.mu);
    if (copies_.unsure.count(key) == 0) {
      if (auto it = copies_.own.find(key); it != copies_.own.end()) return it->second;
      if (auto it = copies_.foreign.find(key); it != copies_.foreign.end()) {
        return absl::FailedPreconditionError(
            fmt::format("session '{}' is owned by '{}', not by this instance", id,
                        it->second.s.owner));
      }
      return absl::NotFoundError(fmt::format("no session '{}' here", id));
    }
  }
  FLEET_RETURN_IF_ERROR(resolve(key));
  MutexLock lock(copies_.mu);
  auto it = copies_.own.find(key);
  if (it == copies_.own.end()) {
    return absl::NotFoundError(fmt::format("no session '{}' here", id));
  }
  return it->second;
}

absl::Status ReadBack::resolve(const std::string& id) {
  bool pending;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> seen;
  {
    MutexLock lock(copies_.mu);
    pending = copies_.pending_create.count(id) != 0;
    // If another thread changes our copy during the read (a
    // re-publication, an update), the read is not the last word.
    if (auto it = copies_.own.find(id); it != copies_.own.end()) {
      seen.emplace(it->second.entry_version, it->second.losses);
    }
  }
  if (pending) {  // a create that returned an error: make sure it does not exist
    FLEET_RETURN_IF_ERROR(roll_back(id));
    return absl::NotFoundError(fmt::format("session '{}' was not created", id));
  }
  const std::uint64_t losses = c_.data_losses();
  FLEET_ASSIGN_OR_RETURN(auto stored, c_.get(bucket_map(o_.name, id), id));
  std::optional<Copy> lost, put_back;
  absl::Status result;
  {
    MutexLock lock(copies_.mu);
    auto it = copies_.own.find(id);
    if (it != copies_.own.end() && seen &&
        *seen != std::make_pair(it->second.entry_version, it->second.losses)) {
      return absl::OkStatus();  // changed under the read: the caller tries again
    }
    copies_.unsure.erase(id);
    const std::uint64_t fence = it != copies_.own.end() ? it->second.s.fence : fence_;
    if (stored.has_value()) {
      auto s = decode_session(id, stored->value);
      if (s.ok() && s->owner == me_ && s->fence == fence) {
        copies_.own[id] = Copy{*s, stored->value, stored->version, false, losses};
        copies_.foreign.erase(id);
        return absl::OkStatus();
      }
    }
    if (it != copies_.own.end() && !stored.has_value() &&
        it->second.losses < c_.data_losses()) {
      put_back = it->second;  // lost with the backend's data, not deleted
    } else if (it != copies_.own.end()) {
      lost = it->second;
      copies_.own.erase(it);
    }
    result = stored.has_value()
                 ? absl::FailedPreconditionError(fmt::format(
                       "session '{}' is no longer owned by this instance", id))
                 : absl::NotFoundError(fmt::format("session '{}' no longer exists", id));
  }
  if (put_back) {
    const std::uint64_t before = c_.data_losses();
    FLEET_ASSIGN_OR_RETURN(
        auto r, c_.claim(bucket_map(o_.name, id), id, put_back->raw, put_back->s.ttl));
    MutexLock lock(copies_.mu);
    auto it = copies_.own.find(id);
    if (it != copies_.own.end() && (r.claimed || r.entry.value == it->second.raw)) {
      it->second.entry_version = r.entry.version;
      it->second.losses = before;
      return absl::OkStatus();
    }
    if (it != copies_.own.end()) {
      lost = it->second;
      copies_.own.erase(it);
    }
    result = absl::FailedPreconditionError(
        fmt::format("session '{}' is no longer owned by this instance", id));
  }
  if (lost) {
    lost_(SessionEvent{SessionEventType::kLost, lost->s, std::string(result.message())});
  }
  return result;
}

absl::Status ReadBack::roll_back(const std::string& id) {
  std::string raw;
  {
    MutexLock lock(copies_.mu);
    auto it = copies_.pending_create.find(id);
    if (it == copies_.pending_create.end()) return absl::OkStatus();
    raw = it->second.raw;
  }
  // On failure it is tried again at the next check.
  FLEET_ASSIGN_OR_RETURN(bool deleted,
                         c_.compare_and_delete(bucket_map(o_.name, id), id, raw));
  MutexLock lock(copies_.mu);
  auto it = copies_.pending_create.find(id);
  if (it != copies_.pending_create.end() && it->second.raw == raw) {
    copies_.pending_create.erase(it);
    copies_.unsure.erase(id);
  }
  if (deleted) {
    log_.info("session '{}': a create reported as failed had landed; deleted it", id);
  }
  return absl::OkStatus();
}

}  // namespace fleet::relay::internal_relay
