#include "redis/sentinel.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>

#include "fmt/format.h"
#include "internal/parse.hpp"
#include "redis/connection.hpp"
#include "redis/sigpipe.hpp"

namespace fleet::internal {
namespace {

// How often the watcher asks the sentinels anyway (a +switch-master lost
// with its connection, a sentinel that is paused).
constexpr std::chrono::seconds kAskEvery{5};
constexpr int kPollMs = 200;

}  // namespace

SentinelDirectory::SentinelDirectory(Options options)
    : options_(std::move(options)), order_(options_.sentinels) {}

SentinelDirectory::~SentinelDirectory() { stop_watch(); }

std::string SentinelDirectory::subject() const {
  return fmt::format("Sentinel: master '{}'", options_.master_name);
}

absl::StatusOr<std::unique_ptr<RedisConnection>> SentinelDirectory::open_sentinel(
    const HostPort& s) const {
  RedisEndpoint ep;
  ep.host = s.host;
  ep.port = s.port;
  ep.user = options_.user;
  ep.password = options_.password;
  return RedisConnection::open(ep, {options_.connect_timeout, options_.command_timeout});
}

absl::StatusOr<MasterDirectory::Answer> SentinelDirectory::ask() {
  std::vector<HostPort> order;
  {
    MutexLock lock(order_mu_);
    order = order_;
  }
  std::string failures;
  bool unknown = false;
  for (const HostPort& s : order) {
    auto conn = open_sentinel(s);
    absl::StatusOr<Reply> reply =
        conn.ok() ? (*conn)->command(
                        {"SENTINEL", "get-master-addr-by-name", options_.master_name})
                  : absl::StatusOr<Reply>(conn.status());
    if (!reply.ok() || reply->is_error()) {
      if (!reply.ok() && (reply.status().code() == absl::StatusCode::kUnauthenticated ||
                          reply.status().code() == absl::StatusCode::kPermissionDenied)) {
        return absl::Status(reply.status().code(),
                            fmt::format("Sentinel at {}: {}", s.str(),
                                        std::string(reply.status().message())));
      }
      failures +=
          fmt::format("{}{}: {}", failures.empty() ? "" : "; ", s.str(),
                      reply.ok() ? reply->str : std::string(reply.status().message()));
      continue;
    }
    if (reply->is_nil()) {
      unknown = true;
      failures += fmt::format("{}{}: does not monitor '{}'", failures.empty() ? "" : "; ",
                              s.str(), options_.master_name);
      continue;
    }
    HostPort addr;
    if (reply->type != Reply::Type::kArray || reply->elements.size() != 2 ||
        !parse_port(reply->elements[1].str, &addr.port) ||
        reply->elements[0].str.empty()) {
      failures +=
          fmt::format("{}{}: malformed answer", failures.empty() ? "" : "; ", s.str());
      continue;
    }
    addr.host = reply->elements[0].str;
    const int replicas = count_replicas(**conn, addr);
    {
      // The one that answered goes first next time.
      MutexLock lock(order_mu_);
      auto it = std::find(order_.begin(), order_.end(), s);
      if (it != order_.end()) std::rotate(order_.begin(), it, it + 1);
    }
    return Answer{addr, replicas};
  }
  if (unknown) {
    return absl::NotFoundError(fmt::format("no Sentinel knows a master named '{}' ({})",
                                           options_.master_name, failures));
  }
  return absl::UnavailableError(fmt::format("no Sentinel answered for master '{}' ({})",
                                            options_.master_name, failures));
}

// SENTINEL REPLICAS answers one flat field/value array per replica of the
// group. A replica counts when no flag says it is down or unreachable, its
// last INFO showed its link to the master up, and it is not `master`
// itself. During a failover the sentinels name the promoted replica as the
// master before they move the others: it is still listed (flag
// "promoted"), and for the old master it counts (the old master has lost
// it, so it cannot get a write confirmed by all), for the new one it does
// not. An old master re-added as a replica shows "err" until it has
// synchronised. No answer: -1 (the count stays as it was).
int SentinelDirectory::count_replicas(RedisConnection& conn, const HostPort& master) {
  auto reply = conn.command({"SENTINEL", "REPLICAS", options_.master_name});
  if (!reply.ok() || reply->type != Reply::Type::kArray) return -1;
  int healthy = 0;
  for (const Reply& r : reply->elements) {
    if (r.type != Reply::Type::kArray) continue;
    std::string_view flags, link, ip, port;
    for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) {
      const std::string& field = r.elements[i].str;
      const std::string& value = r.elements[i + 1].str;
      if (field == "flags") flags = value;
      if (field == "master-link-status") link = value;
      if (field == "ip") ip = value;
      if (field == "port") port = value;
    }
    const bool down = flags.find("s_down") != std::string_view::npos ||
                      flags.find("o_down") != std::string_view::npos ||
                      flags.find("disconnected") != std::string_view::npos;
    const bool is_master = ip == master.host && port == std::to_string(master.port);
    if (!down && link == "ok" && !is_master) ++healthy;
  }
  return healthy;
}

// Subscribes to +switch-master on one sentinel after another (the next one
// when the current one fails), asking for the master's address after each
// subscription and every kAskEvery.
void SentinelDirectory::watch_loop() {
  block_sigpipe_for_this_thread();
  std::size_t next = 0;
  while (!stopping()) {
    HostPort s;
    {
      MutexLock lock(order_mu_);
      s = order_[next++ % order_.size()];
    }
    auto conn = open_sentinel(s);
    if (!conn.ok()) {
      pause(std::chrono::milliseconds(100));
      continue;
    }
    auto confirm = (*conn)->command({"SUBSCRIBE", "+switch-master"});
    if (!confirm.ok() || confirm->is_error()) {
      pause(std::chrono::milliseconds(100));
      continue;
    }
    auto asked_at = clock()->now();
    ask_and_learn("asked the sentinels");
    while (!stopping() && !(*conn)->broken()) {
      pollfd fds[2] = {{(*conn)->fd(), POLLIN, 0}, {wake_fd(), POLLIN, 0}};
      const pollfd& fd = fds[0];
      if (::poll(fds, wake_fd() >= 0 ? 2 : 1, kPollMs) > 0 &&
          (fd.revents & (POLLIN | POLLHUP | POLLERR))) {
        if (!(*conn)->fill().ok()) break;
        for (;;) {
          auto r = (*conn)->buffered();
          if (!r.ok() || !r->has_value()) break;
          const Reply& m = **r;
          if (m.type != Reply::Type::kArray || m.elements.size() != 3 ||
              m.elements[0].str != "message") {
            continue;
          }
          // "<name> <old ip> <old port> <new ip> <new port>"
          std::vector<std::string> f;
          std::string_view text = m.elements[2].str;
          while (!text.empty()) {
            auto sp = text.find(' ');
            f.emplace_back(text.substr(0, sp));
            if (sp == std::string_view::npos) break;
            text.remove_prefix(sp + 1);
          }
          HostPort addr;
          if (f.size() != 5 || f[0] != options_.master_name ||
              !parse_port(f[4], &addr.port)) {
            continue;
          }
          addr.host = f[3];
          learn(addr, fmt::format("+switch-master from the sentinel at {}", s.str()));
          // The new master's replicas (the count asked before was the old
          // master's).
          ask_and_learn("asked the sentinels after +switch-master");
        }
      }
      if (clock()->now() - asked_at >= kAskEvery) {
        asked_at = clock()->now();
        ask_and_learn("asked the sentinels");
      }
    }
  }
}

}  // namespace fleet::internal
