// fleet_peer: one instance of a fleet in its own process, for the
// two-process tests. Prints its results on stdout; exits non-zero on error.
//   fleet_peer URL NAMESPACE members ID
//   fleet_peer URL NAMESPACE lock ROUNDS
//   fleet_peer URL NAMESPACE claim KEY VALUE START_UNIX_MS
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "fleet/fleet.hpp"

namespace {

using std::chrono::milliseconds;

int fail(const std::string& what, const absl::Status& st) {
  std::printf("error: %s: %s\n", what.c_str(), st.ToString().c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return 64;
  fleet::RedisOptions options;
  options.url = argv[1];
  options.namespace_name = argv[2];
  options.heartbeat_interval = milliseconds(100);
  options.session_ttl = milliseconds(500);
  options.log_sink = fleet::quiet_log_sink();
  auto c = fleet::RedisCoordinator::connect(options);
  if (!c.ok()) return fail("connect", c.status());
  fleet::Coordinator& fleet = **c;
  const std::string mode = argv[3];

  if (mode == "members" && argc == 5) {
    fleet::InstanceInfo me;
    me.id = argv[4];
    if (auto st = fleet.join(me); !st.ok()) return fail("join", st);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      auto members = fleet.members();
      if (!members.ok()) return fail("members", members.status());
      if (members->size() >= 2) {
        std::printf("members:");
        for (const auto& m : *members) std::printf(" %s", m.info.id.c_str());
        std::printf("\n");
        break;
      }
      if (std::chrono::steady_clock::now() > deadline)
        return fail("members", absl::DeadlineExceededError("alone"));
      std::this_thread::sleep_for(milliseconds(20));
    }
    std::this_thread::sleep_for(milliseconds(500));  // let the other see us too
    return 0;
  }

  if (mode == "lock" && argc == 5) {
    const int rounds = std::atoi(argv[4]);
    int violations = 0;
    std::string fences;
    for (int i = 0; i < rounds; ++i) {
      auto lease = fleet.lock("shared", milliseconds(5000), milliseconds(20000));
      if (!lease.ok()) return fail("lock", lease.status());
      if (!lease->has_value())
        return fail("lock", absl::DeadlineExceededError("timeout"));
      const auto fence = (*lease)->fence;
      // Inside the critical section: nobody else may be in it, and the
      // fence must exceed the one of whoever was in it last.
      auto inside = fleet.claim("state", "holder", fleet.session_id());
      if (!inside.ok()) return fail("claim", inside.status());
      if (!inside->claimed) ++violations;
      auto last = fleet.get("state", "last_fence");
      if (!last.ok()) return fail("get", last.status());
      if (last->has_value() && std::stoull((*last)->value) >= fence) ++violations;
      if (auto st = fleet.put("state", "last_fence", std::to_string(fence)).status();
          !st.ok()) {
        return fail("put", st);
      }
      std::this_thread::sleep_for(milliseconds(1));
      if (auto st = fleet.erase("state", "holder").status(); !st.ok())
        return fail("erase", st);
      if (auto st = fleet.release(**lease); !st.ok()) return fail("release", st);
      fences += " " + std::to_string(fence);
    }
    std::printf("violations: %d\nfences:%s\n", violations, fences.c_str());
    return 0;
  }

  if (mode == "claim" && argc == 7) {
    const long long start_ms = std::atoll(argv[6]);
    const auto start = std::chrono::system_clock::time_point(milliseconds(start_ms));
    std::this_thread::sleep_until(start);  // both processes race from here
    auto r = fleet.claim("rooms", argv[4], argv[5]);
    if (!r.ok()) return fail("claim", r.status());
    std::printf("%s %s\n", r->claimed ? "claimed" : "lost", r->entry.value.c_str());
    return 0;
  }
  return 64;
}
