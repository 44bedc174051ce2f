#include "redis_cluster.hpp"

#include <sstream>
#include <thread>

namespace fleet::testing {
namespace {

absl::Status expect_ok(const absl::StatusOr<std::string>& r, const std::string& what) {
  if (!r.ok()) return r.status();
  if (*r != "OK") return absl::InternalError(what + ": " + *r);
  return absl::OkStatus();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisCluster>> RedisCluster::start(int masters,
                                                                  int replicas_of_first) {
  std::unique_ptr<RedisCluster> c(new RedisCluster());
  c->masters_ = static_cast<std::size_t>(masters);
  for (int i = 0; i < masters + replicas_of_first; ++i) {
    RedisServer::Options o;
    o.cluster = true;
    auto n = RedisServer::start(std::move(o));
    if (!n.ok()) return n.status();
    auto id = (*n)->command({"CLUSTER", "MYID"});
    if (!id.ok()) return id.status();
    c->ids_.push_back(*id);
    c->nodes_.push_back(*std::move(n));
  }
  for (int i = 0; i < masters; ++i) {
    const int from = 16384 * i / masters, to = 16384 * (i + 1) / masters - 1;
    auto r = c->nodes_[i]->command(
        {"CLUSTER", "ADDSLOTSRANGE", std::to_string(from), std::to_string(to)});
    if (auto st = expect_ok(r, "CLUSTER ADDSLOTSRANGE"); !st.ok()) return st;
  }
  for (std::size_t i = 1; i < c->nodes_.size(); ++i) {
    auto r = c->nodes_[0]->command({"CLUSTER", "MEET", "127.0.0.1",
                                    std::to_string(c->nodes_[i]->port()),
                                    std::to_string(c->nodes_[i]->cluster_port())});
    if (auto st = expect_ok(r, "CLUSTER MEET"); !st.ok()) return st;
  }
  if (auto st = c->await_consistent(std::chrono::seconds(20)); !st.ok()) return st;
  for (std::size_t i = c->masters_; i < c->nodes_.size(); ++i) {
    auto r = c->nodes_[i]->command({"CLUSTER", "REPLICATE", c->ids_[0]});
    if (auto st = expect_ok(r, "CLUSTER REPLICATE"); !st.ok()) return st;
  }
  if (replicas_of_first > 0) {
    auto synced = wait_until(
        [&] {
          auto info = c->nodes_[0]->command({"INFO", "replication"});
          if (!info.ok()) return false;
          int online = 0;
          for (std::size_t p = 0;
               (p = info->find("state=online", p)) != std::string::npos; ++p) {
            ++online;
          }
          return online == replicas_of_first;
        },
        std::chrono::seconds(20), "the replicas to synchronise");
    if (!synced.ok()) return synced;
    if (auto st = c->await_consistent(std::chrono::seconds(20)); !st.ok()) return st;
    // CLUSTER SLOTS lists a replica once the others heard its offset.
    auto listed = wait_until(
        [&] {
          for (const auto& n : c->nodes_) {
            auto slots = n->command({"CLUSTER", "SLOTS"});
            if (!slots.ok()) return false;
            for (std::size_t i = c->masters_; i < c->nodes_.size(); ++i) {
              if (slots->find(std::to_string(c->nodes_[i]->port())) ==
                  std::string::npos) {
                return false;
              }
            }
          }
          return true;
        },
        std::chrono::seconds(20), "CLUSTER SLOTS to list the replicas");
    if (!listed.ok()) return listed;
  }
  return c;
}

absl::Status RedisCluster::await_consistent(std::chrono::milliseconds timeout) const {
  const std::string known = "cluster_known_nodes:" + std::to_string(nodes_.size());
  return wait_until(
      [&] {
        for (const auto& n : nodes_) {
          auto info = n->command({"CLUSTER", "INFO"});
          if (!info.ok() || info->find("cluster_state:ok") == std::string::npos ||
              info->find(known) == std::string::npos) {
            return false;
          }
        }
        return true;
      },
      timeout, "the cluster to agree (state ok, every node known)");
}

std::string RedisCluster::url() const {
  std::string u = "redis+cluster://";
  for (std::size_t i = 0; i < 2 && i < nodes_.size(); ++i) {
    if (i > 0) u += ',';
    u += "127.0.0.1:" + std::to_string(nodes_[i]->port());
  }
  return u;
}

absl::StatusOr<int> RedisCluster::key_slot(const std::string& key) const {
  auto r = nodes_.at(0)->command({"CLUSTER", "KEYSLOT", key});
  if (!r.ok()) return r.status();
  return std::stoi(*r);
}

absl::StatusOr<std::size_t> RedisCluster::owner_of(int slot) const {
  for (const auto& asked : nodes_) {
    // "CLUSTER NODES": <id> <ip:port@bus> <flags> <master> ... <slots...>
    auto text = asked->command({"CLUSTER", "NODES"});
    if (!text.ok()) continue;
    for (const std::string& line : lines(*text)) {
      std::istringstream in(line);
      std::vector<std::string> f;
      for (std::string w; in >> w;) f.push_back(w);
      if (f.size() < 9 || f[2].find("master") == std::string::npos) continue;
      for (std::size_t k = 8; k < f.size(); ++k) {
        if (f[k].front() == '[') continue;  // a migration in progress
        const auto dash = f[k].find('-');
        const int from = std::stoi(f[k].substr(0, dash));
        const int to =
            dash == std::string::npos ? from : std::stoi(f[k].substr(dash + 1));
        if (from <= slot && slot <= to) {
          for (std::size_t i = 0; i < ids_.size(); ++i) {
            if (ids_[i] == f[0]) return i;
          }
        }
      }
    }
    return absl::NotFoundError("no node serves slot " + std::to_string(slot));
  }
  return absl::UnavailableError("no node answered CLUSTER NODES");
}

absl::Status RedisCluster::migrate_slot(int slot, std::size_t to, int batch,
                                        const std::function<void()>& between) {
  auto from_index = owner_of(slot);
  if (!from_index.ok()) return from_index.status();
  RedisServer& src = *nodes_[*from_index];
  RedisServer& dst = *nodes_.at(to);
  const std::string s = std::to_string(slot);
  auto st =
      expect_ok(dst.command({"CLUSTER", "SETSLOT", s, "IMPORTING", ids_[*from_index]}),
                "SETSLOT IMPORTING");
  if (!st.ok()) return st;
  st = expect_ok(src.command({"CLUSTER", "SETSLOT", s, "MIGRATING", ids_[to]}),
                 "SETSLOT MIGRATING");
  if (!st.ok()) return st;
  for (;;) {
    auto keys = src.command({"CLUSTER", "GETKEYSINSLOT", s, std::to_string(batch)});
    if (!keys.ok()) return keys.status();
    auto names = lines(*keys);
    if (names.empty()) break;
    std::vector<std::string> argv = {
        "MIGRATE", "127.0.0.1", std::to_string(dst.port()), "", "0", "5000", "KEYS"};
    argv.insert(argv.end(), names.begin(), names.end());
    auto r = src.command(argv);
    if (!r.ok()) return r.status();
    if (*r != "OK" && *r != "NOKEY") return absl::InternalError("MIGRATE: " + *r);
    if (between) between();
  }
  // The new owner first, then the old one, then the rest (as redis-cli does).
  for (std::size_t i : {to, *from_index}) {
    st = expect_ok(nodes_[i]->command({"CLUSTER", "SETSLOT", s, "NODE", ids_[to]}),
                   "SETSLOT NODE");
    if (!st.ok()) return st;
  }
  for (std::size_t i = 0; i < masters_; ++i) {
    if (i == to || i == *from_index) continue;
    (void)nodes_[i]->command({"CLUSTER", "SETSLOT", s, "NODE", ids_[to]});
  }
  return wait_until(
      [&] {
        auto o = owner_of(slot);
        return o.ok() && *o == to;
      },
      std::chrono::seconds(10), "every node to see the slot moved");
}

absl::Status RedisCluster::failover(std::size_t replica,
                                    std::chrono::milliseconds timeout) {
  auto st =
      expect_ok(nodes_.at(replica)->command({"CLUSTER", "FAILOVER"}), "CLUSTER FAILOVER");
  if (!st.ok()) return st;
  st = wait_until(
      [&] {
        auto role = nodes_[replica]->command({"ROLE"});
        return role.ok() && role->rfind("master", 0) == 0;
      },
      timeout, "the replica to become a master");
  if (!st.ok()) return st;
  return await_consistent(timeout);
}

}  // namespace fleet::testing
