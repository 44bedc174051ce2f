#include "redis/subscriber.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <random>

#include "redis/sigpipe.hpp"

namespace fleet::internal {

Subscriber::Subscriber(Options options, Clock* clock, const Logger* logger,
                       std::function<void()> on_healthy)
    : options_(std::move(options)),
      clock_(clock),
      logger_(logger),
      on_healthy_(std::move(on_healthy)) {}

Subscriber::~Subscriber() {
  stop();
  for (int fd : wake_fds_) {
    if (fd >= 0) ::close(fd);
  }
}

void Subscriber::stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (directory_listener_ != 0) {
    options_.endpoint.directory->remove_listener(directory_listener_);
    directory_listener_ = 0;
  }
  wake();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id())
    thread_.join();
}

absl::Status Subscriber::start() {
  if (::pipe2(wake_fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::ResourceExhaustedError("cannot create the pub/sub wake-up pipe");
  }
  if (options_.endpoint.directory) {
    // The master moved: the connection is stale; wake up to notice.
    directory_listener_ = options_.endpoint.directory->add_listener([this] { wake(); });
  }
  auto conn = RedisConnection::open(options_.endpoint, options_.timeouts);
  if (!conn.ok()) return conn.status();
  conn_ = *std::move(conn);
  {
    MutexLock lock(mu_);
    connected_ = true;
  }
  thread_ = std::thread([this] { run(); });
  return absl::OkStatus();
}

void Subscriber::wake() {
  if (wake_fds_[1] >= 0) {
    const char b = 1;
    (void)!::write(wake_fds_[1], &b, 1);
  }
}

bool Subscriber::healthy() const {
  MutexLock lock(mu_);
  return connected_ && all_confirmed_locked();
}

void Subscriber::retry_now() {
  {
    MutexLock lock(mu_);
    retry_now_ = true;
  }
  cv_.notify_all();
}

std::uint64_t Subscriber::drops() const {
  MutexLock lock(mu_);
  return drops_;
}

bool Subscriber::all_confirmed_locked() const {
  for (const auto& [channel, hs] : handlers_) {
    if (!confirmed_.count(channel)) return false;
  }
  return true;
}

absl::StatusOr<std::uint64_t> Subscriber::add(const std::string& channel,
                                              Handler handler) {
  MutexLock lock(mu_);
  const std::uint64_t id = next_id_++;
  auto& hs = handlers_[channel];
  const bool first = hs.empty();
  hs.emplace(id, std::move(handler));
  channel_of_.emplace(id, channel);
  if (first) {
    confirmed_.erase(channel);  // an UNSUBSCRIBE may still be in flight
    pending_.emplace_back(true, channel);
    wake();
  }
  const auto deadline = clock_->now() + options_.timeouts.command;
  while (!confirmed_.count(channel) && !stop_) {
    if (clock_->now() >= deadline) {
      lock.unlock();
      remove(id);
      return absl::UnavailableError(
          "could not subscribe: Redis did not confirm the subscription in time");
    }
    clock_->wait_until(lock.native(), cv_, deadline);
  }
  return id;
}

void Subscriber::remove(std::uint64_t id) {
  MutexLock lock(mu_);
  auto it = channel_of_.find(id);
  if (it == channel_of_.end()) return;
  auto hs = handlers_.find(it->second);
  hs->second.erase(id);
  if (hs->second.empty()) {
    pending_.emplace_back(false, it->second);
    confirmed_.erase(it->second);
    handlers_.erase(hs);
    wake();
  }
  channel_of_.erase(it);
}

// Reconnects with capped exponential backoff and jitter, then subscribes to
// every channel that has handlers. Returns false when stopping.
bool Subscriber::connect_and_resubscribe() {
  std::chrono::milliseconds backoff = options_.backoff_min;
  std::minstd_rand rng{std::random_device{}()};
  for (;;) {
    auto conn = RedisConnection::open(options_.endpoint, options_.timeouts);
    MutexLock lock(mu_);
    if (stop_) return false;
    if (conn.ok()) {
      conn_ = *std::move(conn);
      connected_ = true;
      pending_.clear();
      confirmed_.clear();
      for (const auto& [channel, hs] : handlers_) pending_.emplace_back(true, channel);
      logger_->info("pub/sub connection to Redis restored; resubscribing {} channels",
                    handlers_.size());
      return true;
    }
    std::uniform_int_distribution<long long> jitter(backoff.count() / 2, backoff.count());
    const auto until = clock_->now() + std::chrono::milliseconds(jitter(rng));
    while (!stop_ && !retry_now_ && clock_->now() < until) {
      clock_->wait_until(lock.native(), cv_, until);
    }
    if (stop_) return false;
    backoff =
        retry_now_ ? options_.backoff_min : std::min(backoff * 2, options_.backoff_max);
    retry_now_ = false;
  }
}

void Subscriber::handle(const Reply& r) {
  if (r.type != Reply::Type::kArray || r.elements.size() < 3) return;
  const std::string& kind = r.elements[0].str;
  const std::string& channel = r.elements[1].str;
  if (kind == "message" || kind == "smessage") {
    std::vector<Handler> targets;
    {
      MutexLock lock(mu_);
      auto it = handlers_.find(channel);
      if (it == handlers_.end()) return;
      for (const auto& [id, h] : it->second) targets.push_back(h);
    }
    for (const auto& h : targets) h(r.elements[2].str);
  } else if (kind == "sunsubscribe") {
    // Redis Cluster unsubscribes us by itself when the slot leaves the
    // node: subscribing again there gets MOVED, which breaks the
    // connection, and the reconnect (reported as a drop) goes to the new
    // node. (Our own SUNSUBSCRIBE's answer comes once no handler is left.)
    MutexLock lock(mu_);
    if (handlers_.count(channel)) {
      confirmed_.erase(channel);
      pending_.emplace_back(true, channel);
      wake();
    }
  } else if (kind == "subscribe" || kind == "ssubscribe") {
    bool now_healthy = false;
    {
      MutexLock lock(mu_);
      if (handlers_.count(channel)) confirmed_.insert(channel);
      now_healthy = !was_healthy_ && all_confirmed_locked();
      if (now_healthy) was_healthy_ = true;
    }
    cv_.notify_all();
    if (now_healthy && on_healthy_) on_healthy_();
  }
}

void Subscriber::run() {
  block_sigpipe_for_this_thread();  // redis/sigpipe.hpp
  for (;;) {
    {
      MutexLock lock(mu_);
      if (stop_) return;
    }
    if (!conn_ || conn_->broken()) {
      {
        MutexLock lock(mu_);
        if (connected_) {
          logger_->warn("pub/sub connection to Redis lost; reconnecting");
          ++drops_;
        }
        connected_ = false;
        was_healthy_ = false;
        confirmed_.clear();
      }
      cv_.notify_all();
      if (on_healthy_) on_healthy_();  // the session reports the loss
      conn_.reset();
      if (!connect_and_resubscribe()) return;
    }
    // Send queued (un)subscriptions.
    std::deque<std::pair<bool, std::string>> todo;
    {
      MutexLock lock(mu_);
      todo.swap(pending_);
    }
    bool ok = true;
    // Redis Cluster: sharded pub/sub, served by the channel's slot's shard
    // (every channel of a namespace has its hash tag).
    const bool sharded = options_.endpoint.uses_cluster();
    for (const auto& [sub, channel] : todo) {
      const std::string_view verb = sharded ? (sub ? "SSUBSCRIBE" : "SUNSUBSCRIBE")
                                            : (sub ? "SUBSCRIBE" : "UNSUBSCRIBE");
      ok = conn_->append({verb, channel}).ok();
      if (!ok) break;
    }
    if (ok && !todo.empty()) ok = conn_->flush().ok();
    if (!ok) continue;
    // Deliver every reply already buffered.
    for (;;) {
      auto r = conn_->buffered();
      if (!r.ok() || !r->has_value()) break;
      handle(**r);
    }
    if (conn_->broken()) continue;
    pollfd fds[2] = {{conn_->fd(), POLLIN, 0}, {wake_fds_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;  // EINTR
    if (fds[1].revents & POLLIN) {
      char buf[64];
      while (::read(wake_fds_[0], buf, sizeof buf) > 0) {
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) (void)conn_->fill();
  }
}

}  // namespace fleet::internal
