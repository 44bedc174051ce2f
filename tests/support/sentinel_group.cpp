#include "sentinel_group.hpp"

#include <functional>
#include <thread>

#define FLEET_TEST_RETURN_IF_ERROR(expr) \
  do {                                   \
    absl::Status st_ = (expr);           \
    if (!st_.ok()) return st_;           \
  } while (false)

namespace fleet::testing {
namespace {

int count_lines_starting(const std::string& text, const std::string& word) {
  int n = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    if (text.compare(pos, end - pos, word) == 0) ++n;
    pos = end + 1;
  }
  return n;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SentinelGroup>> SentinelGroup::start(
    int replicas, int sentinels, std::chrono::milliseconds down_after, bool await_peers) {
  std::unique_ptr<SentinelGroup> g(new SentinelGroup());
  auto master = RedisServer::start();
  if (!master.ok()) return master.status();
  const int mport = (*master)->port();
  g->servers_.push_back(*std::move(master));
  for (int i = 0; i < replicas; ++i) {
    RedisServer::Options o;
    o.args = {"--replicaof", "127.0.0.1", std::to_string(mport)};
    auto r = RedisServer::start(std::move(o));
    if (!r.ok()) return r.status();
    g->servers_.push_back(*std::move(r));
  }
  const std::string conf =
      "sentinel resolve-hostnames no\n"
      "sentinel monitor " +
      std::string(kMasterName) + " 127.0.0.1 " + std::to_string(mport) + " " +
      std::to_string(sentinels / 2 + 1) + "\nsentinel down-after-milliseconds " +
      kMasterName + " " + std::to_string(down_after.count()) +
      "\nsentinel failover-timeout " + kMasterName + " 4000\nsentinel parallel-syncs " +
      kMasterName + " 4\n";
  for (int i = 0; i < sentinels; ++i) {
    RedisServer::Options o;
    o.sentinel_config = conf;
    auto s = RedisServer::start(std::move(o));
    if (!s.ok()) return s.status();
    g->sentinels_.push_back(*std::move(s));
  }
  FLEET_TEST_RETURN_IF_ERROR(g->await_replicas(std::chrono::seconds(20)));
  // Each sentinel knows the others (hello messages, every 2 s) and the
  // replicas (from the master's INFO).
  for (auto& s : g->sentinels_) {
    FLEET_TEST_RETURN_IF_ERROR(wait_until(
        [&] {
          auto peers = s->command({"SENTINEL", "sentinels", kMasterName});
          auto reps = s->command({"SENTINEL", "replicas", kMasterName});
          return peers.ok() && reps.ok() &&
                 (!await_peers ||
                  count_lines_starting(*peers, "name") == sentinels - 1) &&
                 count_lines_starting(*reps, "name") == replicas;
        },
        std::chrono::seconds(20), "the sentinels to find each other"));
  }
  return g;
}

std::string SentinelGroup::url() const {
  std::string hosts;
  for (const auto& s : sentinels_) {
    if (!hosts.empty()) hosts += ',';
    hosts += "127.0.0.1:" + std::to_string(s->port());
  }
  return "redis+sentinel://" + hosts + "/" + kMasterName + "/0";
}

absl::StatusOr<std::size_t> SentinelGroup::master_index() const {
  for (const auto& s : sentinels_) {
    if (s->pid() <= 0) continue;
    auto addr = s->command({"SENTINEL", "get-master-addr-by-name", kMasterName});
    if (!addr.ok()) continue;
    const std::string port = addr->substr(addr->find('\n') + 1);
    for (std::size_t i = 0; i < servers_.size(); ++i) {
      if (std::to_string(servers_[i]->port()) == port) return i;
    }
  }
  return absl::UnavailableError("no sentinel names a known master");
}

absl::StatusOr<std::size_t> SentinelGroup::await_new_master(
    std::size_t old_index, std::chrono::milliseconds timeout) {
  std::size_t found = old_index;
  FLEET_TEST_RETURN_IF_ERROR(wait_until(
      [&] {
        auto m = master_index();
        if (!m.ok() || *m == old_index) return false;
        auto role = servers_[*m]->command({"ROLE"});
        if (!role.ok() || role->rfind("master", 0) != 0) return false;
        found = *m;
        return true;
      },
      timeout, "a new master"));
  return found;
}

absl::StatusOr<std::size_t> SentinelGroup::failover(std::chrono::milliseconds timeout) {
  auto old = master_index();
  if (!old.ok()) return old.status();
  auto st = sentinels_[0]->command({"SENTINEL", "FAILOVER", kMasterName});
  if (!st.ok()) return st.status();
  return await_new_master(*old, timeout);
}

absl::Status SentinelGroup::await_a_replica(std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        auto m = master_index();
        if (!m.ok()) return false;
        auto info = servers_[*m]->command({"INFO", "replication"});
        return info.ok() && info->find("role:master") != std::string::npos &&
               info->find("state=online") != std::string::npos;
      },
      timeout, "a replica of the new master");
}

absl::Status SentinelGroup::await_replicas(std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        auto m = master_index();
        const std::size_t mi = m.ok() ? *m : 0;
        // The master's own view first: a replica may still say "up" about
        // a master that was just killed and restarted on the same port.
        auto own = servers_[mi]->command({"INFO", "replication"});
        if (!own.ok()) return false;
        std::size_t online = 0, live = 0;
        for (std::size_t p = 0; (p = own->find("state=online", p)) != std::string::npos;
             ++p) {
          ++online;
        }
        for (std::size_t i = 0; i < servers_.size(); ++i) {
          if (i != mi && servers_[i]->pid() > 0) ++live;
        }
        if (online != live) return false;
        // "online" comes a moment before a fresh replica acknowledges
        // writes (WAIT): wait for that too.
        auto acked = servers_[mi]->commands({{"INCR", "fleet-test:replication-probe"},
                                             {"WAIT", std::to_string(live), "100"}});
        if (!acked.ok() || *acked != std::to_string(live)) return false;
        for (std::size_t i = 0; i < servers_.size(); ++i) {
          if (i == mi || servers_[i]->pid() <= 0) continue;
          auto info = servers_[i]->command({"INFO", "replication"});
          if (!info.ok() || info->find("master_link_status:up") == std::string::npos ||
              info->find("master_port:" + std::to_string(servers_[mi]->port())) ==
                  std::string::npos) {
            return false;
          }
        }
        return true;
      },
      timeout, "the replicas to sync");
}

}  // namespace fleet::testing
