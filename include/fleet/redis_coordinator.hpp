// fleet::RedisCoordinator — the Coordinator contract on a real Redis.
//
// Separate processes on separate machines become one fleet by pointing at
// the same Redis and namespace. Every coordination decision is one atomic
// Lua script run with EVALSHA: one round trip, no client-side lock.
// Liveness is decided by Redis server time (TIME inside the scripts), never
// by comparing client clocks.
//
//   fleet::RedisOptions options;
//   options.url = "redis://127.0.0.1:6379/0";    // password: FLEET_REDIS_PASSWORD
//   options.namespace_name = "sfu-eu";
//   auto coordinator = fleet::create_coordinator(options);
//   if (!coordinator.ok()) return coordinator.status();   // Unavailable, ...
//   (*coordinator)->join(me);
//
// Threads: besides the caller's threads, each RedisCoordinator runs one
// agent thread on a connection of its own (heartbeat, expiry sweep,
// recovery after faults), one pub/sub thread on a dedicated connection, and
// one event thread for callbacks.
// Keys are listed in docs/redis-keys.md.
#ifndef FLEET_REDIS_COORDINATOR_HPP_
#define FLEET_REDIS_COORDINATOR_HPP_

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "fleet/clock.hpp"
#include "fleet/coordinator.hpp"
#include "fleet/log.hpp"

namespace fleet {

// TLS to Redis, for rediss:// URLs. Needs a fleet built with TLS (hiredis
// 1.x with hiredis_ssl, and OpenSSL: see tls_supported()). The server's
// certificate chain and its name are verified by default.
struct RedisTlsOptions {
  // PEM file of the CAs to trust, and/or a directory of them (OpenSSL's
  // c_rehash layout). Both empty: the system's default trust store.
  std::string ca_file;
  std::string ca_dir;
  // Client certificate and its private key (PEM), for servers that require
  // one (tls-auth-clients yes). Both or neither.
  std::string cert_file;
  std::string key_file;
  // The name the server's certificate must carry (a DNS name or an IP
  // address), also sent as SNI. Empty: the URL's host.
  std::string server_name;
  // false skips every check of the server's certificate: the connection is
  // encrypted but anyone can pretend to be Redis. For tests only.
  bool verify_peer = true;
};

// Whether this build of fleet can connect with TLS (rediss://).
bool tls_supported();

struct RedisOptions {
  // redis://[user:password@]host:port/db, rediss://... (TLS, see tls),
  // unix:///path/to/socket?db=N, or for Redis Sentinel
  // redis+sentinel://[user:password@]host1:port1,host2:port2/master-name[/db]
  // (the sentinels, default port 26379; the credentials are the master's).
  // Default port 6379, default db 0. The password is never logged.
  std::string url = "redis://127.0.0.1:6379/0";
  // For rediss:// URLs; setting any of it with another scheme is an
  // InvalidArgument (a forgotten 's' must not mean plain text).
  RedisTlsOptions tls;
  // Used when the URL carries no password. Default (nullopt): the
  // environment variable FLEET_REDIS_PASSWORD, if set.
  std::optional<std::string> password;
  // redis+sentinel:// only: the password of the sentinels themselves.
  // Default (nullopt): FLEET_SENTINEL_PASSWORD if set, else none.
  std::optional<std::string> sentinel_password;

  // How many replicas must confirm (Redis WAIT) a lock grant, a lease
  // renewal or a claim before it is reported: what a replica has survives
  // a failover. Default (nullopt): with redis+sentinel://, every replica
  // the sentinels last saw healthy, at least one (none: Unavailable);
  // otherwise one while the master has a connected replica (checked every
  // heartbeat), none when it has none.
  // 0 turns it off.
  // A grant or claim not confirmed within replica_ack_timeout is undone and
  // reported as Unavailable (see docs/deployment.md).
  std::optional<int> replica_acks;
  // Capped at half of command_timeout.
  std::chrono::milliseconds replica_ack_timeout{250};

  // Keys live under fleet:{<namespace_name>}: — the braces are a Redis
  // Cluster hash tag, so every key of a namespace is in one slot. A name
  // (see names.hpp) without '{' or '}'.
  std::string namespace_name = "default";

  // 0 is not allowed for any of these durations.
  std::chrono::milliseconds connect_timeout{1000};  // per connection attempt
  std::chrono::milliseconds command_timeout{1000};  // per command round trip
  std::chrono::milliseconds heartbeat_interval{1000};
  // How long this session's membership, node views and owned counter
  // contributions outlive its last heartbeat. Must exceed
  // heartbeat_interval; three intervals or more is wise.
  std::chrono::milliseconds session_ttl{5000};

  // Connections for commands (pub/sub has its own). 1 to 64.
  int pool_size = 4;

  // Reconnection backoff: doubles from min to max, with jitter. The
  // heartbeat's own connection retries at least every heartbeat_interval,
  // and once it gets through the other connections retry at once.
  std::chrono::milliseconds reconnect_backoff_min{50};
  std::chrono::milliseconds reconnect_backoff_max{2000};

  // After Redis lost its data (a restart without persistence), how long no
  // slot is granted (acquire_slot: Unavailable), counted from the moment
  // the first session noticed: time for every live session to take back
  // the slots it holds before anyone takes new ones, so that no target goes
  // over capacity. Sessions notice within one heartbeat_interval of Redis
  // being back. Zero: no grace. Default (nullopt): 2 * heartbeat_interval.
  std::optional<std::chrono::milliseconds> data_loss_grace;

  // For create_coordinator(): when Redis cannot be reached, return an
  // in-process LocalCoordinator (with a warning line) instead of Unavailable.
  bool fallback_to_local = false;

  // Measures timeouts, backoff and lease estimates (liveness itself is
  // Redis server time). Default: real_clock().
  Clock* clock = nullptr;
  LogSink* log_sink = nullptr;  // Default: stderr_log_sink().
  LogLevel log_level = LogLevel::kInfo;
};

class RedisCoordinator {
 public:
  // Connects, authenticates, loads the scripts and starts the session.
  // InvalidArgument for bad options or URL, for rediss:// on a build
  // without TLS, and for TLS files that cannot be read or do not match;
  // Unavailable when Redis cannot be reached within connect_timeout (a TLS
  // handshake that fails for want of a TLS port, say), when the server
  // accepts the connection but does not answer within command_timeout, or
  // answers with something that is not RESP (the message names the URL,
  // password redacted, and which of these it was); Unauthenticated for
  // a wrong password, a server certificate that fails verification, or a
  // client certificate the server requires and did not get;
  // PermissionDenied when the ACL user may not run what fleet needs.
  static absl::StatusOr<std::unique_ptr<Coordinator>> connect(
      const RedisOptions& options);
};

// RedisCoordinator::connect(), or — when options.fallback_to_local is set
// and Redis is unreachable (Unavailable above: a stalled or non-Redis
// server too) — a LocalCoordinator with the same session_ttl,
// clock and log sink, after logging a warning. Errors other than
// Unavailable (bad URL, wrong password) are returned in both cases.
absl::StatusOr<std::unique_ptr<Coordinator>> create_coordinator(
    const RedisOptions& options);

}  // namespace fleet

#endif  // FLEET_REDIS_COORDINATOR_HPP_
