#include "redis/ledger.hpp"

namespace fleet::internal {

void SessionLedger::wait_not_collecting(MutexLock& lock) {
  while (collecting_) cv_.wait(lock.native());
}

std::uint64_t SessionLedger::begin_write() {
  MutexLock lock(mu_);
  wait_not_collecting(lock);
  ++active_;
  return epoch_;
}

std::optional<std::uint64_t> SessionLedger::try_begin_write(std::size_t n) {
  MutexLock lock(mu_);
  if (collecting_) return std::nullopt;
  active_ += n;
  return epoch_;
}

std::optional<std::uint64_t> SessionLedger::begin_release(const std::string& pool,
                                                          const std::string& target) {
  MutexLock lock(mu_);
  wait_not_collecting(lock);
  auto p = record_.slots.find(pool);
  if (p == record_.slots.end()) return std::nullopt;
  auto t = p->second.find(target);
  if (t == p->second.end()) return std::nullopt;
  if (--t->second == 0) p->second.erase(t);
  if (p->second.empty()) record_.slots.erase(p);
  ++active_;
  return epoch_;
}

void SessionLedger::end_write(std::size_t n, bool doubtful,
                              const std::function<void(Record&)>& update) {
  bool wake = false;
  {
    MutexLock lock(mu_);
    if (update) update(record_);
    active_ -= n;
    if (doubtful && !wanted_) wanted_ = wake = true;
  }
  cv_.notify_all();
  if (wake && wake_agent_) wake_agent_();
}

void SessionLedger::want_sync() {
  {
    MutexLock lock(mu_);
    wanted_ = true;
  }
  if (wake_agent_) wake_agent_();
}

bool SessionLedger::sync_wanted() const {
  MutexLock lock(mu_);
  return wanted_;
}

SessionLedger::Snapshot SessionLedger::begin_sync() {
  MutexLock lock(mu_);
  collecting_ = true;
  while (active_ != 0) cv_.wait(lock.native());
  wanted_ = false;
  return Snapshot{++epoch_, record_};
}

void SessionLedger::end_sync(bool ok) {
  {
    MutexLock lock(mu_);
    collecting_ = false;
    if (ok) {
      synced_epoch_ = epoch_;
    } else {
      wanted_ = true;
    }
  }
  cv_.notify_all();
  if (on_synced_) on_synced_();
}

bool SessionLedger::await_sync(std::uint64_t epoch, std::chrono::milliseconds timeout) {
  bool wake = false;
  MutexLock lock(mu_);
  if (synced_epoch_ > epoch) return true;
  if (!collecting_ && !wanted_) wanted_ = wake = true;
  lock.unlock();
  if (wake && wake_agent_) wake_agent_();
  lock.lock();
  const auto deadline = clock_->now() + timeout;
  while (synced_epoch_ <= epoch && clock_->now() < deadline) {
    clock_->wait_until(lock.native(), cv_, deadline);
  }
  return synced_epoch_ > epoch;
}

void SessionLedger::clear() {
  MutexLock lock(mu_);
  wait_not_collecting(lock);
  record_ = Record{};
}

}  // namespace fleet::internal
