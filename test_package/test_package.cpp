// Uses an installed fleet the way a host application does: the in-process
// backend end to end, and the Redis backend's error paths (no server needed).
#include <cstdio>

#include "fleet/fleet.hpp"

namespace {

int fail(const char* what, const absl::Status& st) {
  std::fprintf(stderr, "test_package: %s: %s\n", what, st.ToString().c_str());
  return 1;
}

}  // namespace

int main() {
  auto c = fleet::LocalCoordinator::create();
  if (!c.ok()) return fail("LocalCoordinator::create", c.status());
  fleet::InstanceInfo me;
  me.id = "test-package-1";
  if (auto st = (*c)->join(me); !st.ok()) return fail("join", st);
  auto lease = (*c)->try_lock("job", std::chrono::seconds(5));
  if (!lease.ok()) return fail("try_lock", lease.status());
  if (!lease->has_value() || (*lease)->fence != 1) {
    std::fprintf(stderr, "test_package: try_lock did not grant fence 1\n");
    return 1;
  }

  // rediss:// is refused clearly without TLS; with it, a CA file that does
  // not exist is named in the error. Either way: InvalidArgument.
  fleet::RedisOptions ro;
  ro.url = "rediss://127.0.0.1:1/0";
  ro.tls.ca_file = "/nonexistent/ca.pem";
  ro.log_sink = fleet::quiet_log_sink();
  auto redis = fleet::RedisCoordinator::connect(ro);
  if (redis.ok() || redis.status().code() != absl::StatusCode::kInvalidArgument) {
    return fail("rediss:// with a missing CA file", redis.status());
  }
  std::printf("fleet test_package ok (fleet %s, TLS %s): %s\n", fleet::kVersion,
              fleet::tls_supported() ? "on" : "off",
              std::string(redis.status().message()).c_str());
  return 0;
}
