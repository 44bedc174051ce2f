#include "catch.hpp"
#include "redis/cluster.hpp"
#include "redis/url.hpp"

namespace fleet::testing {
namespace {

using internal::key_slot;
using internal::parse_redis_url;

TEST_CASE("redis:// URLs parse into host, port, db and credentials", "[url]") {
  auto ep = parse_redis_url("redis://127.0.0.1:6380/3");
  REQUIRE(ep.ok());
  CHECK(ep->host == "127.0.0.1");
  CHECK(ep->port == 6380);
  CHECK(ep->db == 3);
  CHECK(ep->user.empty());
  CHECK_FALSE(ep->password.has_value());

  ep = parse_redis_url("redis://localhost");
  REQUIRE(ep.ok());
  CHECK(ep->port == 6379);
  CHECK(ep->db == 0);

  ep = parse_redis_url("redis://alice:p%40ss:w0rd@db.example:7000/1");
  REQUIRE(ep.ok());
  CHECK(ep->user == "alice");
  CHECK(*ep->password == "p@ss:w0rd");
  CHECK(ep->host == "db.example");
  CHECK(ep->redacted() == "redis://alice:***@db.example:7000/1");

  ep = parse_redis_url("redis://:secret@[::1]:6379");
  REQUIRE(ep.ok());
  CHECK(ep->user.empty());
  CHECK(*ep->password == "secret");
  CHECK(ep->host == "::1");
  CHECK(ep->redacted() == "redis://:***@[::1]:6379/0");
  CHECK_FALSE(ep->tls);
}

TEST_CASE("rediss:// URLs are redis:// URLs that ask for TLS", "[url]") {
  auto ep = parse_redis_url("rediss://bob:hunter2@cache.internal:6380/4");
  REQUIRE(ep.ok());
  CHECK(ep->tls);
  CHECK(ep->host == "cache.internal");
  CHECK(ep->port == 6380);
  CHECK(ep->db == 4);
  CHECK(ep->user == "bob");
  CHECK(ep->redacted() == "rediss://bob:***@cache.internal:6380/4");
  // The parse alone makes no TLS context: resolve_endpoint() does.
  CHECK(ep->tls_context == nullptr);
}

TEST_CASE("unix:// URLs take a socket path and an optional db", "[url]") {
  auto ep = parse_redis_url("unix:///run/redis/redis.sock?db=2");
  REQUIRE(ep.ok());
  CHECK(ep->unix_path == "/run/redis/redis.sock");
  CHECK(ep->db == 2);
  CHECK(ep->redacted() == "unix:///run/redis/redis.sock?db=2");
}

TEST_CASE("redis+sentinel:// URLs list the sentinels and name the master", "[url]") {
  auto ep = parse_redis_url(
      "redis+sentinel://alice:s3cret@10.0.0.1:26380,sentinel-b,[::1]:26381/mymaster/2");
  REQUIRE(ep.ok());
  CHECK(ep->uses_sentinel());
  REQUIRE(ep->seeds.size() == 3);
  CHECK(ep->seeds[0] == std::pair<std::string, int>("10.0.0.1", 26380));
  CHECK(ep->seeds[1] == std::pair<std::string, int>("sentinel-b", 26379));
  CHECK(ep->seeds[2] == std::pair<std::string, int>("::1", 26381));
  CHECK(ep->master_name == "mymaster");
  CHECK(ep->db == 2);
  CHECK(ep->user == "alice");
  CHECK(ep->password == std::optional<std::string>("s3cret"));
  CHECK(ep->redacted() ==
        "redis+sentinel://alice:***@10.0.0.1:26380,sentinel-b:26379,[::1]:26381/mymaster/"
        "2");

  ep = parse_redis_url("redis+sentinel://127.0.0.1:5000/cache");
  REQUIRE(ep.ok());
  CHECK(ep->db == 0);
  CHECK(ep->master_name == "cache");
  CHECK(!ep->password);
}

TEST_CASE("bad Sentinel URLs are InvalidArgument", "[url]") {
  for (const char* url :
       {"redis+sentinel://127.0.0.1:26379", "redis+sentinel://127.0.0.1:26379/",
        "redis+sentinel://h1,,h2/m", "redis+sentinel://h1:0/m",
        "redis+sentinel://:topsecret@h1:26379/m/notadb", "redis+sentinel://h1/ma%20ster",
        "rediss+sentinel://h1/m"}) {
    INFO(url);
    auto ep = parse_redis_url(url);
    REQUIRE(ep.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(ep.status().message()).find("secret") == std::string::npos);
  }
}

TEST_CASE("redis+cluster:// URLs list some of the cluster's nodes", "[url]") {
  auto ep = parse_redis_url("redis+cluster://:s3cret@10.0.0.1:7000,node-b,[::1]:7002");
  REQUIRE(ep.ok());
  CHECK(ep->uses_cluster());
  CHECK_FALSE(ep->uses_sentinel());
  REQUIRE(ep->seeds.size() == 3);
  CHECK(ep->seeds[0] == std::pair<std::string, int>("10.0.0.1", 7000));
  CHECK(ep->seeds[1] == std::pair<std::string, int>("node-b", 6379));
  CHECK(ep->seeds[2] == std::pair<std::string, int>("::1", 7002));
  CHECK(ep->db == 0);
  CHECK(ep->password == std::optional<std::string>("s3cret"));
  CHECK(ep->redacted() == "redis+cluster://:***@10.0.0.1:7000,node-b:6379,[::1]:7002");
  CHECK(parse_redis_url("redis+cluster://h1:7000/0").ok());

  for (const char* url :
       {"redis+cluster://h1:7000/1", "redis+cluster://h1,,h2",
        "redis+cluster://:topsecret@h1:0", "rediss+cluster://h1:7000"}) {
    INFO(url);
    auto bad = parse_redis_url(url);
    REQUIRE(bad.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(bad.status().message()).find("secret") == std::string::npos);
  }
}

TEST_CASE("hash slots are computed as Redis Cluster computes them", "[url]") {
  // Figures from the Cluster specification and from CLUSTER KEYSLOT.
  CHECK(key_slot("123456789") == 0x31C3 % 16384);
  CHECK(key_slot("somekey") == 11058);
  CHECK(key_slot("foo{hash_tag}") == 2515);
  CHECK(key_slot("bar{hash_tag}") == 2515);
  CHECK(key_slot("{user1000}.following") == key_slot("user1000"));
  CHECK(key_slot("foo{{bar}}zap") == key_slot("{bar"));
  CHECK(key_slot("{}x") != key_slot("x"));  // an empty tag: the whole key
  CHECK(key_slot("fleet:{default}:sessions") == key_slot("default"));
}

TEST_CASE("bad URLs are InvalidArgument and never echo the password", "[url]") {
  for (const char* url :
       {"http://localhost", "redis://", "redis://host:0", "redis://host:99999",
        "redis://host:port", "redis://host/notadb", "redis://:topsecret@host:12x",
        "rediss://", "rediss://:topsecret@", "unix://relative.sock",
        "unix:///s.sock?foo=1", "redis://u:bad%zzsecret@host", "redis://[::1"}) {
    INFO(url);
    auto ep = parse_redis_url(url);
    REQUIRE(ep.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(std::string(ep.status().message()).find("secret") == std::string::npos);
  }
}

}  // namespace
}  // namespace fleet::testing
