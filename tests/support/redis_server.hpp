// Starts a real redis-server (the Debian package) for a test, listening on
// 127.0.0.1 on a free port, without persistence, and stops it by its PID.
// If redis-server is missing or does not come up, start() fails loudly:
// Redis tests never skip.
#ifndef FLEET_TESTS_SUPPORT_REDIS_SERVER_HPP_
#define FLEET_TESTS_SUPPORT_REDIS_SERVER_HPP_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fleet::testing {

// Polls `ok` every 50 ms until it holds (OkStatus) or `timeout` passes
// (DeadlineExceeded naming `what`).
absl::Status wait_until(const std::function<bool()>& ok,
                        std::chrono::milliseconds timeout, const std::string& what);

class RedisServer {
 public:
  // TLS on a second port (the plain one stays, for the harness itself).
  struct Tls {
    std::string cert_file, key_file, ca_file;
    bool require_client_cert = false;  // tls-auth-clients yes
  };
  struct Options {
    std::vector<std::string> args;  // extra config, e.g. {"--requirepass", "s3cret"}
    int port = 0;                   // 0: pick a free port
    std::optional<Tls> tls;
    // Non-empty: run as a Sentinel (redis-server --sentinel) with this
    // configuration, written to a file the sentinel may rewrite.
    std::string sentinel_config;
    // Run as a Redis Cluster node (cluster-enabled, its bus on a free port
    // of its own, node timeout 1000 ms, no slots yet).
    bool cluster = false;
  };

  static absl::StatusOr<std::unique_ptr<RedisServer>> start(Options options);
  static absl::StatusOr<std::unique_ptr<RedisServer>> start() { return start(Options{}); }
  ~RedisServer();

  int port() const { return port_; }
  // Options::cluster: the cluster bus port.
  int cluster_port() const { return cluster_port_; }
  pid_t pid() const { return pid_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  // With Options::tls: the TLS port, and a rediss:// URL for it.
  int tls_port() const { return tls_port_; }
  std::string tls_url() const {
    return "rediss://127.0.0.1:" + std::to_string(tls_port_) + "/0";
  }

  // SIGTERM, then SIGKILL after 5 s; reaps the process. Idempotent.
  void stop();
  // Kills it at once (SIGKILL), as a crash would.
  void kill();
  // SIGSTOP / SIGCONT: Redis stops answering (connections stay open and
  // new ones are accepted by the kernel), as in a long GC or VM pause.
  void pause();
  void resume();
  // Starts it again on the same port with the same options.
  absl::Status restart();

  // Runs one command with hiredis directly (to plant data, count keys...).
  // Returns the reply as text: integers as decimal, arrays joined by '\n'.
  absl::StatusOr<std::string> command(const std::vector<std::string>& argv) const;
  // Several, one after the other on one connection; the last reply (or the
  // first error).
  absl::StatusOr<std::string> commands(
      const std::vector<std::vector<std::string>>& argvs) const;

 private:
  RedisServer(Options options, std::string dir)
      : options_(std::move(options)), dir_(std::move(dir)) {}
  absl::Status spawn();
  absl::Status launch(const std::string& binary, std::vector<std::string> args);

  Options options_;
  std::string dir_;
  int port_ = 0;
  int tls_port_ = 0;
  int cluster_port_ = 0;
  pid_t pid_ = -1;
  bool paused_ = false;
};

// One server shared by a whole test executable, started on first use. With
// the environment variable FLEET_TEST_TLS set it also listens with TLS
// (certificates from shared_test_pki()), and shared_redis_url() is its
// rediss:// URL.
RedisServer& shared_redis_server();
bool shared_redis_tls();
std::string shared_redis_url();

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_REDIS_SERVER_HPP_
