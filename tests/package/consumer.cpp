// A minimal host application: proves the headers, the library and its
// dependencies are usable from outside the fleet build.
#include <cstdio>

#include "fleet/fleet.hpp"

int main() {
  auto c = fleet::LocalCoordinator::create();
  if (!c.ok()) return 1;
  fleet::InstanceInfo me;
  me.id = "consumer-1";
  if (!(*c)->join(me).ok()) return 2;
  auto lease = (*c)->try_lock("job", std::chrono::seconds(5));
  if (!lease.ok() || !lease->has_value() || (*lease)->fence != 1) return 3;
  auto members = (*c)->members();
  if (!members.ok() || members->size() != 1) return 4;
  std::printf("fleet consumer ok (fleet %s, fence %llu)\n", fleet::kVersion,
              static_cast<unsigned long long>((*lease)->fence));
  return 0;
}
