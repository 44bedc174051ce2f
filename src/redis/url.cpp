#include "redis/url.hpp"

#include <charconv>
#include <cstdlib>

#include "fmt/format.h"
#include "internal/parse.hpp"
#include "internal/validate.hpp"
#include "redis/cluster.hpp"
#include "redis/sentinel.hpp"
#include "redis/tls.hpp"

namespace fleet::internal {
namespace {

// %XX decoding for user and password, which may hold ':' or '@'.
std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    int v = 0;
    if (i + 2 >= s.size()) return std::nullopt;  // needs two hex digits
    auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (ec != std::errc() || end != s.data() + i + 3) return std::nullopt;
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return out;
}

absl::Status bad(std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("invalid Redis URL: {}", what));
}

// host[:port] or [ipv6][:port]; *port keeps its default when absent.
absl::Status parse_host_port(std::string_view rest, std::string* host_out,
                             int* port_out) {
  std::string_view host = rest, port;
  if (!rest.empty() && rest[0] == '[') {  // [ipv6]:port
    auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("unterminated [ in the host");
    host = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("junk after the IPv6 address");
      port = after.substr(1);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) return bad("the host is empty");
  if (!port.empty() && !parse_port(port, port_out)) {
    return bad("the port must be a number from 1 to 65535");
  }
  *host_out = std::string(host);
  return absl::OkStatus();
}

}  // namespace

std::string RedisEndpoint::redacted() const {
  std::string auth;
  if (!user.empty() || password) {
    auth = fmt::format("{}{}@", user, password ? ":***" : "");
  }
  if (uses_sentinel() || (uses_cluster() && !seeds.empty())) {
    std::string hosts;
    for (const auto& [h, p] : seeds) {
      if (!hosts.empty()) hosts += ',';
      hosts += HostPort{h, p}.str();
    }
    if (uses_cluster()) return fmt::format("redis+cluster://{}{}", auth, hosts);
    return fmt::format("redis+sentinel://{}{}/{}/{}", auth, hosts, master_name, db);
  }
  if (!unix_path.empty()) return fmt::format("unix://{}{}?db={}", auth, unix_path, db);
  // An IPv6 address goes back in brackets, as it came.
  const bool v6 = host.find(':') != std::string::npos;
  return fmt::format("{}://{}{}{}{}:{}/{}", tls ? "rediss" : "redis", auth, v6 ? "[" : "",
                     host, v6 ? "]" : "", port, db);
}

void resolve_password(RedisEndpoint* ep, const std::optional<std::string>& fallback) {
  if (ep->password) return;
  if (fallback) {
    ep->password = *fallback;
  } else if (const char* env = std::getenv("FLEET_REDIS_PASSWORD"); env && *env) {
    ep->password = std::string(env);
  }
}

absl::StatusOr<RedisEndpoint> parse_redis_url(std::string_view url) {
  RedisEndpoint ep;
  constexpr std::string_view kRedis = "redis://", kRediss = "rediss://",
                             kUnix = "unix://";
  if (url.substr(0, kUnix.size()) == kUnix) {
    std::string_view rest = url.substr(kUnix.size());
    std::string_view query;
    if (auto q = rest.find('?'); q != std::string_view::npos) {
      query = rest.substr(q + 1);
      rest = rest.substr(0, q);
    }
    if (rest.empty() || rest[0] != '/')
      return bad("unix:// needs an absolute socket path");
    ep.unix_path = std::string(rest);
    if (!query.empty()) {
      if (query.substr(0, 3) != "db=" ||
          !parse_int_in(query.substr(3), 0, 1 << 20, &ep.db)) {
        return bad("unix:// accepts only the query ?db=N");
      }
    }
    return ep;
  }
  std::string_view rest;
  bool sentinel = false;
  constexpr std::string_view kSentinel = "redis+sentinel://",
                             kCluster = "redis+cluster://";
  if (url.substr(0, kRedis.size()) == kRedis) {
    rest = url.substr(kRedis.size());
  } else if (url.substr(0, kSentinel.size()) == kSentinel) {
    rest = url.substr(kSentinel.size());
    sentinel = true;
  } else if (url.substr(0, kCluster.size()) == kCluster) {
    rest = url.substr(kCluster.size());
    ep.cluster = true;
  } else if (url.substr(0, 17) == "rediss+sentinel:/") {
    return bad("TLS with Sentinel (rediss+sentinel://) is not supported");
  } else if (url.substr(0, 16) == "rediss+cluster:/") {
    return bad("TLS with Redis Cluster (rediss+cluster://) is not supported");
  } else if (url.substr(0, kRediss.size()) == kRediss) {
    rest = url.substr(kRediss.size());
    ep.tls = true;
  } else {
    return bad(
        "the scheme must be redis://, rediss://, redis+sentinel://, redis+cluster:// or "
        "unix://");
  }
  std::string_view path;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  // The last '@' ends the credentials: a password may contain '@'.
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    std::string_view user = cred, pass;
    bool has_pass = false;
    if (auto colon = cred.find(':'); colon != std::string_view::npos) {
      user = cred.substr(0, colon);
      pass = cred.substr(colon + 1);
      has_pass = true;
    }
    auto u = percent_decode(user);
    if (!u) return bad("malformed %-escape in the user name");
    ep.user = *u;
    if (has_pass) {
      auto p = percent_decode(pass);
      if (!p) return bad("malformed %-escape in the password");
      ep.password = *p;
    }
  }
  if (sentinel || ep.cluster) {
    // host1:port1,host2:port2
    std::string_view hosts = rest;
    while (true) {
      auto comma = hosts.find(',');
      std::string h;
      int port = sentinel ? 26379 : 6379;
      FLEET_RETURN_IF_ERROR(parse_host_port(hosts.substr(0, comma), &h, &port));
      ep.seeds.emplace_back(std::move(h), port);
      if (comma == std::string_view::npos) break;
      hosts.remove_prefix(comma + 1);
    }
  }
  if (ep.cluster) {
    if (!path.empty() && path != "0") {
      return bad("Redis Cluster has database 0 only: drop the path or make it /0");
    }
    return ep;
  }
  if (sentinel) {
    // .../master[/db]
    std::string_view name = path, db;
    if (auto slash = path.find('/'); slash != std::string_view::npos) {
      name = path.substr(0, slash);
      db = path.substr(slash + 1);
    }
    if (name.empty()) return bad("redis+sentinel:// needs the master's name as its path");
    for (char c : name) {
      if (static_cast<unsigned char>(c) <= ' ' || c == '%' || c == '/') {
        return bad("the master's name has a space, control character, '%' or '/'");
      }
    }
    ep.master_name = std::string(name);
    if (!db.empty() && !parse_int_in(db, 0, 1 << 20, &ep.db)) {
      return bad("the path after the master's name must be a database number");
    }
    return ep;
  }
  FLEET_RETURN_IF_ERROR(parse_host_port(rest, &ep.host, &ep.port));
  if (!path.empty() && !parse_int_in(path, 0, 1 << 20, &ep.db)) {
    return bad("the path must be a database number");
  }
  return ep;
}

absl::StatusOr<RedisEndpoint> resolve_endpoint(
    std::string_view url, const std::optional<std::string>& password,
    const RedisTlsOptions& tls, const std::optional<std::string>& sentinel_password,
    std::chrono::milliseconds sentinel_timeout, std::string_view namespace_name) {
  auto ep = parse_redis_url(url);
  if (!ep.ok()) return ep.status();
  resolve_password(&*ep, password);
  if (ep->uses_sentinel()) {
    SentinelDirectory::Options so;
    for (const auto& [h, p] : ep->seeds) so.sentinels.push_back(HostPort{h, p});
    so.master_name = ep->master_name;
    if (sentinel_password) {
      so.password = *sentinel_password;
    } else if (const char* env = std::getenv("FLEET_SENTINEL_PASSWORD"); env && *env) {
      so.password = std::string(env);
    }
    so.connect_timeout = sentinel_timeout;
    so.command_timeout = sentinel_timeout;
    ep->directory = std::make_shared<SentinelDirectory>(std::move(so));
  }
  if (ep->uses_cluster()) {
    ClusterDirectory::Options co;
    for (const auto& [h, p] : ep->seeds) co.seeds.push_back(HostPort{h, p});
    // The namespace's keys are fleet:{<namespace>}:...
    co.slot = key_slot("{" + std::string(namespace_name) + "}");
    co.user = ep->user;
    co.password = ep->password;
    co.connect_timeout = sentinel_timeout;
    co.command_timeout = sentinel_timeout;
    ep->directory = std::make_shared<ClusterDirectory>(std::move(co));
  }
  if (ep->tls) {
    auto context = TlsContext::create(tls, ep->host);
    if (!context.ok()) return context.status();
    ep->tls_context = *std::move(context);
  } else if (!tls.ca_file.empty() || !tls.ca_dir.empty() || !tls.cert_file.empty() ||
             !tls.key_file.empty() || !tls.server_name.empty() || !tls.verify_peer) {
    return absl::InvalidArgumentError(
        "TLS options are set but the Redis URL is not rediss://: the connection would "
        "not "
        "be encrypted");
  }
  return ep;
}

}  // namespace fleet::internal
