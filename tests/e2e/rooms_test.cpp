// End to end: fleet-room-server processes on a real redis-server, driven by
// WebSocket clients, fleetctl, and a headless Chromium through ChromeDriver
// (Debian's chromium and chromium-driver). Every process is stopped by PID.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "catch.hpp"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "process.hpp"
#include "redis_server.hpp"
#include "status.hpp"
#include "ws_client.hpp"

namespace fleet::testing {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;

constexpr int kTtlMs = 1000;
constexpr auto kWait = milliseconds(10000);

std::string unique_ns(const std::string& test) {
  static int n = 0;
  return "rooms-" + test + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

template <typename F>
bool within(milliseconds limit, F f) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return f();
}

class RoomServer {
 public:
  RoomServer(const std::string& redis_url, const std::string& ns, const std::string& id,
             std::vector<std::string> extra = {}, bool with_stderr = false) {
    std::vector<std::string> args{
        "--redis-url",    redis_url, "--namespace",      ns,
        "--id",           id,        "--session-ttl-ms", std::to_string(kTtlMs),
        "--heartbeat-ms", "200",     "--max-seconds",    "120"};
    if (std::getenv("FLEET_TEST_VERBOSE") == nullptr) args.push_back("--quiet");
    args.insert(args.end(), extra.begin(), extra.end());
    child_ = spawn(FLEET_ROOM_SERVER_BINARY, args, with_stderr);
    const std::string line = read_line_with(child_, "listening on ", milliseconds(30000));
    REQUIRE(!line.empty());
    const auto at = line.find("listening on ") + 13;
    address_ = line.substr(at, line.find(' ', at) - at);
  }
  ~RoomServer() {
    if (child_.pid > 0) stop(SIGKILL);
  }
  const std::string& address() const { return address_; }
  // Returns what it printed.
  std::string stop(int sig) {
    signal_child(child_, sig);
    int code = 0;
    std::string out = finish(child_, &code, std::chrono::seconds(20));
    child_.pid = -1;
    return out;
  }

 private:
  Child child_;
  std::string address_;
};

bool has_type(const Json& m, const std::string& type) {
  return m.value("type", "") == type;
}

std::string fleetctl(const std::string& url, const std::string& ns,
                     std::vector<std::string> args) {
  std::vector<std::string> all{"--redis-url", url, "--namespace", ns};
  all.insert(all.end(), args.begin(), args.end());
  Child ctl = spawn(FLEETCTL_BINARY, all);
  int code = -1;
  std::string out = finish(ctl, &code, std::chrono::seconds(30));
  REQUIRE(code == 0);
  return out;
}

TEST_CASE("a chat message from a client on A reaches clients on B, with who is where",
          "[rooms-e2e]") {
  RedisServer& redis = shared_redis_server();
  const std::string ns = unique_ns("chat");
  RoomServer a(redis.url(), ns, "a");
  RoomServer b(redis.url(), ns, "b");
  WsClient alice(a.address());
  alice.send({{"type", "join"}, {"room", "lobby"}, {"identity", "alice"}});
  auto joined = alice.wait_type("joined", kWait);
  REQUIRE(joined);
  CHECK((*joined)["instance"] == "a");
  const std::string host = (*joined)["node"];
  WsClient bob(b.address());
  bob.send({{"type", "join"}, {"room", "lobby"}, {"identity", "bob"}});
  auto bob_joined = bob.wait_type("joined", kWait);
  REQUIRE(bob_joined);
  CHECK((*bob_joined)["node"] == host);  // one node for the room, whoever asks
  CHECK((*bob_joined)["instance"] == "b");
  REQUIRE((*bob_joined)["participants"].size() == 2);
  CHECK((*bob_joined)["participants"][0] ==
        Json{{"identity", "alice"}, {"instance", "a"}});
  CHECK((*bob_joined)["participants"][1] == Json{{"identity", "bob"}, {"instance", "b"}});
  // alice hears bob arrive through b.
  auto arrived = alice.wait_for(
      [](const Json& m) {
        return has_type(m, "participant") && m["identity"] == "bob" &&
               m["instance"] == "b";
      },
      kWait);
  CHECK(arrived);

  for (int i = 0; i < 50; ++i)
    alice.send({{"type", "chat"}, {"text", "hi " + std::to_string(i)}});
  REQUIRE(bob.wait_for(
      [](const Json& m) { return has_type(m, "chat") && m["text"] == "hi 49"; }, kWait));
  std::vector<std::string> texts;
  for (const auto& m : bob.received()) {
    if (has_type(m, "chat")) {
      CHECK(m["from"] == "alice");
      CHECK(m["instance"] == "a");
      texts.push_back(m["text"]);
    }
  }
  REQUIRE(texts.size() == 50);
  for (int i = 0; i < 50; ++i) CHECK(texts[i] == "hi " + std::to_string(i));

  // fleetctl sees the room, its node, and one participant on each instance.
  const std::string list = fleetctl(redis.url(), ns, {"rooms"});
  CHECK(list.find("lobby") != std::string::npos);
  CHECK(list.find("a:1 b:1") != std::string::npos);
  auto one = Json::parse(fleetctl(redis.url(), ns, {"rooms", "lobby", "--json"}));
  CHECK(one["node"] == host);
  CHECK(one["node_live"] == true);
  CHECK(one["participants"].size() == 2);

  // Bad input gets an error message, not a crash or a hang.
  WsClient mallory(b.address());
  mallory.send_text("{not json");
  CHECK(mallory.wait_type("error", kWait));
  mallory.send({{"type", "join"}, {"room", "bad\nroom"}, {"identity", "m"}});
  auto bad = mallory.wait_for(
      [](const Json& m) {
        return has_type(m, "error") &&
               m["message"].get<std::string>().find("room name") != std::string::npos;
      },
      kWait);
  CHECK(bad);
  mallory.send({{"type", "join"}, {"room", "lobby"}, {"identity", "mallory"}});
  REQUIRE(mallory.wait_type("joined", kWait));
  mallory.send({{"type", "chat"}, {"text", std::string(20000, 'x')}});
  auto big = mallory.wait_for(
      [](const Json& m) {
        return has_type(m, "error") &&
               m["message"].get<std::string>().find("limit") != std::string::npos;
      },
      kWait);
  CHECK(big);
  // A client that vanishes (TCP cut, no close) leaves the room.
  mallory.drop();
  CHECK(alice.wait_for(
      [](const Json& m) {
        return has_type(m, "participant") && m["identity"] == "mallory" &&
               m["event"] == "left";
      },
      kWait));
  // The server never crashed: a last message still crosses.
  bob.send({{"type", "chat"}, {"text", "still here"}});
  CHECK(alice.wait_for(
      [](const Json& m) { return has_type(m, "chat") && m["text"] == "still here"; },
      kWait));
}

TEST_CASE("while Redis is down, the error frame a client gets does not name it",
          "[rooms-e2e]") {
  auto started = RedisServer::start();
  REQUIRE(started.ok());
  RedisServer& redis = **started;
  RoomServer a(redis.url(), unique_ns("outage"), "a", {}, true);
  WsClient alice(a.address());
  alice.send({{"type", "join"}, {"room", "lobby"}, {"identity", "alice"}});
  REQUIRE(alice.wait_type("joined", kWait));
  redis.kill();
  // The first call finds the connection closed; later ones cannot connect
  // ("cannot connect to Redis at redis://127.0.0.1:PORT/0: ...").
  for (int i = 0; i < 12; ++i) {
    alice.send({{"type", "chat"}, {"text", "anyone?"}});
    std::this_thread::sleep_for(milliseconds(200));
  }
  auto errors = [&] {
    const auto all = alice.received();
    return std::count_if(all.begin(), all.end(),
                         [](const Json& m) { return has_type(m, "error"); });
  };
  REQUIRE(within(kWait, [&] { return errors() == 12; }));
  // Alice is the only member, on this server: every chat reached her (the
  // echo) and the frame says so, without naming anything behind it.
  for (const auto& m : alice.received()) {
    if (has_type(m, "error")) {
      CHECK(m["message"] ==
            "your message reached the members on this server only; the others will be "
            "told they missed it");
    }
  }
  const auto all = alice.received();
  CHECK(std::count_if(all.begin(), all.end(), [](const Json& m) {
          return has_type(m, "chat") && m["text"] == "anyone?";
        }) == 12);
  // The server's log has the whole story (it names Redis; the client may not).
  const std::string log = a.stop(SIGTERM);
  INFO(log);
  CHECK(log.find("fleet-room-server: broadcast failed: ") != std::string::npos);
  CHECK(log.find("127.0.0.1:" + std::to_string(redis.port())) != std::string::npos);
}

TEST_CASE("redirect mode answers a join with the hosting node's address", "[rooms-e2e]") {
  RedisServer& redis = shared_redis_server();
  const std::string ns = unique_ns("redirect");
  RoomServer a(redis.url(), ns, "a", {"--mode", "redirect"});
  WsClient first(a.address());
  first.send({{"type", "join"}, {"room", "standup"}, {"identity", "alice"}});
  REQUIRE(first.wait_type("joined", kWait));
  RoomServer b(redis.url(), ns, "b", {"--mode", "redirect"});
  WsClient c(b.address());
  c.send({{"type", "join"}, {"room", "standup"}, {"identity", "carol"}});
  auto r = c.wait_type("redirect", kWait);
  REQUIRE(r);
  CHECK((*r)["node"] == "a");
  CHECK((*r)["address"] == a.address());
  WsClient again((*r)["address"].get<std::string>());
  again.send({{"type", "join"}, {"room", "standup"}, {"identity", "carol"}});
  auto j = again.wait_type("joined", kWait);
  REQUIRE(j);
  CHECK((*j)["instance"] == "a");
  CHECK((*j)["participants"].size() == 2);
}

TEST_CASE("when the hosting instance is killed its rooms move and its clients leave",
          "[rooms-e2e]") {
  RedisServer& redis = shared_redis_server();
  const std::string ns = unique_ns("kill");
  auto a = std::make_unique<RoomServer>(redis.url(), ns, "a", std::vector<std::string>{});
  // Only a exists yet: it hosts every room.
  WsClient alice(a->address());
  alice.send({{"type", "join"}, {"room", "r1"}, {"identity", "alice"}});
  REQUIRE(alice.wait_type("joined", kWait));
  RoomServer b(redis.url(), ns, "b");
  WsClient bob(b.address());
  bob.send({{"type", "join"}, {"room", "r1"}, {"identity", "bob"}});
  auto j = bob.wait_type("joined", kWait);
  REQUIRE(j);
  REQUIRE((*j)["node"] == "a");
  const auto killed = std::chrono::steady_clock::now();
  a->stop(SIGKILL);
  auto moved =
      bob.wait_for([](const Json& m) { return has_type(m, "moved") && m["node"] == "b"; },
                   milliseconds(kTtlMs * 8));
  REQUIRE(moved);
  CHECK((*moved)["cause"] == "node-died");
  auto gone = bob.wait_for(
      [](const Json& m) {
        return has_type(m, "participant") && m["identity"] == "alice" &&
               m["event"] == "left";
      },
      kWait);
  CHECK(gone);
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - killed);
  WARN("room moved and alice removed " << took.count() << " ms after the SIGKILL");
  auto one = Json::parse(fleetctl(redis.url(), ns, {"rooms", "r1", "--json"}));
  CHECK(one["node"] == "b");
  CHECK(one["generation"] == 2);
  REQUIRE(one["participants"].size() == 1);
  CHECK(one["participants"][0]["identity"] == "bob");
}

// ---- the browser -------------------------------------------------------------

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  const int port = ntohs(sa.sin_port);
  ::close(fd);
  return port;
}

// The W3C WebDriver protocol, spoken to ChromeDriver over HTTP.
class Browser {
 public:
  Browser(int driver_port, const std::string& profile) : http_("127.0.0.1", driver_port) {
    http_.set_read_timeout(60, 0);
    Json caps = {
        {"capabilities",
         {{"alwaysMatch",
           {{"browserName", "chrome"},
            {"goog:chromeOptions",
             {{"binary", "/usr/bin/chromium"},
              {"args",
               {"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--user-data-dir=" + profile}}}}}}}}};
    Json r = call("POST", "/session", caps);
    session_ = r["value"]["sessionId"].get<std::string>();
  }
  ~Browser() {
    if (!session_.empty()) http_.Delete(("/session/" + session_).c_str());
  }

  void go(const std::string& url) { call("POST", path("/url"), {{"url", url}}); }
  std::string find(const std::string& css) {
    Json r = call("POST", path("/element"), {{"using", "css selector"}, {"value", css}});
    return r["value"].begin().value().get<std::string>();
  }
  void type(const std::string& css, const std::string& text) {
    const std::string e = find(css);
    call("POST", path("/element/" + e + "/clear"), Json::object());
    call("POST", path("/element/" + e + "/value"), {{"text", text}});
  }
  void click(const std::string& css) {
    call("POST", path("/element/" + find(css) + "/click"), Json::object());
  }
  std::string text(const std::string& css) {
    return call("GET", path("/element/" + find(css) + "/text"), {})["value"];
  }

 private:
  std::string path(const std::string& p) const { return "/session/" + session_ + p; }
  Json call(const std::string& method, const std::string& p, const Json& body) {
    httplib::Result res = method == "GET"
                              ? http_.Get(p.c_str())
                              : http_.Post(p.c_str(), body.dump(), "application/json");
    REQUIRE(res);
    INFO(method << " " << p << " -> " << res->status << " " << res->body);
    REQUIRE(res->status == 200);
    return Json::parse(res->body);
  }

  httplib::Client http_;
  std::string session_;
};

TEST_CASE("in headless Chromium, a message typed in a tab on A appears in a tab on B",
          "[rooms-e2e][browser]") {
  REQUIRE(std::filesystem::exists("/usr/bin/chromium"));
  REQUIRE(std::filesystem::exists("/usr/bin/chromedriver"));
  RedisServer& redis = shared_redis_server();
  const std::string ns = unique_ns("browser");
  RoomServer a(redis.url(), ns, "a");
  RoomServer b(redis.url(), ns, "b");

  const int port = free_port();
  Child driver = spawn("/usr/bin/chromedriver", {"--port=" + std::to_string(port)});
  REQUIRE(!read_line_with(driver, "started successfully", milliseconds(30000)).empty());
  const auto dir = std::filesystem::temp_directory_path() /
                   ("fleet-chromium-" + std::to_string(::getpid()));
  {
    Browser tab_a(port, (dir / "a").string());
    Browser tab_b(port, (dir / "b").string());
    tab_a.go("http://" + a.address() + "/");
    tab_b.go("http://" + b.address() + "/");
    tab_a.type("#room", "demo");
    tab_a.type("#name", "alice");
    tab_a.click("#join");
    REQUIRE(
        within(kWait, [&] { return tab_a.text("#status").find("joined demo") == 0; }));
    tab_b.type("#room", "demo");
    tab_b.type("#name", "bob");
    tab_b.click("#join");
    REQUIRE(
        within(kWait, [&] { return tab_b.text("#status").find("joined demo") == 0; }));
    CHECK(tab_b.text("#status").find("connected to b") != std::string::npos);
    // Both tabs list both people and the instance each is connected to.
    REQUIRE(within(kWait, [&] {
      const std::string people = tab_a.text("#participants");
      return people.find("alice @ a") != std::string::npos &&
             people.find("bob @ b") != std::string::npos;
    }));
    tab_a.type("#text", "hello from A");
    tab_a.click("#send");
    REQUIRE(within(kWait, [&] {
      return tab_b.text("#log").find("alice (via a): hello from A") != std::string::npos;
    }));
    tab_b.type("#text", "and back from B");
    tab_b.click("#send");
    REQUIRE(within(kWait, [&] {
      return tab_a.text("#log").find("bob (via b): and back from B") != std::string::npos;
    }));
  }
  signal_child(driver, SIGTERM);
  int code = 0;
  finish(driver, &code, std::chrono::seconds(20));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace fleet::testing
