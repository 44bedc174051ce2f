// The example servers as child processes, for end-to-end and fault tests:
// fleet-gateway and fake-backend, each started and waited for until it
// listens on loopback, stopped by its PID (and dying with the test through
// PR_SET_PDEATHSIG). Needs FLEET_GATEWAY_BINARY and FAKE_BACKEND_BINARY.
#ifndef FLEET_TESTS_SUPPORT_EXAMPLE_SERVERS_HPP_
#define FLEET_TESTS_SUPPORT_EXAMPLE_SERVERS_HPP_

#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "catch.hpp"
#include "nlohmann/json.hpp"
#include "process.hpp"

namespace fleet::testing {

using Json = nlohmann::json;

// A server process of ours, started and waited for until it listens.
class Server {
 public:
  Server(const std::string& binary, const std::vector<std::string>& args) {
    child_ = spawn(binary, args);
    const std::string line =
        read_line_with(child_, "listening on", std::chrono::milliseconds(20000));
    REQUIRE(!line.empty());
    const auto colon = line.rfind(':');
    port_ = std::atoi(line.c_str() + colon + 1);
    REQUIRE(port_ > 0);
  }
  ~Server() { stop(); }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const Child& child() const { return child_; }

  // SIGTERM and wait; returns what it printed and its exit code.
  std::string stop(int* code = nullptr) {
    int c = -1;
    if (child_.pid <= 0) return {};
    signal_child(child_, SIGTERM);
    std::string out = finish(child_, &c, std::chrono::seconds(20));
    child_.pid = -1;
    if (code != nullptr) *code = c;
    return out;
  }
  void kill() {
    signal_child(child_, SIGKILL);
    int c = 0;
    finish(child_, &c, std::chrono::seconds(10));
    child_.pid = -1;
  }

  Json get_json(const std::string& path) const {
    httplib::Client cli("127.0.0.1", port_);
    auto res = cli.Get(path.c_str());
    REQUIRE(res);
    REQUIRE(res->status == 200);
    return Json::parse(res->body);
  }

 private:
  Child child_;
  int port_ = 0;
};

inline std::string unique_namespace(const std::string& test) {
  static std::atomic<int> n{0};
  return "e2e-" + test + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

inline std::unique_ptr<Server> fake_backend(const std::string& name, int capacity,
                                            int latency_ms, int chunks) {
  return std::make_unique<Server>(
      FAKE_BACKEND_BINARY,
      std::vector<std::string>{"--name", name, "--capacity", std::to_string(capacity),
                               "--latency-ms", std::to_string(latency_ms), "--chunks",
                               std::to_string(chunks), "--max-seconds", "120"});
}

// A fleet-gateway on `redis_url` (quiet, bounded in time, refreshing its
// view every 100 ms) in front of `nodes` (--node specs).
inline std::unique_ptr<Server> gateway_on(const std::string& redis_url,
                                          const std::string& ns,
                                          const std::vector<std::string>& nodes,
                                          std::vector<std::string> extra = {}) {
  std::vector<std::string> args{
      "--redis-url", redis_url, "--namespace",  ns,   "--max-seconds",
      "120",         "--quiet", "--refresh-ms", "100"};
  for (const auto& n : nodes) {
    args.push_back("--node");
    args.push_back(n);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<Server>(FLEET_GATEWAY_BINARY, args);
}

// POSTs a generate request; the HTTP status, or -1 if there was no answer.
// The status of one request (-1: no response); its body into `body`.
inline int post(int port, std::string* body = nullptr,
                const std::string& path = "/api/generate") {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(std::chrono::seconds(20));
  auto res =
      cli.Post(path.c_str(), R"({"model":"llama3","prompt":"hi"})", "application/json");
  if (res && body != nullptr) *body = res->body;
  return res ? res->status : -1;
}

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_EXAMPLE_SERVERS_HPP_
