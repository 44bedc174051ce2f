#include "redis/ledger.hpp"

namespace fleet::internal {

std::uint64_t SessionLedger::begin_write() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !collecting_; });
  ++active_;
  return epoch_;
}

std::optional<std::uint64_t> SessionLedger::try_begin_write(std::size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (collecting_) return std::nullopt;
  active_ += n;
  return epoch_;
}

std::optional<std::uint64_t> SessionLedger::begin_release(const std::string& pool,
                                                          const std::string& target) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !collecting_; });
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
    std::lock_guard<std::mutex> lock(mu_);
    if (update) update(record_);
    active_ -= n;
    if (doubtful && !wanted_) wanted_ = wake = true;
  }
  cv_.notify_all();
  if (wake && wake_agent_) wake_agent_();
}

void SessionLedger::want_sync() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wanted_ = true;
  }
  if (wake_agent_) wake_agent_();
}

bool SessionLedger::sync_wanted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return wanted_;
}

SessionLedger::Snapshot SessionLedger::begin_sync() {
  std::unique_lock<std::mutex> lock(mu_);
  collecting_ = true;
  cv_.wait(lock, [this] { return active_ == 0; });
  wanted_ = false;
  return Snapshot{++epoch_, record_};
}

void SessionLedger::end_sync(bool ok) {
  {
    std::lock_guard<std::mutex> lock(mu_);
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
  std::unique_lock<std::mutex> lock(mu_);
  if (synced_epoch_ > epoch) return true;
  if (!collecting_ && !wanted_) wanted_ = wake = true;
  lock.unlock();
  if (wake && wake_agent_) wake_agent_();
  lock.lock();
  return cv_.wait_for(lock, timeout, [&] { return synced_epoch_ > epoch; });
}

void SessionLedger::clear() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !collecting_; });
  record_ = Record{};
}

}  // namespace fleet::internal
