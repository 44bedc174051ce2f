// Parses fleet's Redis URLs. The password is kept out of every string this
// module produces except the AUTH command itself.
#ifndef FLEET_SRC_REDIS_URL_HPP_
#define FLEET_SRC_REDIS_URL_HPP_

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "fleet/redis_coordinator.hpp"

namespace fleet::internal {

class TlsContext;
class MasterDirectory;

struct RedisEndpoint {
  std::string host;  // empty for unix sockets
  int port = 6379;
  std::string unix_path;  // set for unix:// URLs
  int db = 0;
  std::string user;  // empty: the default user
  std::optional<std::string> password;
  bool tls = false;  // rediss://
  // Set by resolve_endpoint() for rediss:// URLs.
  std::shared_ptr<const TlsContext> tls_context;
  // redis+sentinel:// URLs: the sentinels (host:port each) and the name of
  // the master they monitor; redis+cluster:// URLs: some of the cluster's
  // nodes. Host and port above are unused then. The directory (set by
  // resolve_endpoint()) says where the master is now.
  std::vector<std::pair<std::string, int>> seeds;
  std::string master_name;
  bool cluster = false;
  std::shared_ptr<MasterDirectory> directory;

  bool uses_sentinel() const { return !master_name.empty(); }
  bool uses_cluster() const { return cluster; }

  // The URL with the password replaced by "***": safe to log.
  std::string redacted() const;
};

// redis[s]://[[user]:password@]host[:port][/db], unix:///path[?db=N], or
// redis+sentinel://[[user]:password@]host1[:port1][,host2[:port2]...]/master[/db]
// (sentinel port default 26379; the credentials are the master's), or
// redis+cluster://[[user]:password@]host1[:port1][,host2[:port2]...][/0]
// (some nodes of a Redis Cluster; port default 6379; database 0 only).
// Errors are InvalidArgument and never quote the password.
absl::StatusOr<RedisEndpoint> parse_redis_url(std::string_view url);

// Where the URL has no password: `fallback` if set, else the environment
// variable FLEET_REDIS_PASSWORD if set and non-empty.
void resolve_password(RedisEndpoint* ep, const std::optional<std::string>& fallback);

// parse_redis_url(), resolve_password(), for redis+sentinel:// the
// SentinelDirectory (credentials for the sentinels themselves:
// `sentinel_password`, else FLEET_SENTINEL_PASSWORD; none by default), for
// redis+cluster:// the ClusterDirectory of the slot of `namespace_name`'s
// hash tag, and for rediss://
// the TLS context (loading its files: InvalidArgument when one cannot be used, or when
// the build has no TLS). TLS options with a URL that is not rediss:// are an
// InvalidArgument too.
absl::StatusOr<RedisEndpoint> resolve_endpoint(
    std::string_view url, const std::optional<std::string>& password,
    const RedisTlsOptions& tls, const std::optional<std::string>& sentinel_password = {},
    std::chrono::milliseconds sentinel_timeout = std::chrono::milliseconds(1000),
    std::string_view namespace_name = "default");

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_URL_HPP_
