#include "redis_server.hpp"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "test_pki.hpp"

namespace fleet::testing {
namespace {

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string redis_server_binary() {
  if (const char* env = std::getenv("FLEET_REDIS_SERVER"); env && *env) return env;
  for (const char* p : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return {};
}

std::string reply_text(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_ARRAY: {
      std::string out;
      for (std::size_t i = 0; i < r->elements; ++i) {
        if (i) out += '\n';
        out += reply_text(r->element[i]);
      }
      return out;
    }
    default:
      return std::string(r->str, r->len);
  }
}

}  // namespace

absl::Status wait_until(const std::function<bool()>& ok,
                        std::chrono::milliseconds timeout, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (ok()) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError("timed out waiting for " + what);
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::start(Options options) {
  char tmpl[] = "/tmp/fleet-redis-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  std::unique_ptr<RedisServer> server(new RedisServer(std::move(options), tmpl));
  const bool fixed_port = server->options_.port != 0;
  absl::Status st;
  for (int attempt = 0; attempt < 5; ++attempt) {
    server->port_ = fixed_port ? server->options_.port : free_port();
    if (server->options_.tls) {
      do {
        server->tls_port_ = free_port();
      } while (server->tls_port_ == server->port_);
    }
    if (server->options_.cluster) {
      do {
        server->cluster_port_ = free_port();
      } while (server->cluster_port_ == server->port_);
    }
    st = server->spawn();
    if (st.ok()) return server;
    if (fixed_port) break;
  }
  return st;
}

absl::Status RedisServer::spawn() {
  const std::string binary = redis_server_binary();
  if (binary.empty()) {
    return absl::FailedPreconditionError(
        "redis-server not found (install the redis-server package or set "
        "FLEET_REDIS_SERVER)");
  }
  if (!options_.sentinel_config.empty()) {
    const std::string conf = dir_ + "/sentinel.conf";
    if (::access(conf.c_str(), F_OK) != 0) {  // a restart keeps what it learned
      FILE* f = std::fopen(conf.c_str(), "w");
      if (f == nullptr) return absl::InternalError("cannot write " + conf);
      std::fputs(options_.sentinel_config.c_str(), f);
      std::fclose(f);
    }
    std::vector<std::string> sargs = {
        binary,   conf,         "--sentinel",  "--port",    std::to_string(port_),
        "--bind", "127.0.0.1",  "--daemonize", "no",        "--dir",
        dir_,     "--loglevel", "notice",      "--logfile", dir_ + "/redis.log"};
    return launch(binary, sargs);
  }
  std::vector<std::string> args = {binary, "--port", std::to_string(port_), "--bind",
                                   "127.0.0.1", "--save", "", "--appendonly", "no",
                                   "--daemonize", "no", "--dir", dir_, "--loglevel",
                                   "warning", "--logfile", dir_ + "/redis.log",
                                   // A replica's first full sync starts at
                                   // once, not after Redis 7's 5 s wait for
                                   // more replicas.
                                   "--repl-diskless-sync-delay", "0"};
  if (options_.tls) {
    const Tls& t = *options_.tls;
    args.insert(args.end(),
                {"--tls-port", std::to_string(tls_port_), "--tls-cert-file", t.cert_file,
                 "--tls-key-file", t.key_file, "--tls-ca-cert-file", t.ca_file,
                 "--tls-auth-clients", t.require_client_cert ? "yes" : "no"});
  }
  if (options_.cluster) {
    args.insert(args.end(), {"--cluster-enabled", "yes", "--cluster-config-file",
                             dir_ + "/nodes.conf", "--cluster-node-timeout", "1000",
                             "--cluster-port", std::to_string(cluster_port_)});
  }
  args.insert(args.end(), options_.args.begin(), options_.args.end());
  return launch(binary, args);
}

absl::Status RedisServer::launch(const std::string& binary,
                                 std::vector<std::string> args) {
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    // Never outlive the test, even if it crashes.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  // Up within 5 s, or it failed (port taken, bad option).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError("redis-server exited at start-up (see " + dir_ +
                                    "/redis.log)");
    }
    timeval tv{0, 200000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    const bool up = c != nullptr && c->err == 0;
    if (c != nullptr) redisFree(c);
    if (up) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill();
  return absl::DeadlineExceededError(
      "redis-server did not accept connections within 5 s");
}

void RedisServer::pause() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGSTOP);
  paused_ = true;
}

void RedisServer::resume() {
  if (pid_ <= 0 || !paused_) return;
  ::kill(pid_, SIGCONT);
  paused_ = false;
}

void RedisServer::stop() {
  if (pid_ <= 0) return;
  resume();  // a stopped process would not handle SIGTERM
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
}

void RedisServer::kill() {
  if (pid_ <= 0) return;
  paused_ = false;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

absl::Status RedisServer::restart() {
  stop();
  // The old listening socket may linger briefly: retry the same port.
  absl::Status st;
  for (int attempt = 0; attempt < 20; ++attempt) {
    st = spawn();
    if (st.ok()) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return st;
}

absl::StatusOr<std::string> RedisServer::command(
    const std::vector<std::string>& argv) const {
  return commands({argv});
}

absl::StatusOr<std::string> RedisServer::commands(
    const std::vector<std::vector<std::string>>& argvs) const {
  timeval tv{2, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (c == nullptr || c->err != 0) {
    if (c) redisFree(c);
    return absl::UnavailableError("cannot connect to the test redis-server");
  }
  std::string out;
  bool error = false;
  for (const auto& argv : argvs) {
    std::vector<const char*> ptrs;
    std::vector<std::size_t> lens;
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    // Tests that need a password pass AUTH as part of argv: first element "AUTH".
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
    if (r == nullptr) {
      redisFree(c);
      return absl::UnavailableError("command to the test redis-server failed");
    }
    out = reply_text(r);
    error = r->type == REDIS_REPLY_ERROR;
    freeReplyObject(r);
    if (error) break;
  }
  redisFree(c);
  if (error) return absl::InternalError(out);
  return out;
}

RedisServer::~RedisServer() {
  stop();
  // Only what spawn() put there: the log (no persistence is configured),
  // a sentinel's configuration.
  ::unlink((dir_ + "/redis.log").c_str());
  ::unlink((dir_ + "/sentinel.conf").c_str());
  ::rmdir(dir_.c_str());
}

bool shared_redis_tls() {
  const char* env = std::getenv("FLEET_TEST_TLS");
  return env != nullptr && *env != '\0';
}

std::string shared_redis_url() {
  return shared_redis_tls() ? shared_redis_server().tls_url()
                            : shared_redis_server().url();
}

RedisServer& shared_redis_server() {
  static std::unique_ptr<RedisServer> server = [] {
    RedisServer::Options options;
    if (shared_redis_tls()) {
      const TestPki& pki = shared_test_pki();
      options.tls = RedisServer::Tls{pki.server_cert(), pki.server_key(), pki.ca_cert()};
    }
    auto s = RedisServer::start(std::move(options));
    if (!s.ok()) {
      std::fprintf(stderr, "FATAL: cannot start redis-server for the tests: %s\n",
                   s.status().ToString().c_str());
      std::abort();
    }
    return *std::move(s);
  }();
  return *server;
}

}  // namespace fleet::testing
