#include "redis/cluster.hpp"

#include <algorithm>

#include "fmt/format.h"
#include "redis/connection.hpp"
#include "redis/sigpipe.hpp"

namespace fleet::internal {
namespace {

// How often the watcher asks anyway (failovers and migrations that no
// MOVED has shown yet).
constexpr std::chrono::milliseconds kAskEvery{1000};

// CRC16/XMODEM (polynomial 0x1021, initial value 0), as the Cluster
// specification names it; bitwise, as slots are computed once per session.
std::uint16_t crc16(std::string_view data) {
  std::uint32_t crc = 0;
  for (unsigned char byte : data) {
    crc ^= static_cast<std::uint32_t>(byte) << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1;
    }
    crc &= 0xffff;
  }
  return static_cast<std::uint16_t>(crc);
}

}  // namespace

int key_slot(std::string_view key) {
  // The hash tag: what lies between the first '{' and the first '}' after
  // it, when that is not empty.
  if (auto open = key.find('{'); open != std::string_view::npos) {
    auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return crc16(key) % kClusterSlots;
}

ClusterDirectory::ClusterDirectory(Options options)
    : options_(std::move(options)), nodes_(options_.seeds) {}

ClusterDirectory::~ClusterDirectory() { stop_watch(); }

std::string ClusterDirectory::subject() const {
  return fmt::format("Redis Cluster: slot {}", options_.slot);
}

absl::StatusOr<MasterDirectory::Answer> ClusterDirectory::ask_node(RedisConnection& conn,
                                                                   const HostPort& node) {
  auto reply = conn.command({"CLUSTER", "SLOTS"});
  if (!reply.ok()) return reply.status();
  if (reply->is_error()) {
    if (reply->str.find("cluster support disabled") != std::string::npos) {
      return absl::InvalidArgumentError(fmt::format(
          "{} is not a Redis Cluster node (redis+cluster:// needs cluster-enabled yes; "
          "use redis:// for a single server)",
          node.str()));
    }
    return status_from_error(reply->str);
  }
  if (reply->type != Reply::Type::kArray) {
    return absl::DataLossError("malformed CLUSTER SLOTS reply");
  }
  // [[start, end, [ip, port, id, ...] (master), [ip, port, ...] (replicas)...], ...]
  auto address = [&node](const Reply& n, HostPort* out) {
    if (n.type != Reply::Type::kArray || n.elements.size() < 2 ||
        n.elements[1].type != Reply::Type::kInteger || n.elements[1].integer < 1 ||
        n.elements[1].integer > 65535) {
      return false;
    }
    // An unknown endpoint ("" or "?") is the node we asked.
    const std::string& ip = n.elements[0].str;
    out->host = ip.empty() || ip == "?" ? node.host : ip;
    out->port = static_cast<int>(n.elements[1].integer);
    return true;
  };
  std::optional<HostPort> master;
  int replicas = 0;
  for (const Reply& range : reply->elements) {
    if (range.type != Reply::Type::kArray || range.elements.size() < 3) continue;
    for (std::size_t i = 2; i < range.elements.size(); ++i) {
      HostPort a;
      if (address(range.elements[i], &a) &&
          std::find(nodes_.begin(), nodes_.end(), a) == nodes_.end()) {
        nodes_.push_back(a);
      }
    }
    const long long from = range.elements[0].integer, to = range.elements[1].integer;
    if (from <= options_.slot && options_.slot <= to) {
      HostPort a;
      if (!address(range.elements[2], &a)) {
        return absl::DataLossError("malformed CLUSTER SLOTS reply");
      }
      master = a;
      replicas = static_cast<int>(range.elements.size()) - 3;
    }
  }
  if (!master) {
    return absl::UnavailableError(fmt::format(
        "no node of the cluster serves slot {} (asked {}; the cluster may be down or "
        "still being set up)",
        options_.slot, node.str()));
  }
  return Answer{*master, replicas};
}

absl::StatusOr<MasterDirectory::Answer> ClusterDirectory::ask() {
  std::string failures;
  // The connection kept from last time first, then every node known.
  if (probe_ && !probe_->broken()) {
    auto a = ask_node(*probe_, probe_addr_);
    if (a.ok()) return a;
    probe_.reset();
  }
  std::vector<HostPort> order = nodes_;
  for (const HostPort& n : order) {
    RedisEndpoint ep;
    ep.host = n.host;
    ep.port = n.port;
    ep.user = options_.user;
    ep.password = options_.password;
    auto conn =
        RedisConnection::open(ep, {options_.connect_timeout, options_.command_timeout});
    absl::StatusOr<Answer> a =
        conn.ok() ? ask_node(**conn, n) : absl::StatusOr<Answer>(conn.status());
    if (a.ok()) {
      probe_ = *std::move(conn);
      probe_addr_ = n;
      return a;
    }
    const auto code = a.status().code();
    if (code == absl::StatusCode::kInvalidArgument ||
        code == absl::StatusCode::kUnauthenticated ||
        code == absl::StatusCode::kPermissionDenied) {
      return a.status();
    }
    failures += fmt::format("{}{}: {}", failures.empty() ? "" : "; ", n.str(),
                            std::string(a.status().message()));
  }
  return absl::UnavailableError(fmt::format(
      "no node of the Redis Cluster answered for slot {} ({})", options_.slot, failures));
}

void ClusterDirectory::watch_loop() {
  block_sigpipe_for_this_thread();
  while (!stopping()) {
    pause(kAskEvery);
    if (stopping()) break;
    ask_and_learn("the cluster's slot map");
  }
}

}  // namespace fleet::internal
