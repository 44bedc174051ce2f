// bench_rooms: fleet::rooms on a real redis-server, beside a raw hiredis
// PING measured in the same run.
//
//  locate      first call (a room placed by another instance before this
//              one started: answered from the placement mirror read at
//              start, no round trip) and repeated calls, p50/p99;
//  broadcast   library level: instance A broadcasts to a room with 100
//              members on A and 100 on B; until B's on_message, p50/p99;
//              and the most broadcasts/s both instances sustain together;
//  websocket   the Socket.IO-adapter benchmark's shape: 2 fleet-room-server
//              processes x 100 WebSocket clients in one room, senders on
//              both instances; p50/p99 at 400 broadcasts/s (every delivery,
//              and remote ones: sender on the other instance), and the most
//              broadcasts/s sustained (>= 99.9% of deliveries arrive, p99
//              under 50 ms). Needs fleet-room-server (--room-server PATH,
//              built in when Boost is found).
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "bench_common.hpp"
#include "fleet/fleet.hpp"
#include "fmt/format.h"

#ifdef FLEET_BENCH_WEBSOCKET
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#endif

namespace {

using bench::Clock;
using fleet::rooms::Rooms;
using std::chrono::milliseconds;

std::unique_ptr<fleet::Coordinator> joined(const std::string& url, const std::string& ns,
                                           const std::string& id) {
  fleet::RedisOptions o;
  o.url = url;
  o.namespace_name = ns;
  o.command_timeout = milliseconds(10000);
  o.log_sink = fleet::quiet_log_sink();
  auto c = bench::must(fleet::RedisCoordinator::connect(o), "connect");
  fleet::InstanceInfo me;
  me.id = id;
  if (auto st = c->join(me); !st.ok()) bench::die("join", st);
  return c;
}

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             Clock::now().time_since_epoch())
      .count();
}

struct Latencies {
  std::mutex mu;
  std::vector<double> all, remote;
  std::uint64_t count = 0;
};

#ifdef FLEET_BENCH_WEBSOCKET
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

// One benchmark client: reads every frame, takes the send time and the
// sender's instance out of each chat message without a JSON parser.
class WsClient : public std::enable_shared_from_this<WsClient> {
 public:
  WsClient(asio::io_context& io, std::string instance, Latencies* lat, bool* measuring)
      : ws_(io), instance_(std::move(instance)), lat_(lat), measuring_(measuring) {}

  void connect(const tcp::endpoint& at, const std::string& identity) {
    ws_.next_layer().connect(at);
    ws_.next_layer().set_option(tcp::no_delay(true));
    ws_.handshake(at.address().to_string() + ":" + std::to_string(at.port()), "/ws");
    ws_.write(asio::buffer(
        fmt::format(R"({{"type":"join","room":"bench","identity":"{}"}})", identity)));
    for (;;) {  // until joined
      beast::flat_buffer b;
      ws_.read(b);
      if (beast::buffers_to_string(b.data()).find("\"joined\"") != std::string::npos)
        break;
    }
  }
  void start() { read(); }
  void send(std::shared_ptr<std::string> text) {
    out_.push_back(std::move(text));
    if (out_.size() == 1) write();
  }

 private:
  void read() {
    ws_.async_read(in_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return;
      self->on_frame();
      self->in_.consume(self->in_.size());
      self->read();
    });
  }
  void write() {
    ws_.async_write(asio::buffer(*out_.front()),
                    [self = shared_from_this()](beast::error_code ec, std::size_t) {
                      if (ec) return;
                      self->out_.pop_front();
                      if (!self->out_.empty()) self->write();
                    });
  }
  void on_frame() {
    const std::string_view text(static_cast<const char*>(in_.data().data()),
                                in_.data().size());
    const std::int64_t now = now_us();
    std::size_t pos = 0;
    std::vector<std::pair<double, bool>> got;
    while ((pos = text.find("\"ts\":", pos)) != std::string_view::npos) {
      pos += 5;
      std::int64_t ts = 0;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
        ts = ts * 10 + (text[pos++] - '0');
      }
      // The message's "instance" field comes before "ts" (keys sorted).
      const std::size_t inst = text.rfind("\"instance\":\"", pos);
      const bool remote =
          inst != std::string_view::npos &&
          text.compare(inst + 12, instance_.size() + 1, instance_ + "\"") != 0;
      got.emplace_back(static_cast<double>(now - ts), remote);
    }
    if (got.empty()) return;
    std::lock_guard<std::mutex> lock(lat_->mu);
    lat_->count += got.size();
    if (!*measuring_) return;
    for (const auto& [us, remote] : got) {
      lat_->all.push_back(us);
      if (remote) lat_->remote.push_back(us);
    }
  }

  websocket::stream<tcp::socket> ws_;
  std::string instance_;
  Latencies* lat_;
  bool* measuring_;
  beast::flat_buffer in_;
  std::deque<std::shared_ptr<std::string>> out_;
};

struct ServerProcess {
  pid_t pid = -1;
  tcp::endpoint at;
};

ServerProcess start_server(const std::string& binary, const std::string& url,
                           const std::string& ns, const std::string& id) {
  int fds[2];
  if (::pipe(fds) != 0) std::exit(1);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::execl(binary.c_str(), binary.c_str(), "--redis-url", url.c_str(), "--namespace",
            ns.c_str(), "--id", id.c_str(), "--quiet", "--max-seconds", "600",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string line;
  char c;
  while (::read(fds[0], &c, 1) == 1 && c != '\n') line += c;
  ::close(fds[0]);
  const auto at = line.find("listening on ");
  if (at == std::string::npos) {
    std::fprintf(stderr, "bench_rooms: fleet-room-server did not start: %s\n",
                 line.c_str());
    std::exit(1);
  }
  const std::string addr = line.substr(at + 13, line.find(' ', at + 13) - at - 13);
  const auto colon = addr.rfind(':');
  ServerProcess p;
  p.pid = pid;
  p.at = tcp::endpoint(asio::ip::make_address(addr.substr(0, colon)),
                       static_cast<unsigned short>(std::stoi(addr.substr(colon + 1))));
  return p;
}

struct Phase {
  double rate, sent, delivered, expected, p50, p99, remote_p50, remote_p99;
};

void websocket_bench(const std::string& binary, const std::string& url,
                     std::vector<bench::Result>* results) {
  const std::string ns = fmt::format("bench-ws-{}", ::getpid());
  ServerProcess a = start_server(binary, url, ns, "a");
  ServerProcess b = start_server(binary, url, ns, "b");
  constexpr int kPerInstance = 100;
  asio::io_context io;
  Latencies lat;
  bool measuring = false;
  std::vector<std::shared_ptr<WsClient>> clients;
  for (int i = 0; i < 2 * kPerInstance; ++i) {
    const bool on_a = i % 2 == 0;
    auto cl = std::make_shared<WsClient>(io, on_a ? "a" : "b", &lat, &measuring);
    cl->connect(on_a ? a.at : b.at, fmt::format("u{}", i));
    clients.push_back(cl);
  }
  for (auto& cl : clients) cl->start();
  std::thread io_thread([&io] {
    auto guard = asio::make_work_guard(io);
    io.run();
  });
  // Senders: 10 clients on each instance, in turn.
  auto run_phase = [&](double rate, double seconds) {
    {
      std::lock_guard<std::mutex> lock(lat.mu);
      lat.all.clear();
      lat.remote.clear();
      lat.count = 0;
    }
    asio::post(io, [&] { measuring = true; });
    const auto start = Clock::now();
    const auto step = std::chrono::duration<double>(1.0 / rate);
    std::uint64_t sent = 0;
    while (Clock::now() - start < std::chrono::duration<double>(seconds)) {
      const auto due = start + std::chrono::duration_cast<Clock::duration>(step * sent);
      if (Clock::now() < due) std::this_thread::sleep_until(due);
      auto text = std::make_shared<std::string>(
          fmt::format(R"({{"type":"chat","text":"{}"}})", sent));
      auto& sender = clients[(sent % 20) * 10 % clients.size() + (sent % 2)];
      asio::post(io, [sender, text] { sender->send(text); });
      ++sent;
    }
    // Let the last ones arrive.
    const double expected = static_cast<double>(sent) * 2 * kPerInstance;
    const auto settle = Clock::now() + std::chrono::seconds(2);
    while (Clock::now() < settle) {
      {
        std::lock_guard<std::mutex> lock(lat.mu);
        if (static_cast<double>(lat.count) >= expected) break;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    asio::post(io, [&] { measuring = false; });
    std::this_thread::sleep_for(milliseconds(20));
    std::lock_guard<std::mutex> lock(lat.mu);
    Phase p{rate,
            static_cast<double>(sent),
            static_cast<double>(lat.count),
            expected,
            0,
            0,
            0,
            0};
    if (!lat.all.empty()) {
      p.p50 = bench::percentile(lat.all, 0.5) / 1000.0;
      p.p99 = bench::percentile(lat.all, 0.99) / 1000.0;
    }
    if (!lat.remote.empty()) {
      p.remote_p50 = bench::percentile(lat.remote, 0.5) / 1000.0;
      p.remote_p99 = bench::percentile(lat.remote, 0.99) / 1000.0;
    }
    return p;
  };
  run_phase(200, 1.0);  // warm-up
  std::printf(
      "\nwebsocket: 2 fleet-room-server x %d clients, one room, senders on both\n",
      kPerInstance);
  std::printf("%12s %10s %12s %10s %10s %12s %12s\n", "broadcast/s", "sent", "delivered",
              "p50 ms", "p99 ms", "remote p50", "remote p99");
  auto show = [](const Phase& p) {
    std::printf("%12.0f %10.0f %11.2f%% %10.2f %10.2f %12.2f %12.2f\n", p.rate, p.sent,
                100.0 * p.delivered / p.expected, p.p50, p.p99, p.remote_p50,
                p.remote_p99);
  };
  Phase at400 = run_phase(400, 5.0);
  show(at400);
  double best = 0;
  Phase best_phase = at400;
  for (double rate : {800.0, 1200.0, 1600.0, 2000.0, 2500.0, 3000.0, 4000.0, 5000.0}) {
    Phase p = run_phase(rate, 3.0);
    show(p);
    if (p.delivered >= 0.999 * p.expected && p.p99 < 50.0) {
      best = rate;
      best_phase = p;
    } else {
      break;
    }
  }
  std::printf(
      "websocket: at 400 broadcasts/s p50 %.2f ms p99 %.2f ms (remote p50 %.2f p99 %.2f);"
      " sustained %.0f broadcasts/s (%.0f deliveries/s)\n",
      at400.p50, at400.p99, at400.remote_p50, at400.remote_p99, best,
      best * 2 * kPerInstance);
  results->push_back(
      {"ws broadcast @400/s", 1, at400.p50 * 1000, at400.p99 * 1000, 400, 0});
  results->push_back({"ws broadcast remote @400/s", 1, at400.remote_p50 * 1000,
                      at400.remote_p99 * 1000, 400, 0});
  results->push_back({"ws broadcast max sustained", 1, best_phase.p50 * 1000,
                      best_phase.p99 * 1000, best, 0});
  io.stop();
  io_thread.join();
  clients.clear();
  for (pid_t pid : {a.pid, b.pid}) {
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
}
#endif

}  // namespace

int main(int argc, char** argv) {
  std::string url, json_path, room_server;
#ifdef FLEET_ROOM_SERVER_BINARY
  room_server = FLEET_ROOM_SERVER_BINARY;
#endif
  int ops = 5000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--redis-url" && i + 1 < argc) {
      url = argv[++i];
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "--ops" && i + 1 < argc) {
      ops = std::atoi(argv[++i]);
    } else if (a == "--room-server" && i + 1 < argc) {
      room_server = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: bench_rooms --redis-url URL [--json FILE] [--ops N] "
                   "[--room-server PATH]\n");
      return 64;
    }
  }
  if (url.rfind("redis://", 0) != 0) {
    std::fprintf(stderr, "bench_rooms: --redis-url redis://HOST:PORT/DB is required\n");
    return 64;
  }
  const auto slash = url.find('/', 8);
  const std::string hostport = url.substr(8, slash - 8);
  const auto colon = hostport.rfind(':');
  redisContext* raw = redisConnect(hostport.substr(0, colon).c_str(),
                                   std::stoi(hostport.substr(colon + 1)));
  if (raw == nullptr || raw->err) {
    std::fprintf(stderr, "bench_rooms: cannot connect to %s\n", hostport.c_str());
    return 1;
  }
  auto ping = [raw](int) { freeReplyObject(redisCommand(raw, "PING")); };
  std::vector<bench::Result> results;
  const std::string ns = fmt::format("bench-rooms-{}", ::getpid());

  auto ca = joined(url, ns, "a");
  auto cb = joined(url, ns, "b");
  std::atomic<std::uint64_t> seq_seen{0};
  std::atomic<std::uint64_t> delivered{0};
  fleet::rooms::RoomsOptions oa;
  oa.log_sink = fleet::quiet_log_sink();
  oa.host =
      fleet::rooms::NodeInfo{"127.0.0.1:1", "", 0, fleet::rooms::NodeState::kServing};
  auto ra = bench::must(Rooms::create(*ca, oa), "rooms a");

  // ---- locate -------------------------------------------------------------------
  const int rooms_n = ops;
  std::vector<std::string> names;
  for (int i = 0; i < rooms_n + 300; ++i) {
    names.push_back(fmt::format("room-{}", i));
    bench::must(ra->assign(names.back()), "assign");
  }
  fleet::rooms::RoomsOptions ob;
  ob.log_sink = fleet::quiet_log_sink();
  ob.on_message = [&](const fleet::rooms::Delivery& d) {
    seq_seen = d.sequence;
    ++delivered;
  };
  // Its placement mirror is read when it starts: a first locate is a hit.
  auto rb = bench::must(Rooms::create(*cb, ob), "rooms b");
  results.push_back(bench::measure(
      "locate first call", 1, rooms_n,
      [&](int, int i) {
        bench::must(rb->locate(names[static_cast<std::size_t>(i + 300)]), "locate");
      },
      {}, ping));
  {
    // Cached: the same call, now a hit. Timed in blocks of 1,000 calls
    // (a single call is below the clock's resolution).
    std::vector<double> per_call;
    for (int block = 0; block < 200; ++block) {
      const auto t0 = Clock::now();
      for (int k = 0; k < 1000; ++k) {
        auto p = rb->locate(
            names[static_cast<std::size_t>(300 + (block * 1000 + k) % rooms_n)]);
        if (!p.ok() || !p->has_value()) bench::die("cached locate", p.status());
      }
      per_call.push_back(us_since(t0) / 1000.0);
    }
    std::vector<double> pings;
    for (int k = 0; k < 2000; ++k) {
      const auto t0 = Clock::now();
      ping(0);
      pings.push_back(us_since(t0));
    }
    const double p50 = bench::percentile(per_call, 0.5);
    results.push_back({"locate cached", 1, p50, bench::percentile(per_call, 0.99),
                       1e6 / p50, p50 / bench::percentile(pings, 0.5)});
    const auto st = rb->stats();
    std::printf("locate: %llu hits, %llu misses\n",
                static_cast<unsigned long long>(st.locate_hits),
                static_cast<unsigned long long>(st.locate_misses));
  }

  // ---- broadcast (library) ------------------------------------------------------------
  for (int i = 0; i < 100; ++i) {
    bench::must(ra->join("bench", fmt::format("a{}", i)), "join a");
    bench::must(rb->join("bench", fmt::format("b{}", i)), "join b");
  }
  results.push_back(bench::measure(
      "broadcast A->B delivered", 1, ops,
      [&](int, int) {
        const std::uint64_t before = delivered.load();
        if (auto st =
                ra->broadcast("bench", "x", fleet::rooms::BroadcastOptions{"a0", {}});
            !st.ok())
          bench::die("broadcast", st);
        // Yield rather than spin: on a 2-core machine a spinning waiter
        // takes a core the delivery pipeline (subscriber, event and
        // callback threads) needs, and measures the scheduler.
        while (delivered.load() == before) std::this_thread::yield();
      },
      {}, ping));
  {
    // Both instances broadcasting as fast as they can for 2 s.
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> sent{0};
    const std::uint64_t before = delivered.load();
    const auto t0 = Clock::now();
    std::vector<std::thread> senders;
    for (auto* r : {ra.get(), rb.get()}) {
      senders.emplace_back([&, r] {
        while (!stop) {
          if (r->broadcast("bench", "x").ok()) ++sent;
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
    stop = true;
    for (auto& t : senders) t.join();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    // b receives a's broadcasts (its own are delivered locally, not counted).
    std::this_thread::sleep_for(milliseconds(200));
    const double rate = static_cast<double>(sent.load()) / secs;
    std::printf(
        "library broadcast: %.0f broadcasts/s from 2 instances (%.0f deliveries/s to "
        "200 members); b received %llu of a's\n",
        rate, rate * 200, static_cast<unsigned long long>(delivered.load() - before));
    results.push_back({"broadcast max (2 senders)", 2, 0, 0, rate, 0});
  }
  const auto st = rb->stats();
  std::printf("gaps seen by b: %llu\n", static_cast<unsigned long long>(st.gaps));
  rb.reset();
  ra.reset();
  bench::report(results, "");

#ifdef FLEET_BENCH_WEBSOCKET
  if (!room_server.empty()) {
    websocket_bench(room_server, url, &results);
  } else {
    std::printf("websocket: skipped (no fleet-room-server; pass --room-server PATH)\n");
  }
#else
  std::printf("websocket: not built (Boost not found)\n");
#endif
  std::printf("\n");
  bench::report(results, json_path);
  redisFree(raw);
  return 0;
}
