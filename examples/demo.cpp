// fleet-demo: three instances of a service on the in-process backend, in real
// time with short TTLs. Shows membership (join, crash, expiry), a lock with
// fencing tokens and a claim race. Runs in about two seconds.
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "fleet/fleet.hpp"

namespace {

using std::chrono::milliseconds;

template <typename T>
T must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, v.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(v);
}

void must(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

}  // namespace

int main() {
  fleet::LocalOptions options;
  options.session_ttl = milliseconds(500);
  auto store = must(fleet::LocalStore::create(options), "store");

  std::printf("== membership: three instances join, one crashes\n");
  std::vector<std::unique_ptr<fleet::Coordinator>> nodes;
  for (int i = 1; i <= 3; ++i) {
    nodes.push_back(must(fleet::LocalCoordinator::connect(store), "connect"));
  }
  auto watcher = must(fleet::LocalCoordinator::connect(store), "connect");
  std::mutex print_mu;
  auto sub = must(watcher->watch_members([&](const fleet::MemberEvent& e) {
    std::lock_guard<std::mutex> lock(print_mu);
    std::printf("  event: %-8s %s\n", std::string(fleet::to_string(e.type)).c_str(),
                e.member.info.id.c_str());
  }),
                  "watch");
  for (int i = 0; i < 3; ++i) {
    fleet::InstanceInfo info;
    info.id = "sfu-" + std::to_string(i + 1);
    info.hostname = "host-" + std::to_string(i + 1);
    info.version = fleet::kVersion;
    must(nodes[i]->join(info), "join");
  }
  std::this_thread::sleep_for(milliseconds(50));
  {
    std::lock_guard<std::mutex> lock(print_mu);
    std::printf("  live members:");
    for (const auto& m : must(watcher->members(), "members")) {
      std::printf(" %s", m.info.id.c_str());
    }
    std::printf(
        "\n  sfu-3 crashes (no leave); its membership expires after the 500 ms TTL\n");
  }
  nodes[2].reset();
  std::this_thread::sleep_for(milliseconds(700));
  {
    std::lock_guard<std::mutex> lock(print_mu);
    std::printf("  live members:");
    for (const auto& m : must(watcher->members(), "members")) {
      std::printf(" %s", m.info.id.c_str());
    }
    std::printf("\n");
  }

  std::printf("\n== lock with fencing tokens\n");
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 2; ++i) {
      auto lease = must(
          nodes[i]->lock("compaction", milliseconds(300), milliseconds(1000)), "lock");
      if (!lease) continue;
      std::printf("  sfu-%d holds 'compaction' with fencing token %llu\n", i + 1,
                  static_cast<unsigned long long>(lease->fence));
      must(nodes[i]->release(*lease), "release");
    }
  }
  auto stale = must(nodes[0]->try_lock("compaction", milliseconds(100)), "lock");
  std::this_thread::sleep_for(milliseconds(150));
  auto fresh = must(nodes[1]->try_lock("compaction", milliseconds(1000)), "lock");
  std::printf("  sfu-1's lease (token %llu) expired; sfu-2 now holds token %llu\n",
              static_cast<unsigned long long>(stale->fence),
              static_cast<unsigned long long>(fresh->fence));
  std::printf("  sfu-1 releasing its stale lease: %s\n",
              nodes[0]->release(*stale).ToString().c_str());
  must(nodes[1]->release(*fresh), "release");

  std::printf("\n== claim race: two instances assign room-42 at the same time\n");
  std::vector<std::thread> racers;
  std::vector<fleet::ClaimResult> results(2);
  for (int i = 0; i < 2; ++i) {
    racers.emplace_back([&, i] {
      results[i] = must(
          nodes[i]->claim("rooms", "room-42", "sfu-" + std::to_string(i + 1)), "claim");
    });
  }
  for (auto& t : racers) t.join();
  for (int i = 0; i < 2; ++i) {
    std::printf("  sfu-%d: %s; room-42 is on %s\n", i + 1,
                results[i].claimed ? "won the claim" : "lost the claim",
                results[i].entry.value.c_str());
  }
  return 0;
}
