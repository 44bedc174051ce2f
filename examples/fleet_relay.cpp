// fleet-relay: a UDP relay whose sessions survive the death of the instance
// holding them (fleet::relay).
//
//   fleet-relay --redis-url URL --id ID --address IP [--control-port N]
//               [--namespace NS] [--relay NAME] [--group G] [--replicate a,b]
//               [--session-ttl-ms MS] [--heartbeat-ms MS] [--check-ms MS]
//               [--max-seconds S] [--quiet]
//
// A session joins two UDP endpoints A and B through two ports of this
// instance's own address (--address): what A sends to port_a goes to B
// from port_b, and what B sends to port_b goes to A from port_a. The
// session's document (address, ports, endpoints) replicates to the other
// instances; when this instance dies, the instance that takes a session over
// binds the same ports on the same address, which it stands in for, so the
// endpoints need not be told anything (on one machine: 127.0.0.x loopback
// addresses; across machines the address must move with it, like a VIP).
//
// Control: newline-delimited JSON over TCP on 127.0.0.1:--control-port.
//   {"op":"create","id":"c1","a":"127.0.0.1:5000","b":"127.0.0.1:6000"[,"ttl_ms":N]}
//   {"op":"get","id":"c1"}   {"op":"delete","id":"c1"[,"forward":false]}
//   {"op":"update","id":"c1","a":"...","b":"..."}   {"op":"counts"}   {"op":"list"}
// Each answers one line: {"ok":true,...} or {"ok":false,"code":"NOT_FOUND",
// "error":"..."}. A delete of a peer's session is forwarded to its owner
// unless "forward" is false (then FAILED_PRECONDITION: the owner's copy is
// never touched by a non-owner).
//
// The password comes from the URL or FLEET_REDIS_PASSWORD, never a flag.
// On start it waits (logging why) until it can join: while the instance's
// previous incarnation is still a member, and while Redis answers that it is
// a read-only replica.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "flags.hpp"
#include "fleet/fleet.hpp"
#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "tls_flags.hpp"

namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;

constexpr const char* kUsage =
    "usage: fleet-relay --redis-url URL --id ID --address IP [--control-port N]\n"
    "         [--namespace NS] [--relay NAME] [--group G] [--replicate a,b]\n"
    "         [--session-ttl-ms MS] [--heartbeat-ms MS] [--check-ms MS]\n"
    "         [--max-seconds S] [--quiet]\n" FLEET_TLS_FLAGS_USAGE;

struct Options {
  std::string redis_url, id, address, ns = "fleet", relay = "default", group;
  std::set<std::string> replicate;
  int control_port = 0, session_ttl_ms = 3000, heartbeat_ms = 500, check_ms = 500;
  int max_seconds = 0;
  bool quiet = false;
  fleet::RedisTlsOptions tls;
};

[[noreturn]] void usage_error(const std::string& problem) {
  std::fprintf(stderr, "fleet-relay: %s\n%s", problem.c_str(), kUsage);
  std::exit(2);
}

long integer(const std::string& flag, const std::string& text, long min, long max) {
  return flag_integer(flag, text, min, max, usage_error);
}

bool parse_ip(const std::string& text, in_addr* out) {
  return ::inet_pton(AF_INET, text.c_str(), out) == 1;
}

// "ip:port" -> sockaddr_in; false when malformed.
bool parse_endpoint(const std::string& text, sockaddr_in* out) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  char* end = nullptr;
  const long port = std::strtol(text.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port <= 0 || port > 65535) return false;
  *out = sockaddr_in{};
  out->sin_family = AF_INET;
  out->sin_port = htons(static_cast<std::uint16_t>(port));
  return parse_ip(text.substr(0, colon), &out->sin_addr);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quiet") {
      o.quiet = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) usage_error("missing value for " + a);
    const std::string v = argv[++i];
    if (tls_flag(a, v, &o.tls)) continue;
    if (a == "--redis-url") {
      o.redis_url = v;
    } else if (a == "--id") {
      o.id = v;
    } else if (a == "--address") {
      o.address = v;
    } else if (a == "--control-port") {
      o.control_port = static_cast<int>(integer(a, v, 0, 65535));
    } else if (a == "--namespace") {
      o.ns = v;
    } else if (a == "--relay") {
      o.relay = v;
    } else if (a == "--group") {
      o.group = v;
    } else if (a == "--replicate") {
      std::size_t start = 0;
      while (start <= v.size()) {
        std::size_t end = v.find(',', start);
        if (end == std::string::npos) end = v.size();
        if (end > start) o.replicate.insert(v.substr(start, end - start));
        start = end + 1;
      }
    } else if (a == "--session-ttl-ms") {
      o.session_ttl_ms = static_cast<int>(integer(a, v, 10, 3600000));
    } else if (a == "--heartbeat-ms") {
      o.heartbeat_ms = static_cast<int>(integer(a, v, 5, 3600000));
    } else if (a == "--check-ms") {
      o.check_ms = static_cast<int>(integer(a, v, 5, 3600000));
    } else if (a == "--max-seconds") {
      o.max_seconds = static_cast<int>(integer(a, v, 1, 31536000));
    } else {
      usage_error("unknown flag " + a);
    }
  }
  if (o.redis_url.empty()) usage_error("--redis-url is required");
  if (o.id.empty()) usage_error("--id is required");
  in_addr ip{};
  if (!parse_ip(o.address, &ip)) usage_error("--address needs an IPv4 address");
  return o;
}

// The UDP side: two sockets per served session, one thread polling them all.
class Forwarder {
 public:
  struct Ports {
    int port_a = 0, port_b = 0;
  };

  ~Forwarder() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, s] : sessions_) close_session(s);
  }

  void start() {
    thread_ = std::thread([this] { loop(); });
  }

  // Binds address:port_a and address:port_b (0: any free port) and starts
  // forwarding between endpoints a and b. Returns the ports bound.
  absl::StatusOr<Ports> serve(const std::string& id, const std::string& address,
                              Ports want, const sockaddr_in& a, const sockaddr_in& b) {
    Served s;
    s.a = a;
    s.b = b;
    auto fa = bind_udp(address, want.port_a);
    if (!fa.ok()) return fa.status();
    s.fd_a = *fa;
    auto fb = bind_udp(address, want.port_b);
    if (!fb.ok()) {
      ::close(s.fd_a);
      return fb.status();
    }
    s.fd_b = *fb;
    Ports got{local_port(s.fd_a), local_port(s.fd_b)};
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = sessions_.find(id); it != sessions_.end()) close_session(it->second);
    sessions_[id] = s;
    return got;
  }

  void set_endpoints(const std::string& id, const sockaddr_in& a, const sockaddr_in& b) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    it->second.a = a;
    it->second.b = b;
  }

  void stop_serving(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    close_session(it->second);
    sessions_.erase(it);
  }

  void stop_all() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, s] : sessions_) close_session(s);
    sessions_.clear();
  }

  bool serving(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    return sessions_.count(id) != 0;
  }
  std::size_t count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sessions_.size();
  }
  long forwarded() const { return forwarded_.load(); }

 private:
  struct Served {
    int fd_a = -1, fd_b = -1;
    sockaddr_in a{}, b{};
  };

  // Under mu_.
  void close_session(Served& s) {
    if (s.fd_a >= 0) ::close(s.fd_a);
    if (s.fd_b >= 0) ::close(s.fd_b);
    s.fd_a = s.fd_b = -1;
    ++closed_;
  }

  static absl::StatusOr<int> bind_udp(const std::string& address, int port) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError("socket() failed");
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    parse_ip(address, &sa.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      const int err = errno;
      ::close(fd);
      return absl::UnavailableError(
          fmt::format("cannot bind {}:{}: {}", address, port, std::strerror(err)));
    }
    return fd;
  }

  static int local_port(int fd) {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    return ntohs(sa.sin_port);
  }

  void loop() {
    std::vector<pollfd> fds;
    // Per pollfd: the socket to send from and the endpoint to send to.
    std::vector<std::pair<int, sockaddr_in>> route;
    char buf[65536];
    while (!stop_) {
      std::uint64_t closed_before;
      {
        // Rebuilt every round: sessions and endpoints change under us.
        std::lock_guard<std::mutex> lock(mu_);
        closed_before = closed_;
        fds.clear();
        route.clear();
        for (const auto& [id, s] : sessions_) {
          fds.push_back(pollfd{s.fd_a, POLLIN, 0});
          route.emplace_back(s.fd_b, s.b);
          fds.push_back(pollfd{s.fd_b, POLLIN, 0});
          route.emplace_back(s.fd_a, s.a);
        }
      }
      if (fds.empty()) {
        std::this_thread::sleep_for(milliseconds(5));
        continue;
      }
      // A short timeout: sockets closed meanwhile are dropped next round.
      if (::poll(fds.data(), fds.size(), 5) <= 0) continue;
      std::lock_guard<std::mutex> lock(mu_);  // no socket is closed while we use it
      // A socket closed during poll() may have had its number reused (by an
      // accepted control connection, say): reading it would steal that
      // connection's bytes. Poll again with the current sockets instead.
      if (closed_ != closed_before) continue;
      for (std::size_t i = 0; i < fds.size(); ++i) {
        if ((fds[i].revents & POLLIN) == 0) continue;
        for (;;) {
          const ssize_t n = ::recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT);
          if (n < 0) break;
          const auto& [out, to] = route[i];
          ::sendto(out, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL,
                   reinterpret_cast<const sockaddr*>(&to), sizeof to);
          ++forwarded_;
        }
      }
    }
  }

  mutable std::mutex mu_;
  std::map<std::string, Served> sessions_;
  std::uint64_t closed_ = 0;  // sessions closed so far (under mu_)
  std::atomic<bool> stop_{false};
  std::atomic<long> forwarded_{0};
  std::thread thread_;
};

std::string endpoint_text(const sockaddr_in& sa) {
  char ip[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
  return fmt::format("{}:{}", ip, ntohs(sa.sin_port));
}

Json error_json(const absl::Status& st) {
  return Json{{"ok", false},
              {"code", absl::StatusCodeToString(st.code())},
              {"error", std::string(st.message())}};
}

class Daemon {
 public:
  Daemon(Options o, fleet::Coordinator& c) : o_(std::move(o)), c_(c) {}

  absl::Status start(fleet::LogSink* sink) {
    fleet::relay::RelayOptions ro;
    ro.name = o_.relay;
    ro.group = o_.group;
    ro.replicate = o_.replicate;
    ro.check_interval = milliseconds(o_.check_ms);
    ro.takeover_grace = milliseconds(4 * o_.check_ms);
    ro.log_sink = sink;
    ro.on_event = [this](const fleet::relay::SessionEvent& e) { on_event(e); };
    forwarder_.start();
    auto relay = fleet::relay::Relay::create(c_, ro);
    if (!relay.ok()) return relay.status();
    relay_ = std::move(*relay);
    for (const auto& s : relay_->own()) serve(s, "restored");
    return absl::OkStatus();
  }

  // Stops the relay and closes every port (so a peer can bind them).
  void stop() {
    relay_.reset();
    forwarder_.stop_all();
  }

  fleet::relay::Relay& relay() { return *relay_; }
  Forwarder& forwarder() { return forwarder_; }

  Json handle(const std::string& line) {
    Json req;
    try {
      req = Json::parse(line);
    } catch (const std::exception&) {
      return error_json(absl::InvalidArgumentError("not a JSON object"));
    }
    if (!req.is_object() || !req.contains("op") || !req["op"].is_string()) {
      return error_json(absl::InvalidArgumentError("a request needs \"op\""));
    }
    const std::string op = req["op"];
    const std::string id = req.value("id", std::string());
    try {
      if (op == "create") return create(id, req);
      if (op == "update") return update(id, req);
      if (op == "get") {
        auto s = relay_->find(id);
        if (!s) return error_json(absl::NotFoundError("no session '" + id + "' here"));
        return Json{{"ok", true}, {"session", session_json(*s)}};
      }
      if (op == "delete") return remove(id, req.value("forward", true));
      if (op == "counts") return counts();
      if (op == "list") {
        Json own = Json::array(), foreign = Json::array();
        for (const auto& s : relay_->own()) own.push_back(session_json(s));
        for (const auto& s : relay_->foreign()) foreign.push_back(session_json(s));
        return Json{{"ok", true}, {"own", own}, {"foreign", foreign}};
      }
    } catch (const std::exception& e) {  // a field of the wrong JSON type
      return error_json(absl::InvalidArgumentError(e.what()));
    }
    return error_json(absl::InvalidArgumentError("unknown op '" + op + "'"));
  }

  Json counts() {
    const auto c = relay_->counts();
    return Json{{"ok", true},
                {"instance", o_.id},
                {"own", c.own},
                {"foreign", c.foreign},
                {"total", c.total()},
                {"serving", forwarder_.count()},
                {"forwarded", forwarder_.forwarded()},
                {"connection", std::string(fleet::to_string(c_.connection_state()))}};
  }

 private:
  Json session_json(const fleet::relay::Session& s) {
    Json doc = Json::parse(s.document, nullptr, false);
    return Json{{"id", s.id},
                {"owner", s.owner},
                {"role", s.owner == o_.id ? "own" : "foreign"},
                {"fence", s.fence},
                {"version", s.version},
                {"taken_from", s.taken_from},
                {"serving", forwarder_.serving(s.id)},
                {"document", doc.is_discarded() ? Json(s.document) : doc}};
  }

  Json create(const std::string& id, const Json& req) {
    sockaddr_in a{}, b{};
    if (!parse_endpoint(req.value("a", std::string()), &a) ||
        !parse_endpoint(req.value("b", std::string()), &b)) {
      return error_json(absl::InvalidArgumentError("\"a\" and \"b\" must be ip:port"));
    }
    if (auto st = fleet::validate_name("session id", id); !st.ok()) return error_json(st);
    if (relay_->find(id)) {
      return error_json(absl::AlreadyExistsError("session '" + id + "' exists"));
    }
    auto ports = forwarder_.serve(id, o_.address, {}, a, b);
    if (!ports.ok()) return error_json(ports.status());
    const Json doc{{"address", o_.address},
                   {"port_a", ports->port_a},
                   {"port_b", ports->port_b},
                   {"a", endpoint_text(a)},
                   {"b", endpoint_text(b)}};
    auto s = relay_->create_session(id, doc.dump(), milliseconds(req.value("ttl_ms", 0)));
    if (!s.ok()) {
      forwarder_.stop_serving(id);
      return error_json(s.status());
    }
    return Json{{"ok", true}, {"session", session_json(*s)}};
  }

  Json update(const std::string& id, const Json& req) {
    auto cur = relay_->find(id);
    if (!cur) return error_json(absl::NotFoundError("no session '" + id + "' here"));
    Json doc = Json::parse(cur->document, nullptr, false);
    if (doc.is_discarded())
      return error_json(absl::DataLossError("stored document is not JSON"));
    sockaddr_in a{}, b{};
    if (!parse_endpoint(req.value("a", doc.value("a", std::string())), &a) ||
        !parse_endpoint(req.value("b", doc.value("b", std::string())), &b)) {
      return error_json(absl::InvalidArgumentError("\"a\" and \"b\" must be ip:port"));
    }
    doc["a"] = endpoint_text(a);
    doc["b"] = endpoint_text(b);
    auto s = relay_->update(id, doc.dump());
    if (!s.ok()) return error_json(s.status());
    forwarder_.set_endpoints(id, a, b);
    return Json{{"ok", true}, {"session", session_json(*s)}};
  }

  Json remove(const std::string& id, bool forward) {
    auto cur = relay_->find(id);
    if (cur && cur->owner != o_.id) {
      if (!forward) {
        return error_json(absl::FailedPreconditionError(
            "session '" + id + "' is owned by '" + cur->owner + "'; not forwarded"));
      }
      auto st = relay_->forward_remove(id);
      if (!st.ok()) return error_json(st);
      return Json{{"ok", true}, {"forwarded_to", cur->owner}};
    }
    auto st = relay_->remove(id);
    if (!st.ok()) return error_json(st);
    forwarder_.stop_serving(id);
    return Json{{"ok", true}};
  }

  void serve(const fleet::relay::Session& s, const char* why) {
    Json doc = Json::parse(s.document, nullptr, false);
    sockaddr_in a{}, b{};
    if (doc.is_discarded() || !doc.is_object() ||
        !parse_endpoint(doc.value("a", std::string()), &a) ||
        !parse_endpoint(doc.value("b", std::string()), &b)) {
      std::fprintf(stderr,
                   "fleet-relay: session '%s' has an unusable document; not served\n",
                   s.id.c_str());
      return;
    }
    const std::string address = doc.value("address", o_.address);
    Forwarder::Ports want{doc.value("port_a", 0), doc.value("port_b", 0)};
    auto ports = forwarder_.serve(s.id, address, want, a, b);
    if (!ports.ok()) {
      std::fprintf(stderr, "fleet-relay: session '%s' (%s): %s\n", s.id.c_str(), why,
                   std::string(ports.status().message()).c_str());
      return;
    }
    if (!o_.quiet) {
      std::fprintf(stderr, "fleet-relay: serving session '%s' on %s:%d/%d (%s%s%s)\n",
                   s.id.c_str(), address.c_str(), ports->port_a, ports->port_b, why,
                   s.taken_from.empty() ? "" : " from ", s.taken_from.c_str());
    }
  }

  void on_event(const fleet::relay::SessionEvent& e) {
    using fleet::relay::SessionEventType;
    if (e.type == SessionEventType::kTaken) {
      serve(e.session, "taken over");
    } else {
      forwarder_.stop_serving(e.session.id);
      if (!o_.quiet) {
        std::fprintf(stderr, "fleet-relay: stopped serving session '%s' (%s: %s)\n",
                     e.session.id.c_str(), std::string(to_string(e.type)).c_str(),
                     e.reason.c_str());
      }
    }
  }

  Options o_;
  fleet::Coordinator& c_;
  Forwarder forwarder_;
  std::unique_ptr<fleet::relay::Relay> relay_;
};

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

std::mutex g_conn_mu;
std::set<int> g_conn_fds;  // open control connections, shut down on exit

// One thread per control connection; lines in, one JSON line out per line.
void control_connection(int fd, Daemon* d) {
  std::string buf;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) break;
    buf.append(chunk, static_cast<std::size_t>(n));
    if (buf.size() > 1 << 20) break;  // a line over 1 MiB: drop the connection
    std::size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      const std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      const std::string out = d->handle(line).dump() + "\n";
      if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) < 0) break;
    }
  }
  std::lock_guard<std::mutex> lock(g_conn_mu);
  g_conn_fds.erase(fd);
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  fleet::LogSink* sink = o.quiet ? fleet::quiet_log_sink() : fleet::stderr_log_sink();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::seconds(o.max_seconds > 0 ? o.max_seconds : 1 << 30);

  fleet::RedisOptions ro;
  ro.url = o.redis_url;
  ro.tls = o.tls;
  ro.namespace_name = o.ns;
  ro.session_ttl = milliseconds(o.session_ttl_ms);
  ro.heartbeat_interval = milliseconds(o.heartbeat_ms);
  ro.log_sink = sink;
  std::unique_ptr<fleet::Coordinator> coordinator;
  fleet::InstanceInfo me;
  me.id = o.id;
  me.metadata["role"] = "relay";
  me.metadata["address"] = o.address;
  // Wait until Redis takes writes and our previous incarnation is gone.
  std::string last_reason;
  for (;;) {
    absl::Status st;
    if (!coordinator) {
      auto c = fleet::RedisCoordinator::connect(ro);
      if (c.ok()) coordinator = std::move(*c);
      st = c.status();
    }
    if (coordinator) st = coordinator->join(me);
    if (st.ok()) break;
    if (st.code() == absl::StatusCode::kInvalidArgument ||
        st.code() == absl::StatusCode::kUnauthenticated || g_stop ||
        std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "fleet-relay: %s\n", std::string(st.message()).c_str());
      return 1;
    }
    const std::string reason = st.code() == absl::StatusCode::kAlreadyExists
                                   ? "instance id still held by its previous session"
                                   : std::string(st.message());
    if (reason != last_reason) {
      std::fprintf(stderr, "fleet-relay: waiting to join as '%s': %s\n", o.id.c_str(),
                   reason.c_str());
      last_reason = reason;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }

  Daemon daemon(o, *coordinator);
  if (auto st = daemon.start(sink); !st.ok()) {
    std::fprintf(stderr, "fleet-relay: %s\n", std::string(st.message()).c_str());
    return 1;
  }

  const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(o.control_port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::listen(lfd, 64) != 0 ||
      ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    std::fprintf(stderr, "fleet-relay: cannot listen on 127.0.0.1:%d\n", o.control_port);
    return 1;
  }
  const auto& r = daemon.relay().restore_report();
  std::printf(
      "fleet-relay %s control 127.0.0.1:%d address %s restored own=%zu foreign=%zu "
      "lost=%zu "
      "malformed=%zu in %.1f ms\n",
      o.id.c_str(), ntohs(sa.sin_port), o.address.c_str(), r.own, r.foreign, r.lost,
      r.malformed, r.took.count() / 1000.0);
  std::fflush(stdout);

  std::vector<std::thread> connections;
  while (!g_stop && std::chrono::steady_clock::now() < deadline) {
    pollfd p{lfd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    {
      std::lock_guard<std::mutex> lock(g_conn_mu);
      g_conn_fds.insert(fd);
    }
    connections.emplace_back(control_connection, fd, &daemon);
  }
  ::shutdown(lfd, SHUT_RDWR);
  ::close(lfd);
  {
    std::lock_guard<std::mutex> lock(g_conn_mu);
    for (int fd : g_conn_fds) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : connections) t.join();
  // Graceful stop: close the ports, then leave, so that peers take the
  // sessions over at once and can bind them.
  daemon.stop();
  (void)coordinator->leave();
  std::printf("fleet-relay %s stopped\n", o.id.c_str());
  return 0;
}
