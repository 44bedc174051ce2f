// fleetctl, run as a process against a namespace with known contents.
#include <unistd.h>

#include "fleet/redis_coordinator.hpp"
#include "nlohmann/json.hpp"
#include "process.hpp"
#include "redis_server.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

std::string run_fleetctl(const std::vector<std::string>& args, int* code) {
  Child c = spawn(FLEETCTL_BINARY, args);
  return finish(c, code, std::chrono::seconds(30));
}

TEST_CASE("fleetctl lists instances, nodes, counters, locks, leaders and maps",
          "[redis][fleetctl]") {
  const std::string url = shared_redis_server().url();
  const std::string ns = "ctl-" + std::to_string(::getpid());
  RedisOptions o;
  o.url = url;
  o.namespace_name = ns;
  o.log_sink = quiet_log_sink();
  auto c = unwrap(RedisCoordinator::connect(o));
  InstanceInfo me;
  me.id = "gw-1";
  me.hostname = "host-a";
  FLEET_REQUIRE_OK(c->join(me));
  FLEET_REQUIRE_OK(c->publish_node_state("gpu-1", {{"inflight", 3}}));
  FLEET_REQUIRE_OK(c->counter_add("requests", 42));
  FLEET_REQUIRE_OK(c->owned_counter_add("inflight", 5));
  auto lock = unwrap(c->try_lock("compaction", std::chrono::seconds(30)));
  REQUIRE(lock.has_value());
  auto lead = unwrap(c->campaign("primary", "10.0.0.1:80", std::chrono::seconds(30),
                                 std::chrono::milliseconds(0)));
  REQUIRE(lead.has_value());
  FLEET_REQUIRE_OK(c->put("rooms", "room-1", "gw-1"));

  int code = 0;
  std::string out =
      run_fleetctl({"--redis-url", url, "--namespace", ns, "instances"}, &code);
  CHECK(code == 0);
  CHECK(out.find("INSTANCE") == 0);
  CHECK(out.find("gw-1") != std::string::npos);
  CHECK(out.find("host-a") != std::string::npos);

  out =
      run_fleetctl({"--redis-url", url, "--namespace", ns, "counters", "--json"}, &code);
  CHECK(code == 0);
  auto counters = nlohmann::json::parse(out);
  REQUIRE(counters.size() == 2);
  CHECK(counters[0]["name"] == "requests");
  CHECK(counters[0]["value"] == 42);
  CHECK(counters[1]["name"] == "inflight");
  CHECK(counters[1]["kind"] == "owned");
  CHECK(counters[1]["value"] == 5);

  out = run_fleetctl({"--redis-url", url, "--namespace", ns, "locks", "--json"}, &code);
  auto locks = nlohmann::json::parse(out);
  REQUIRE(locks.size() == 1);
  CHECK(locks[0]["lock"] == "compaction");
  CHECK(locks[0]["fence"] == lock->fence);
  CHECK(locks[0]["owner"] == c->session_id());

  out = run_fleetctl({"--redis-url", url, "--namespace", ns, "leaders", "--json"}, &code);
  auto leaders = nlohmann::json::parse(out);
  REQUIRE(leaders.size() == 1);
  CHECK(leaders[0]["value"] == "10.0.0.1:80");

  out = run_fleetctl({"--redis-url", url, "--namespace", ns, "nodes", "--json"}, &code);
  auto nodes = nlohmann::json::parse(out);
  REQUIRE(nodes.size() == 1);
  CHECK(nodes[0]["metrics"]["inflight"]["sum"] == 3.0);

  out = run_fleetctl({"--redis-url", url, "--namespace", ns, "maps"}, &code);
  CHECK(out.find("rooms") != std::string::npos);

  // Bad usage and bad URLs: a clear error and a non-zero exit.
  run_fleetctl({"--redis-url", url, "bogus"}, &code);
  CHECK(code == 64);
  run_fleetctl({"--redis-url", "http://x", "maps"}, &code);
  CHECK(code == 64);
}

}  // namespace
}  // namespace fleet::testing
