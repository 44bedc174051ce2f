// fleet-room-server: a WebSocket chat server whose rooms span instances
// (fleet::rooms). Clients connect to any instance; each room is hosted on
// one node (an instance), chosen and kept by fleet.
//
//   fleet-room-server --redis-url URL --id ID [--listen 127.0.0.1:PORT]
//                     [--address HOST:PORT] [--region R] [--max-rooms N]
//                     [--mode relay|redirect] [--namespace NS] [--rooms NAME]
//                     [--max-message-bytes N] [--session-ttl-ms MS]
//                     [--heartbeat-ms MS] [--max-seconds S] [--quiet]
//
// HTTP on --listen: "/" is a page to join a room and chat, "/info" this
// instance as JSON, "/ws" the WebSocket. Messages are JSON objects:
//   client -> server  {"type":"join","room":"R","identity":"alice"}
//                     {"type":"chat","text":"hi"}   {"type":"leave"}
//   server -> client  {"type":"hello","instance":...}
//                     {"type":"joined","room","node","instance","participants":[...]}
//                     {"type":"redirect","node","address"}     (redirect mode)
//                     {"type":"participant","event":"joined|left","identity","instance"}
//                     {"type":"chat","from","text","instance","ts"}
//                     {"type":"moved","node","cause"}  {"type":"gap","reason"}
//                     {"type":"error","message"}
// When several messages wait for one client they go as one JSON array.
// Relay mode (default): a client may join any room on any instance; the
// room's messages cross instances through fleet. Redirect mode: a join of
// a room hosted elsewhere is answered with the hosting node's address.
//
// The password comes from the URL or FLEET_REDIS_PASSWORD, never a flag.
#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <csignal>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client_errors.hpp"
#include "flags.hpp"
#include "fleet/fleet.hpp"
#include "fleet/rooms.hpp"
#include "nlohmann/json.hpp"
#include "room_page.hpp"
#include "tls_flags.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Json = nlohmann::json;
using std::chrono::milliseconds;

constexpr const char* kUsage =
    "usage: fleet-room-server --redis-url URL --id ID [--listen 127.0.0.1:PORT]\n"
    "         [--address HOST:PORT] [--region R] [--max-rooms N] [--mode "
    "relay|redirect]\n"
    "         [--namespace NS] [--rooms NAME] [--max-message-bytes N]\n"
    "         [--session-ttl-ms MS] [--heartbeat-ms MS] [--max-seconds S] "
    "[--quiet]\n" FLEET_TLS_FLAGS_USAGE;

struct Options {
  std::string redis_url, id, listen = "127.0.0.1:0", address, region, ns = "fleet",
                             rooms = "default";
  bool redirect = false, quiet = false;
  long max_rooms = 0, max_message_bytes = 16 * 1024;
  int session_ttl_ms = 3000, heartbeat_ms = 500, max_seconds = 0;
  fleet::RedisTlsOptions tls;
};

[[noreturn]] void usage_error(const std::string& problem) {
  std::fprintf(stderr, "fleet-room-server: %s\n%s", problem.c_str(), kUsage);
  std::exit(2);
}

long integer(const std::string& flag, const std::string& text, long min, long max) {
  return flag_integer(flag, text, min, max, usage_error);
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
    } else if (a == "--listen") {
      o.listen = v;
    } else if (a == "--address") {
      o.address = v;
    } else if (a == "--region") {
      o.region = v;
    } else if (a == "--max-rooms") {
      o.max_rooms = integer(a, v, 0, 1L << 40);
    } else if (a == "--mode") {
      if (v != "relay" && v != "redirect") usage_error("--mode is relay or redirect");
      o.redirect = v == "redirect";
    } else if (a == "--namespace") {
      o.ns = v;
    } else if (a == "--rooms") {
      o.rooms = v;
    } else if (a == "--max-message-bytes") {
      o.max_message_bytes = integer(a, v, 1, 512 * 1024);
    } else if (a == "--session-ttl-ms") {
      o.session_ttl_ms = static_cast<int>(integer(a, v, 10, 3600000));
    } else if (a == "--heartbeat-ms") {
      o.heartbeat_ms = static_cast<int>(integer(a, v, 5, 3600000));
    } else if (a == "--max-seconds") {
      o.max_seconds = static_cast<int>(integer(a, v, 1, 31536000));
    } else {
      usage_error("unknown flag " + a);
    }
  }
  if (o.redis_url.empty()) usage_error("--redis-url is required");
  if (o.id.empty()) usage_error("--id is required");
  return o;
}

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

std::string error_json(const std::string& message) {
  return Json{{"type", "error"}, {"message", message}}.dump(
      -1, ' ', false, Json::error_handler_t::replace);
}

class Server;

// One WebSocket client. Lives on the I/O thread; `server_` calls in from
// there too. A client is in at most one room, as one identity.
class Client : public std::enable_shared_from_this<Client> {
 public:
  Client(Server& server, tcp::socket socket) : server_(server), ws_(std::move(socket)) {}

  void start(http::request<http::string_body> req);
  // Queues a JSON text for the client (I/O thread only).
  void send(std::shared_ptr<const std::string> text);
  void close() {
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
  }

  std::string room, identity;  // set once joined (I/O thread)

 private:
  void read();
  void on_read(beast::error_code ec);
  void write_next();
  void gone();

  Server& server_;
  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer in_;
  std::deque<std::shared_ptr<const std::string>> out_;
  std::string batch_;
  bool writing_ = false, closed_ = false;
};

class Server {
 public:
  Server(const Options& o, fleet::Coordinator& c, asio::io_context& io)
      : o_(o), c_(c), io_(io), acceptor_(io), fleet_thread_(1) {}

  absl::Status start(fleet::LogSink* sink, const tcp::endpoint& at) {
    fleet::rooms::RoomsOptions ro;
    ro.name = o_.rooms;
    ro.host = fleet::rooms::NodeInfo{address_, o_.region, o_.max_rooms,
                                     fleet::rooms::NodeState::kServing};
    ro.region = o_.region;
    ro.max_message_bytes = static_cast<std::size_t>(o_.max_message_bytes) + 1024;
    ro.log_sink = sink;
    ro.on_message = [this](const fleet::rooms::Delivery& d) {
      auto text = std::make_shared<const std::string>(d.payload);
      asio::post(io_, [this, room = d.room, who = d.recipients, text] {
        for (const auto& id : who) to_member(room, id, text);
      });
    };
    ro.on_participant = [this](const fleet::rooms::ParticipantEvent& e) {
      const char* event = e.type == fleet::rooms::ParticipantEventType::kLeft ? "left"
                          : e.type == fleet::rooms::ParticipantEventType::kJoined
                              ? "joined"
                              : "updated";
      auto text = std::make_shared<const std::string>(Json{
          {"type", "participant"},
          {"event", event},
          {"identity", e.participant.identity},
          {"instance", e.participant.instance}}.dump());
      asio::post(io_, [this, room = e.room, text] { to_room(room, text); });
    };
    ro.on_room_event = [this](const fleet::rooms::RoomEvent& e) {
      if (e.type != fleet::rooms::RoomEventType::kMoved) return;
      auto text = std::make_shared<const std::string>(
          Json{{"type", "moved"}, {"node", e.to}, {"cause", e.cause}}.dump());
      asio::post(io_, [this, room = e.room, text] { to_room(room, text); });
    };
    ro.on_gap = [this](const fleet::rooms::Gap& g) {
      auto text = std::make_shared<const std::string>(
          Json{{"type", "gap"}, {"reason", g.reason}}.dump());
      asio::post(io_, [this, room = g.room, text] { to_room(room, text); });
    };
    ro.on_disconnect = [this](std::string_view identity) -> std::size_t {
      std::size_t n = 0;
      {
        std::lock_guard<std::mutex> lock(count_mu_);
        auto it = identities_.find(std::string(identity));
        n = it == identities_.end() ? 0 : it->second;
      }
      asio::post(io_, [this, id = std::string(identity)] {
        for (auto& [room, members] : members_) {
          auto it = members.find(id);
          if (it == members.end()) continue;
          for (const auto& weak : it->second)
            if (auto cl = weak.lock()) cl->close();
        }
      });
      return n;
    };
    auto rooms = fleet::rooms::Rooms::create(c_, std::move(ro));
    if (!rooms.ok()) return rooms.status();
    rooms_ = std::move(*rooms);

    beast::error_code ec;
    acceptor_.open(at.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(at, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError("cannot listen on " + o_.listen + ": " +
                                    ec.message());
    }
    accept();
    return absl::OkStatus();
  }

  void set_address(std::string a) { address_ = std::move(a); }
  tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  const std::string& id() const { return o_.id; }
  const std::string& address() const { return address_; }

  void stop() {
    beast::error_code ec;
    acceptor_.close(ec);
    fleet_thread_.join();
    rooms_.reset();
  }

  // ---- from clients (I/O thread) ------------------------------------------------

  void on_text(const std::shared_ptr<Client>& cl, const std::string& text) {
    auto m = Json::parse(text, nullptr, false);
    if (m.is_discarded() || !m.is_object() || !m.contains("type") ||
        !m["type"].is_string()) {
      cl->send(std::make_shared<const std::string>(
          error_json("not a JSON object with a type")));
      return;
    }
    const std::string type = m["type"].get<std::string>();
    if (type == "join") {
      if (!cl->room.empty()) {
        cl->send(std::make_shared<const std::string>(error_json("already in a room")));
        return;
      }
      const std::string room = m.value("room", ""), id = m.value("identity", "");
      if (auto s = fleet::rooms::validate_room(room); !s.ok()) {
        cl->send(
            std::make_shared<const std::string>(error_json(std::string(s.message()))));
        return;
      }
      if (auto s = fleet::rooms::validate_identity(id); !s.ok()) {
        cl->send(
            std::make_shared<const std::string>(error_json(std::string(s.message()))));
        return;
      }
      cl->room = room;
      cl->identity = id;
      add_member(cl);
      // fleet's calls block on Redis: they run on their own thread, in order.
      asio::post(fleet_thread_, [this, cl, room, id] { join(cl, room, id); });
    } else if (type == "chat") {
      if (cl->room.empty()) {
        cl->send(std::make_shared<const std::string>(error_json("join a room first")));
        return;
      }
      const std::string body = m.value("text", "");
      if (body.size() > static_cast<std::size_t>(o_.max_message_bytes)) {
        cl->send(std::make_shared<const std::string>(
            error_json("message is " + std::to_string(body.size()) +
                       " bytes; the limit is " + std::to_string(o_.max_message_bytes))));
        return;
      }
      const auto ts = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
      std::string payload = Json{
          {"type", "chat"},
          {"from", cl->identity},
          {"text", body},
          {"instance", o_.id},
          {"ts", ts}}.dump(-1, ' ', false, Json::error_handler_t::replace);
      asio::post(fleet_thread_, [this, cl, room = cl->room, from = cl->identity,
                                 payload = std::move(payload)] {
        fleet::rooms::BroadcastOptions sender;
        sender.from = from;  // the sender sees its own message too (the chat's echo)
        absl::Status st = rooms_->broadcast(room, payload, sender);
        if (!st.ok()) reply_error(cl, "broadcast", st);
      });
    } else if (type == "leave") {
      left(cl);
    } else {
      cl->send(
          std::make_shared<const std::string>(error_json("unknown type '" + type + "'")));
    }
  }

  void left(const std::shared_ptr<Client>& cl) {
    if (cl->room.empty()) return;
    const std::string room = std::exchange(cl->room, {}),
                      id = std::exchange(cl->identity, {});
    if (remove_member(room, id, cl)) {
      asio::post(fleet_thread_, [this, room, id] {
        absl::Status st = rooms_->leave(room, id);
        if (!st.ok() && st.code() != absl::StatusCode::kNotFound) {
          std::fprintf(stderr, "fleet-room-server: leave of %s from %s: %s\n", id.c_str(),
                       room.c_str(), std::string(st.message()).c_str());
        }
      });
    }
  }

  std::string info_json() const {
    return Json{{"instance", o_.id},
                {"address", address_},
                {"mode", o_.redirect ? "redirect" : "relay"}}
        .dump();
  }

 private:
  void accept();

  // On the fleet thread.
  void join(const std::shared_ptr<Client>& cl, const std::string& room,
            const std::string& id) {
    if (o_.redirect) {
      auto p = rooms_->assign(room);
      if (!p.ok()) {
        reply_error(cl, "assign", p.status());
        return;
      }
      if (p->node != o_.id) {
        auto text = std::make_shared<const std::string>(Json{
            {"type", "redirect"},
            {"node", p->node},
            {"address", p->address}}.dump());
        asio::post(io_, [this, cl, text] {
          cl->send(text);
          left(cl);  // not a member here
        });
        return;
      }
    }
    auto p = rooms_->join(room, id);
    if (!p.ok()) {
      reply_error(cl, "join", p.status());
      asio::post(io_, [this, cl] { left(cl); });
      return;
    }
    Json people = Json::array();
    auto st = rooms_->state(room);
    if (st.ok()) {
      for (const auto& q : st->participants) {
        people.push_back({{"identity", q.identity}, {"instance", q.instance}});
      }
    }
    auto text = std::make_shared<const std::string>(Json{
        {"type", "joined"},
        {"room", room},
        {"node", p->node},
        {"address", p->address},
        {"instance", o_.id},
        {"participants", people}}.dump(-1, ' ', false, Json::error_handler_t::replace));
    asio::post(io_, [cl, text] { cl->send(text); });
  }

  // The client gets client_message(st) (nothing that names Redis), or for a
  // broadcast that reached this server's members only, that; the log gets
  // the whole status.
  void reply_error(const std::shared_ptr<Client>& cl, const std::string& what,
                   const absl::Status& st) {
    errors_.note(what, st);
    auto text = std::make_shared<const std::string>(error_json(
        fleet::rooms::reached_local_members_only(st)
            ? "your message reached the members on this server only; the others will be "
              "told they missed it"
            : client_message(st)));
    asio::post(io_, [cl, text] { cl->send(text); });
  }

  void add_member(const std::shared_ptr<Client>& cl) {
    members_[cl->room][cl->identity].push_back(cl);
    std::lock_guard<std::mutex> lock(count_mu_);
    ++identities_[cl->identity];
  }

  // True when it was the identity's last connection in the room.
  bool remove_member(const std::string& room, const std::string& id,
                     const std::shared_ptr<Client>& cl) {
    {
      std::lock_guard<std::mutex> lock(count_mu_);
      if (--identities_[id] == 0) identities_.erase(id);
    }
    auto r = members_.find(room);
    if (r == members_.end()) return false;
    auto m = r->second.find(id);
    if (m == r->second.end()) return false;
    auto& v = m->second;
    v.erase(std::remove_if(v.begin(), v.end(),
                           [&](const std::weak_ptr<Client>& w) {
                             auto s = w.lock();
                             return !s || s == cl;
                           }),
            v.end());
    if (!v.empty()) return false;
    r->second.erase(m);
    if (r->second.empty()) members_.erase(r);
    return true;
  }

  void to_member(const std::string& room, const std::string& id,
                 const std::shared_ptr<const std::string>& text) {
    auto r = members_.find(room);
    if (r == members_.end()) return;
    auto m = r->second.find(id);
    if (m == r->second.end()) return;
    for (const auto& weak : m->second)
      if (auto cl = weak.lock()) cl->send(text);
  }

  void to_room(const std::string& room, const std::shared_ptr<const std::string>& text) {
    auto r = members_.find(room);
    if (r == members_.end()) return;
    for (const auto& [id, conns] : r->second)
      for (const auto& weak : conns)
        if (auto cl = weak.lock()) cl->send(text);
  }

  const Options& o_;
  fleet::Coordinator& c_;
  asio::io_context& io_;
  tcp::acceptor acceptor_;
  asio::thread_pool fleet_thread_;
  std::string address_;
  std::unique_ptr<fleet::rooms::Rooms> rooms_;
  // room -> identity -> connections (I/O thread only).
  std::map<std::string, std::map<std::string, std::vector<std::weak_ptr<Client>>>>
      members_;
  std::mutex count_mu_;
  std::map<std::string, std::size_t> identities_;  // connections per identity
  ErrorLog errors_{"fleet-room-server"};
};

// An HTTP connection: the page, /info, or the upgrade to /ws.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(Server& server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)) {}

  void start() { read(); }

 private:
  void read() {
    req_ = {};
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, req_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    if (ec) return;
    if (websocket::is_upgrade(req_)) {
      if (req_.target() != "/ws") return;
      stream_.expires_never();
      std::make_shared<Client>(server_, stream_.release_socket())->start(std::move(req_));
      return;
    }
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(req_.version());
    res->keep_alive(req_.keep_alive());
    if (req_.method() == http::verb::get &&
        (req_.target() == "/" || req_.target() == "/index.html")) {
      res->result(http::status::ok);
      res->set(http::field::content_type, "text/html; charset=utf-8");
      res->body() = kRoomPage;
    } else if (req_.method() == http::verb::get && req_.target() == "/info") {
      res->result(http::status::ok);
      res->set(http::field::content_type, "application/json");
      res->body() = server_.info_json();
    } else {
      res->result(http::status::not_found);
      res->set(http::field::content_type, "text/plain");
      res->body() = "not found\n";
    }
    res->prepare_payload();
    http::async_write(
        stream_, *res,
        [self = shared_from_this(), res](beast::error_code ec, std::size_t) {
          if (!ec && res->keep_alive()) self->read();
        });
  }

  Server& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
};

void Server::accept() {
  acceptor_.async_accept(
      asio::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
        if (ec) return;  // closed
        socket.set_option(tcp::no_delay(true), ec);
        std::make_shared<HttpSession>(*this, std::move(socket))->start();
        accept();
      });
}

void Client::start(http::request<http::string_body> req) {
  ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws_.read_message_max(1 << 20);
  ws_.async_accept(req, [self = shared_from_this()](beast::error_code ec) {
    if (ec) return;
    self->send(std::make_shared<const std::string>(
        Json{{"type", "hello"}, {"instance", self->server_.id()}}.dump()));
    self->read();
  });
}

void Client::read() {
  ws_.async_read(in_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    self->on_read(ec);
  });
}

void Client::on_read(beast::error_code ec) {
  if (ec) {
    gone();
    return;
  }
  std::string text = beast::buffers_to_string(in_.data());
  in_.consume(in_.size());
  server_.on_text(shared_from_this(), text);
  read();
}

void Client::gone() {
  if (closed_) return;
  closed_ = true;
  server_.left(shared_from_this());
}

void Client::send(std::shared_ptr<const std::string> text) {
  if (closed_) return;
  if (out_.size() > 100000) {  // a client that does not read: drop it
    close();
    return;
  }
  out_.push_back(std::move(text));
  if (!writing_) write_next();
}

void Client::write_next() {
  if (out_.empty() || closed_) {
    writing_ = false;
    return;
  }
  writing_ = true;
  // Everything waiting goes in one frame: a JSON array of the messages.
  if (out_.size() == 1) {
    batch_ = *out_.front();
    out_.pop_front();
  } else {
    batch_ = "[";
    std::size_t n = 0;
    while (!out_.empty() && n < 512) {
      if (n++ > 0) batch_ += ',';
      batch_ += *out_.front();
      out_.pop_front();
    }
    batch_ += ']';
  }
  ws_.text(true);
  ws_.async_write(asio::buffer(batch_),
                  [self = shared_from_this()](beast::error_code ec, std::size_t) {
                    if (ec) {
                      self->gone();
                      return;
                    }
                    self->write_next();
                  });
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  fleet::LogSink* sink = o.quiet ? fleet::quiet_log_sink() : fleet::stderr_log_sink();
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::seconds(o.max_seconds > 0 ? o.max_seconds : 1 << 30);

  const auto colon = o.listen.rfind(':');
  beast::error_code ec;
  const auto ip = asio::ip::make_address(
      o.listen.substr(0, colon == std::string::npos ? 0 : colon), ec);
  const long port = colon == std::string::npos
                        ? -1
                        : std::strtol(o.listen.c_str() + colon + 1, nullptr, 10);
  if (ec || port < 0 || port > 65535)
    usage_error("--listen needs IP:PORT, not " + o.listen);

  fleet::RedisOptions ro;
  ro.url = o.redis_url;
  ro.tls = o.tls;
  ro.namespace_name = o.ns;
  ro.session_ttl = milliseconds(o.session_ttl_ms);
  ro.heartbeat_interval = milliseconds(o.heartbeat_ms);
  ro.log_sink = sink;

  asio::io_context io;
  // Bind first, so that the advertised address has the real port.
  tcp::acceptor probe(io);
  tcp::endpoint at(ip, static_cast<unsigned short>(port));
  probe.open(at.protocol(), ec);
  if (!ec) probe.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) probe.bind(at, ec);
  if (ec) {
    std::fprintf(stderr, "fleet-room-server: cannot listen on %s: %s\n", o.listen.c_str(),
                 ec.message().c_str());
    return 1;
  }
  at = probe.local_endpoint();
  probe.close();
  const std::string address =
      o.address.empty() ? at.address().to_string() + ":" + std::to_string(at.port())
                        : o.address;

  std::unique_ptr<fleet::Coordinator> coordinator;
  fleet::InstanceInfo me;
  me.id = o.id;
  me.metadata["role"] = "room-server";
  me.metadata["address"] = address;
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
      std::fprintf(stderr, "fleet-room-server: %s\n", std::string(st.message()).c_str());
      return 1;
    }
    const std::string reason = st.code() == absl::StatusCode::kAlreadyExists
                                   ? "instance id still held by its previous session"
                                   : std::string(st.message());
    if (reason != last_reason) {
      std::fprintf(stderr, "fleet-room-server: waiting to join as '%s': %s\n",
                   o.id.c_str(), reason.c_str());
      last_reason = reason;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }

  Server server(o, *coordinator, io);
  server.set_address(address);
  if (auto st = server.start(sink, at); !st.ok()) {
    std::fprintf(stderr, "fleet-room-server: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::printf("fleet-room-server %s listening on %s mode %s\n", o.id.c_str(),
              address.c_str(), o.redirect ? "redirect" : "relay");
  std::fflush(stdout);

  std::thread io_thread([&io] {
    auto guard = asio::make_work_guard(io);
    io.run();
  });
  while (!g_stop && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  io.stop();
  io_thread.join();
  server.stop();
  (void)coordinator->leave();
  std::printf("fleet-room-server %s stopped\n", o.id.c_str());
  return 0;
}
