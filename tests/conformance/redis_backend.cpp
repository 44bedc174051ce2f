// The conformance suite on RedisCoordinator, against a real redis-server
// started by the harness. Short TTLs; time passes for real (advance sleeps),
// since liveness is Redis server time.
#include <atomic>
#include <random>
#include <thread>

#include "backend.hpp"
#include "fleet/redis_coordinator.hpp"
#include "redis_server.hpp"

namespace fleet::testing {
namespace {

class RedisBackend final : public Backend {
 public:
  RedisBackend() {
    static std::atomic<int> counter{0};
    namespace_ =
        "conformance-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  }
  std::unique_ptr<Coordinator> connect() override {
    RedisOptions options;
    options.url = shared_redis_server().url();
    options.namespace_name = namespace_;
    options.heartbeat_interval = std::chrono::milliseconds(100);
    options.session_ttl = std::chrono::milliseconds(300);
    options.log_sink = quiet_log_sink();
    auto c = RedisCoordinator::connect(options);
    if (!c.ok()) {
      std::fprintf(stderr, "FATAL: RedisCoordinator::connect: %s\n",
                   c.status().ToString().c_str());
      std::abort();
    }
    return *std::move(c);
  }
  void advance(std::chrono::milliseconds d) override { std::this_thread::sleep_for(d); }
  std::chrono::milliseconds session_ttl() const override {
    return std::chrono::milliseconds(300);
  }
  std::chrono::milliseconds lease_ttl() const override {
    return std::chrono::milliseconds(300);
  }

 private:
  std::string namespace_;
};

}  // namespace

std::unique_ptr<Backend> make_backend() { return std::make_unique<RedisBackend>(); }

}  // namespace fleet::testing
