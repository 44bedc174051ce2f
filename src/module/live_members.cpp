#include "module/live_members.hpp"

namespace fleet::internal {

absl::Status LiveMembers::refresh() {
  {
    MutexLock lock(mu_);
    ++reading_;
  }
  auto members = c_.members();
  MutexLock lock(mu_);
  if (--reading_ == 0 && !members.ok()) during_read_.clear();
  fresh_ = members.ok();
  if (!members.ok()) return members.status();
  ids_.clear();
  for (const auto& m : *members) ids_.insert(m.info.id);
  for (const auto& e : during_read_) apply_locked(e);
  if (reading_ == 0) during_read_.clear();
  return absl::OkStatus();
}

void LiveMembers::apply(const MemberEvent& e) {
  MutexLock lock(mu_);
  if (reading_ > 0) during_read_.push_back(e);
  apply_locked(e);
}

void LiveMembers::apply_locked(const MemberEvent& e) {
  if (e.type == MemberEventType::kJoined) {
    ids_.insert(e.member.info.id);
  } else {
    ids_.erase(e.member.info.id);
  }
}

bool LiveMembers::fresh() const {
  MutexLock lock(mu_);
  return fresh_;
}

bool LiveMembers::contains(std::string_view id) const {
  MutexLock lock(mu_);
  return ids_.count(id) != 0;
}

std::set<std::string, std::less<>> LiveMembers::ids() const {
  MutexLock lock(mu_);
  return ids_;
}

}  // namespace fleet::internal
