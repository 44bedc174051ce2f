#include "redis/directory.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <vector>

#include "fmt/format.h"
#include "internal/parse.hpp"

namespace fleet::internal {

std::string HostPort::str() const {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                             : fmt::format("{}:{}", host, port);
}

bool parse_host_port_text(std::string_view text, HostPort* out) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view host = text.substr(0, colon), port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int v = 0;
  if (host.empty() || !parse_port(port, &v)) return false;
  out->host = std::string(host);
  out->port = v;
  return true;
}

MasterDirectory::~MasterDirectory() {
  for (int fd : wake_fds_) {
    if (fd >= 0) ::close(fd);
  }
}

std::string MasterDirectory::describe() const {
  MutexLock lock(mu_);
  if (!master_) return fmt::format("{} (not located yet)", subject());
  return fmt::format("{} at {}", subject(), master_->str());
}

void MasterDirectory::suspect() {
  MutexLock lock(mu_);
  stale_ = true;
}

void MasterDirectory::redirected(const HostPort& to) {
  learn(to, "Redis Cluster answered MOVED");
}

absl::StatusOr<HostPort> MasterDirectory::master() {
  {
    MutexLock lock(mu_);
    if (master_ && !stale_) return *master_;
  }
  MutexLock asking(ask_mu_);
  {
    // Someone else asked while we waited.
    MutexLock lock(mu_);
    if (master_ && !stale_) return *master_;
  }
  auto a = ask();
  if (!a.ok()) return a.status();
  learn_answer(*a, "asked");
  return a->master;
}

void MasterDirectory::ask_and_learn(std::string_view how) {
  MutexLock asking(ask_mu_);
  if (auto a = ask(); a.ok()) learn_answer(*a, how);
}

void MasterDirectory::learn_answer(const Answer& a, std::string_view how) {
  learn(a.master, how);
  if (a.replicas >= 0) set_replicas(a.replicas);
}

void MasterDirectory::set_replicas(int n) {
  const int before = replicas_.exchange(n, std::memory_order_acq_rel);
  if (before != n) log(LogLevel::kInfo, "{} has {} healthy replica(s)", subject(), n);
}

void MasterDirectory::learn(const HostPort& addr, std::string_view how) {
  std::optional<HostPort> before;
  std::vector<std::function<void()>> tell;
  {
    MutexLock lock(mu_);
    stale_ = false;
    if (master_ && *master_ == addr) return;
    before = master_;
    master_ = addr;
    if (before) {
      epoch_.fetch_add(1, std::memory_order_acq_rel);
      for (const auto& [id, fn] : listeners_) tell.push_back(fn);
    }
  }
  if (before) {
    log(LogLevel::kWarning, "{} moved from {} to {} ({}); every connection moves to it",
        subject(), before->str(), addr.str(), how);
  } else {
    log(LogLevel::kInfo, "{} is at {} ({})", subject(), addr.str(), how);
  }
  for (const auto& fn : tell) fn();
}

std::uint64_t MasterDirectory::add_listener(std::function<void()> fn) {
  MutexLock lock(mu_);
  const std::uint64_t id = next_listener_++;
  listeners_[id] = std::move(fn);
  return id;
}

void MasterDirectory::remove_listener(std::uint64_t id) {
  MutexLock lock(mu_);
  listeners_.erase(id);
}

void MasterDirectory::start_watch(Clock* clock, const Logger& logger) {
  MutexLock lock(mu_);
  logger_ = logger;
  if (watcher_.joinable()) return;
  clock_ = clock;
  stop_ = false;
  if (wake_fds_[0] < 0 && ::pipe2(wake_fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
    wake_fds_[0] = wake_fds_[1] = -1;  // the poll's timeout still ends it
  }
  watcher_ = std::thread([this] { watch_loop(); });
}

void MasterDirectory::stop_watch() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (wake_fds_[1] >= 0) {
    const char byte = 1;
    (void)!::write(wake_fds_[1], &byte, 1);
  }
  if (watcher_.joinable()) watcher_.join();
  MutexLock lock(mu_);
  logger_.reset();
}

bool MasterDirectory::stopping() const {
  MutexLock lock(mu_);
  return stop_;
}

void MasterDirectory::pause(std::chrono::milliseconds d) {
  MutexLock lock(mu_);
  const auto until = clock_->now() + d;
  while (!stop_ && clock_->now() < until) clock_->wait_until(lock.native(), cv_, until);
}

}  // namespace fleet::internal
