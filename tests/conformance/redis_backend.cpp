// The conformance suite on RedisCoordinator, against a real redis-server
// started by the harness. Short TTLs; time passes for real (advance sleeps),
// since liveness is Redis server time. With FLEET_TEST_TLS set (the
// conformance_redis_tls executable) every session speaks TLS to the
// server's TLS port, its certificate verified against the test CA.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <thread>

#include "backend.hpp"
#include "fault_proxy.hpp"
#include "fleet/redis_coordinator.hpp"
#include "redis_cluster.hpp"
#include "redis_server.hpp"
#include "sentinel_group.hpp"
#include "test_pki.hpp"

namespace fleet::testing {
namespace {

// FLEET_TEST_SENTINEL (the conformance_redis_sentinel executable): every
// session finds the master through three sentinels; the master has two
// replicas, and grants and claims wait for one (WAIT).
bool use_sentinel() {
  const char* env = std::getenv("FLEET_TEST_SENTINEL");
  return env != nullptr && *env != '\0';
}

// FLEET_TEST_CLUSTER (the conformance_redis_cluster executable): every
// session goes through a 3-master Redis Cluster (no replicas); the
// namespaces of the cases spread over the three.
bool use_cluster() {
  const char* env = std::getenv("FLEET_TEST_CLUSTER");
  return env != nullptr && *env != '\0';
}

RedisCluster& shared_cluster() {
  static std::unique_ptr<RedisCluster> cluster = [] {
    auto c = RedisCluster::start(3);
    if (!c.ok()) {
      std::fprintf(stderr, "FATAL: cannot start the Redis Cluster: %s\n",
                   c.status().ToString().c_str());
      std::abort();
    }
    return *std::move(c);
  }();
  return *cluster;
}

SentinelGroup& shared_group() {
  static std::unique_ptr<SentinelGroup> group = [] {
    // No failover here: the sentinels need not know each other.
    auto g = SentinelGroup::start(2, 3, std::chrono::milliseconds(1000), false);
    if (!g.ok()) {
      std::fprintf(stderr, "FATAL: cannot start the Sentinel group: %s\n",
                   g.status().ToString().c_str());
      std::abort();
    }
    return *std::move(g);
  }();
  return *group;
}

// The server that is the master now (of the namespace's slot, in a cluster).
RedisServer& master_server(const std::string& ns) {
  if (use_cluster()) {
    auto slot = shared_cluster().key_slot("{" + ns + "}");
    auto owner = slot.ok() ? shared_cluster().owner_of(*slot) : slot.status();
    if (!owner.ok()) std::abort();
    return shared_cluster().node(*owner);
  }
  if (!use_sentinel()) return shared_redis_server();
  auto m = shared_group().master_index();
  if (!m.ok()) std::abort();
  return shared_group().server(*m);
}

class RedisBackend final : public Backend {
 public:
  RedisBackend() {
    static std::atomic<int> counter{0};
    namespace_ =
        "conformance-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  }
  std::unique_ptr<Coordinator> connect() override {
    return open(options(use_cluster()    ? shared_cluster().url()
                        : use_sentinel() ? shared_group().url()
                                         : shared_redis_url()));
  }
  std::unique_ptr<Coordinator> connect_cuttable() override {
    // Through the proxy, TLS is end to end: the proxy only moves bytes.
    // With Sentinel, straight to the master through the proxy; in a
    // cluster, to the node serving the namespace (a redis:// URL naming a
    // cluster node: that node alone, sharded pub/sub).
    RedisServer& server = master_server(namespace_);
    auto proxy =
        FaultProxy::start(shared_redis_tls() ? server.tls_port() : server.port());
    if (!proxy.ok()) std::abort();
    const std::string scheme = shared_redis_tls() ? "rediss" : "redis";
    RedisOptions o =
        options(scheme + "://127.0.0.1:" + std::to_string((*proxy)->port()) + "/0");
    o.command_timeout = std::chrono::milliseconds(150);
    o.connect_timeout = std::chrono::milliseconds(150);
    o.reconnect_backoff_min = std::chrono::milliseconds(10);
    o.reconnect_backoff_max = std::chrono::milliseconds(100);
    auto c = open(o);
    proxies_[c.get()] = *std::move(proxy);
    return c;
  }
  void cut(Coordinator& c) override { proxies_.at(&c)->stall(true); }
  void heal(Coordinator& c) override { proxies_.at(&c)->stall(false); }
  void lose_data() override {
    RedisServer& server = master_server(namespace_);
    server.kill();
    if (!server.restart().ok()) std::abort();
    // The replicas resync from the empty master (they lose the data too).
    if (use_sentinel() && !shared_group().await_replicas(std::chrono::seconds(20)).ok())
      std::abort();
  }
  void advance(std::chrono::milliseconds d) override { std::this_thread::sleep_for(d); }
  std::chrono::milliseconds session_ttl() const override {
    return std::chrono::milliseconds(300);
  }
  std::chrono::milliseconds lease_ttl() const override {
    return std::chrono::milliseconds(300);
  }

 private:
  RedisOptions options(const std::string& url) const {
    RedisOptions o;
    o.url = url;
    if (shared_redis_tls()) o.tls.ca_file = shared_test_pki().ca_cert();
    o.namespace_name = namespace_;
    o.heartbeat_interval = std::chrono::milliseconds(100);
    o.session_ttl = std::chrono::milliseconds(300);
    o.log_sink = std::getenv("FLEET_TEST_LOG") ? stderr_log_sink() : quiet_log_sink();
    o.log_level = std::getenv("FLEET_TEST_LOG") ? LogLevel::kDebug : LogLevel::kInfo;
    return o;
  }
  static std::unique_ptr<Coordinator> open(const RedisOptions& o) {
    auto c = RedisCoordinator::connect(o);
    if (!c.ok()) {
      std::fprintf(stderr, "FATAL: RedisCoordinator::connect: %s\n",
                   c.status().ToString().c_str());
      std::abort();
    }
    return *std::move(c);
  }

  std::string namespace_;
  // One proxy per cuttable session, keyed by it. They live as long as the
  // backend, which a test declares before its sessions: the sessions go
  // first, then their proxies.
  std::map<const Coordinator*, std::unique_ptr<FaultProxy>> proxies_;
};

}  // namespace

std::unique_ptr<Backend> make_backend() { return std::make_unique<RedisBackend>(); }

}  // namespace fleet::testing
