// fleet-gateway: an HTTP gateway in front of a pool of inference nodes.
// Several gateways on one Redis namespace route as one: each request is
// counted against its node in the same atomic step that chooses it
// (fleet::router), so no node gets more than its capacity from all
// gateways together, and a crashed gateway's requests vanish with it.
//
//   fleet-gateway [--redis-url URL] [--namespace NS] [--port N]
//                 --node host:port[,region=..,capacity=..] ... | --nodes FILE
//                 [--policy least-inflight|weighted|region|p2c] [options]
//
// Without --redis-url it runs on the in-process backend (one gateway).
// Proxies /api/* (POST /api/chat, POST /api/generate, GET /api/tags, ...)
// to the chosen node and streams the response body back. Also serves
// /healthz, /metrics (Prometheus text) and /fleet (JSON view of the pool).
// Listens on 127.0.0.1 unless --host says otherwise.
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client_errors.hpp"
#include "fleet/fleet.hpp"
#include "nlohmann/json.hpp"
#include "serve.hpp"
#include "tls_flags.hpp"

namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using fleet::router::Router;

constexpr const char* kUsage =
    "usage: fleet-gateway [--redis-url URL] [--namespace NS] [--host H] [--port N]\n"
    "         (--node "
    "host:port[,id=..,region=..,lat=..,lon=..,capacity=..,labels=a|b])...\n"
    "         [--nodes FILE] [--pool NAME] [--policy "
    "least-inflight|weighted|region|p2c]\n"
    "         [--region NAME[,lat=..,lon=..]] [--wait-ms MS] [--retries N] [--id ID]\n"
    "         [--threads N] [--upstream-timeout-ms MS] [--breaker-failures N]\n"
    "         [--breaker-cooldown-ms MS] [--refresh-ms MS] [--session-ttl-ms MS]\n"
    "         [--heartbeat-ms MS] [--max-seconds S] [--quiet]\n" FLEET_TLS_FLAGS_USAGE;

struct Options {
  std::string redis_url, ns = "fleet", host = "127.0.0.1", id, pool = "default";
  int port = 0;
  std::vector<fleet::router::NodeSpec> nodes;
  fleet::router::RouterOptions router;
  int wait_ms = 0, retries = 2, threads = 64, upstream_timeout_ms = 30000;
  int session_ttl_ms = 5000, heartbeat_ms = 1000, max_seconds = 0;
  bool quiet = false;
  fleet::RedisTlsOptions tls;
};

[[noreturn]] void usage_error(const std::string& problem) {
  std::fprintf(stderr, "fleet-gateway: %s\n%s", problem.c_str(), kUsage);
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
    if (tls_flag(a, v, &o.tls)) {
      continue;
    } else if (a == "--redis-url") {
      o.redis_url = v;
    } else if (a == "--namespace") {
      o.ns = v;
    } else if (a == "--host") {
      o.host = v;
    } else if (a == "--port") {
      o.port = static_cast<int>(integer(a, v, 0, 65535));
    } else if (a == "--id") {
      o.id = v;
    } else if (a == "--pool") {
      o.pool = v;
    } else if (a == "--node") {
      auto node = fleet::router::parse_node_spec(v);
      if (!node.ok()) usage_error(std::string(node.status().message()));
      o.nodes.push_back(*node);
    } else if (a == "--nodes") {
      std::ifstream in(v);
      if (!in) usage_error("cannot read " + v);
      std::stringstream text;
      text << in.rdbuf();
      auto nodes = fleet::router::parse_node_specs(text.str());
      if (!nodes.ok()) usage_error(v + ": " + std::string(nodes.status().message()));
      o.nodes.insert(o.nodes.end(), nodes->begin(), nodes->end());
    } else if (a == "--policy") {
      auto p = fleet::router::parse_policy(v);
      if (!p.ok()) usage_error(std::string(p.status().message()));
      o.router.policy = *p;
    } else if (a == "--region") {
      auto r = fleet::router::parse_region(v);
      if (!r.ok()) usage_error(std::string(r.status().message()));
      o.router.home = *r;
    } else if (a == "--wait-ms") {
      o.wait_ms = static_cast<int>(integer(a, v, 0, 600000));
    } else if (a == "--retries") {
      o.retries = static_cast<int>(integer(a, v, 0, 10));
    } else if (a == "--threads") {
      o.threads = static_cast<int>(integer(a, v, 1, 4096));
    } else if (a == "--upstream-timeout-ms") {
      o.upstream_timeout_ms = static_cast<int>(integer(a, v, 1, 3600000));
    } else if (a == "--breaker-failures") {
      o.router.breaker_failures = static_cast<int>(integer(a, v, 1, 1000000));
    } else if (a == "--breaker-cooldown-ms") {
      o.router.breaker_cooldown = std::chrono::milliseconds(integer(a, v, 1, 86400000));
    } else if (a == "--refresh-ms") {
      o.router.check_interval = std::chrono::milliseconds(integer(a, v, 1, 3600000));
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
  if (o.nodes.empty()) usage_error("give at least one --node or a --nodes file");
  if (o.id.empty()) o.id = "gateway-" + std::to_string(::getpid());
  o.router.name = o.pool;
  return o;
}

// Counters for /metrics beyond what the router keeps.
struct Counters {
  std::atomic<long> requests{0}, upstream_failures{0}, retries{0}, client_disconnects{0};
};

// One proxied exchange: the upstream request runs on its own thread and
// hands the response head and body chunks to the server thread that
// streams them to the client.
struct Exchange {
  std::mutex mu;
  std::condition_variable cv;
  bool head = false, finished = false, failed = false, cancelled = false;
  int status = 0;
  httplib::Headers headers;
  std::deque<std::string> chunks;
  std::string error;
  int fd = -1;  // the upstream socket while the request runs (for shutdown on cancel)
  std::thread thread;
};

bool idempotent(const std::string& method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS";
}

class Gateway {
 public:
  Gateway(Options o, fleet::Coordinator& c, Router& r) : o_(std::move(o)), c_(c), r_(r) {}

  void install(httplib::Server& svr) {
    auto proxy = [this](const httplib::Request& req, httplib::Response& res) {
      handle(req, res);
    };
    svr.Post(R"(/api/.*)", proxy);
    svr.Get(R"(/api/.*)", proxy);
    svr.Put(R"(/api/.*)", proxy);
    svr.Delete(R"(/api/.*)", proxy);
    svr.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      const auto state = c_.connection_state();
      const bool ok = state == fleet::ConnectionState::kConnected ||
                      state == fleet::ConnectionState::kReconnected;
      res.status = ok ? 200 : 503;
      res.set_content(std::string(fleet::to_string(state)) + "\n", "text/plain");
    });
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics(), "text/plain; version=0.0.4");
    });
    svr.Get("/fleet", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(view().dump(2) + "\n", "application/json");
    });
  }

  Json view() {
    Json nodes = Json::array();
    for (const auto& n : r_.nodes()) {
      Json j{{"id", n.spec.id},
             {"address", n.spec.address},
             {"region", n.spec.region.name},
             {"capacity", n.spec.capacity},
             {"labels", n.spec.labels},
             {"state", std::string(fleet::router::to_string(n.spec.state))},
             {"cluster_inflight", n.cluster_inflight},
             {"own_inflight", n.own_inflight},
             {"reporters", n.reporters},
             {"decisions", n.decisions},
             {"failures", n.failures},
             {"circuit_open", n.circuit_open},
             {"circuit_reopens_in_ms", n.circuit_reopens_in.count()}};
      if (n.latency_ms) j["latency_ms"] = *n.latency_ms;
      if (n.success_rate) j["success_rate"] = *n.success_rate;
      if (n.cpu_load) j["cpu_load"] = *n.cpu_load;
      if (n.gpu_free_mb) j["gpu_free_mb"] = *n.gpu_free_mb;
      nodes.push_back(std::move(j));
    }
    const auto s = r_.stats();
    return Json{{"gateway", o_.id},
                {"backend", std::string(c_.backend_name())},
                {"connection", std::string(fleet::to_string(c_.connection_state()))},
                {"data_losses", c_.data_losses()},
                {"pool", o_.pool},
                {"policy", std::string(fleet::router::to_string(o_.router.policy))},
                {"decisions", s.decisions},
                {"rejections", s.rejections},
                {"waits", s.waits},
                {"saw_other_gateways", s.saw_other_gateways},
                {"breaker_trips", s.breaker_trips},
                {"nodes", nodes}};
  }

 private:
  void handle(const httplib::Request& req, httplib::Response& res) {
    ++counters_.requests;
    fleet::router::Hints hints;
    hints.wait = std::chrono::milliseconds(o_.wait_ms);
    if (req.has_header("X-Fleet-Label"))
      hints.label = req.get_header_value("X-Fleet-Label");
    const std::string priority = req.get_header_value("X-Fleet-Priority");
    if (priority == "low") hints.priority = fleet::router::Priority::kLow;
    if (priority == "high") hints.priority = fleet::router::Priority::kHigh;

    for (int attempt = 0;; ++attempt) {
      auto ticket = r_.acquire(hints);
      if (!ticket.ok()) return reject(ticket.status(), res);
      auto ex = std::make_shared<Exchange>();
      start_upstream(ex, *ticket, req);
      std::unique_lock<std::mutex> lock(ex->mu);
      ex->cv.wait(lock, [&] { return ex->head || ex->finished; });
      if (ex->head) {
        lock.unlock();
        return stream(ex, *ticket, res);
      }
      // No response at all: unreachable, refused, or timed out.
      const std::string error = ex->error;
      lock.unlock();
      ex->thread.join();
      ++counters_.upstream_failures;
      (void)r_.release(*ticket, {false});
      log("node %s failed: %s", ticket->node_id.c_str(), error.c_str());
      if (idempotent(req.method) && attempt < o_.retries) {
        ++counters_.retries;
        hints.exclude.insert(ticket->node_id);
        continue;
      }
      res.status = 502;
      res.set_content(
          Json{{"error", "upstream failed: " + error}, {"node", ticket->node_id}}.dump(),
          "application/json");
      return;
    }
  }

  void reject(const absl::Status& st, httplib::Response& res) {
    int code = 503;
    if (absl::IsNotFound(st)) code = 404;
    if (absl::IsResourceExhausted(st)) res.set_header("Retry-After", "1");
    res.status = code;
    errors_.note("a routing decision", st);
    res.set_content(
        Json{{"error", client_message(st)}, {"code", absl::StatusCodeToString(st.code())}}
            .dump(),
        "application/json");
  }

  void start_upstream(const std::shared_ptr<Exchange>& ex, const fleet::router::Ticket& t,
                      const httplib::Request& in) {
    const auto colon = t.address.rfind(':');
    const std::string host = t.address.substr(0, colon);
    const int port = std::atoi(t.address.c_str() + colon + 1);
    auto out = std::make_shared<httplib::Request>();
    out->method = in.method;
    out->path = in.target.empty() ? in.path : in.target;
    for (const auto& [k, v] : in.headers) {
      if (k == "Host" || k == "Connection" || k == "Content-Length" ||
          k == "Keep-Alive" || k == "Transfer-Encoding" || k == "REMOTE_ADDR" ||
          k == "REMOTE_PORT" || k == "LOCAL_ADDR" || k == "LOCAL_PORT") {
        continue;
      }
      out->headers.emplace(k, v);
    }
    out->body = in.body;
    const auto timeout = std::chrono::milliseconds(o_.upstream_timeout_ms);
    ex->thread = std::thread([ex, out, host, port, timeout] {
      httplib::Client client(host, port);
      client.set_connection_timeout(std::chrono::seconds(2));
      client.set_read_timeout(timeout);
      client.set_keep_alive(false);
      // Remember the socket, so that a cancel can shut it down (from the
      // server thread) and the blocked read returns at once.
      client.set_socket_options([ex](auto sock) {
        std::lock_guard<std::mutex> lock(ex->mu);
        ex->fd = sock;
        if (ex->cancelled) ::shutdown(sock, SHUT_RDWR);
      });
      out->response_handler = [ex](const httplib::Response& r) {
        std::lock_guard<std::mutex> lock(ex->mu);
        ex->head = true;
        ex->status = r.status;
        ex->headers = r.headers;
        ex->cv.notify_all();
        return !ex->cancelled;
      };
      out->content_receiver = [ex](const char* data, size_t n, uint64_t, uint64_t) {
        std::lock_guard<std::mutex> lock(ex->mu);
        if (ex->cancelled) return false;
        ex->chunks.emplace_back(data, n);
        ex->cv.notify_all();
        return true;
      };
      auto result = client.send(*out);
      std::lock_guard<std::mutex> lock(ex->mu);
      ex->fd = -1;  // the socket is closed with `client`, after this
      ex->finished = true;
      if (!result) {
        ex->failed = true;
        ex->error = httplib::to_string(result.error());
      }
      ex->cv.notify_all();
    });
  }

  void stream(const std::shared_ptr<Exchange>& ex, const fleet::router::Ticket& ticket,
              httplib::Response& res) {
    res.status = ex->status;
    std::string content_type = "application/octet-stream";
    for (const auto& [k, v] : ex->headers) {
      if (k == "Content-Type") {
        content_type = v;
      } else if (k.rfind("X-Fleet-", 0) == 0) {
        res.set_header(k.c_str(), v);
      }
    }
    res.set_header("X-Fleet-Node", ticket.node_id);
    report_host_metrics(ticket.node_id, ex->headers);
    res.set_chunked_content_provider(
        content_type,
        [ex](size_t, httplib::DataSink& sink) {
          std::unique_lock<std::mutex> lock(ex->mu);
          ex->cv.wait(lock, [&] { return !ex->chunks.empty() || ex->finished; });
          while (!ex->chunks.empty()) {
            std::string chunk = std::move(ex->chunks.front());
            ex->chunks.pop_front();
            lock.unlock();
            if (!sink.write(chunk.data(), chunk.size())) return false;  // client gone
            lock.lock();
          }
          if (ex->finished) sink.done();
          return true;
        },
        [this, ex, ticket](bool sent) {
          {
            std::lock_guard<std::mutex> lock(ex->mu);
            if (!sent || !ex->finished) {
              ex->cancelled = true;
              if (ex->fd >= 0) ::shutdown(ex->fd, SHUT_RDWR);
            }
          }
          ex->cv.notify_all();
          ex->thread.join();
          // A client that went away is not the node's fault.
          const bool node_ok = !sent || (!ex->failed && ex->status < 500);
          if (!sent) ++counters_.client_disconnects;
          if (ex->failed && sent) ++counters_.upstream_failures;
          (void)r_.release(ticket, {node_ok});
        });
  }

  void report_host_metrics(const std::string& node, const httplib::Headers& headers) {
    std::optional<double> cpu, gpu;
    auto number = [&](const char* name) -> std::optional<double> {
      auto it = headers.find(name);
      if (it == headers.end()) return std::nullopt;
      char* end = nullptr;
      const double v = std::strtod(it->second.c_str(), &end);
      if (end == it->second.c_str()) return std::nullopt;
      return v;
    };
    cpu = number("X-Fleet-Cpu-Load");
    gpu = number("X-Fleet-Gpu-Free-Mb");
    if (cpu || gpu) r_.report_host_metrics(node, cpu, gpu);
  }

  std::string metrics() {
    const auto s = r_.stats();
    std::string out;
    auto line = [&](const std::string& text) { out += text + "\n"; };
    auto counter = [&](const char* name, const char* help, double v) {
      line(std::string("# HELP ") + name + " " + help);
      line(std::string("# TYPE ") + name + " counter");
      line(std::string(name) + " " + std::to_string(static_cast<long long>(v)));
    };
    counter("fleet_gateway_requests_total", "Requests received on /api/.",
            counters_.requests);
    counter("fleet_gateway_decisions_total", "Routing decisions (slots granted).",
            static_cast<double>(s.decisions));
    counter("fleet_gateway_rejections_total", "Requests refused: every node at capacity.",
            static_cast<double>(s.rejections));
    counter("fleet_gateway_waits_total", "Requests that waited for a free slot.",
            static_cast<double>(s.waits));
    counter("fleet_gateway_saw_other_gateways_total",
            "Decisions onto a node that had other gateways' requests in flight.",
            static_cast<double>(s.saw_other_gateways));
    counter("fleet_gateway_breaker_trips_total", "Circuits this gateway opened.",
            static_cast<double>(s.breaker_trips));
    counter("fleet_gateway_upstream_failures_total", "Nodes unreachable or failing.",
            counters_.upstream_failures);
    counter("fleet_gateway_retries_total", "Idempotent requests retried on another node.",
            counters_.retries);
    counter("fleet_gateway_client_disconnects_total", "Clients gone before the end.",
            counters_.client_disconnects);
    line("# HELP fleet_gateway_node_inflight Requests in flight per node.");
    line("# TYPE fleet_gateway_node_inflight gauge");
    const auto nodes = r_.nodes();
    for (const auto& n : nodes) {
      const std::string id = escape(n.spec.id);
      line("fleet_gateway_node_inflight{node=\"" + id + "\",scope=\"cluster\"} " +
           std::to_string(n.cluster_inflight));
      line("fleet_gateway_node_inflight{node=\"" + id + "\",scope=\"gateway\"} " +
           std::to_string(n.own_inflight));
    }
    line("# HELP fleet_gateway_node_decisions_total Decisions per node by this gateway.");
    line("# TYPE fleet_gateway_node_decisions_total counter");
    for (const auto& n : nodes) {
      line("fleet_gateway_node_decisions_total{node=\"" + escape(n.spec.id) + "\"} " +
           std::to_string(n.decisions));
    }
    line(
        "# HELP fleet_gateway_request_duration_ms Time from decision to the end of the "
        "response.");
    line("# TYPE fleet_gateway_request_duration_ms histogram");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < s.latency_counts.size(); ++i) {
      cumulative += s.latency_counts[i];
      const std::string le = i < s.latency_bounds_ms.size()
                                 ? fmt_number(s.latency_bounds_ms[i])
                                 : std::string("+Inf");
      line("fleet_gateway_request_duration_ms_bucket{le=\"" + le + "\"} " +
           std::to_string(cumulative));
    }
    line("fleet_gateway_request_duration_ms_sum " + fmt_number(s.latency_sum_ms));
    line("fleet_gateway_request_duration_ms_count " + std::to_string(cumulative));
    return out;
  }

  static std::string fmt_number(double v) {
    std::ostringstream s;
    s << v;
    return s.str();
  }

  static std::string escape(const std::string& v) {
    std::string out;
    for (char ch : v) {
      if (ch == '"' || ch == '\\') out.push_back('\\');
      out.push_back(ch);
    }
    return out;
  }

  template <typename... Args>
  void log(const char* format, Args... args) {
    if (o_.quiet) return;
    std::fprintf(stderr, "fleet-gateway %s: ", o_.id.c_str());
    std::fprintf(stderr, format, args...);
    std::fputc('\n', stderr);
  }

  const Options o_;
  fleet::Coordinator& c_;
  Router& r_;
  Counters counters_;
  ErrorLog errors_{"fleet-gateway"};
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  fleet::LogSink* sink = o.quiet ? fleet::quiet_log_sink() : fleet::stderr_log_sink();

  std::unique_ptr<fleet::Coordinator> coordinator;
  if (!o.redis_url.empty()) {
    fleet::RedisOptions ro;
    ro.url = o.redis_url;
    ro.tls = o.tls;
    ro.namespace_name = o.ns;
    ro.session_ttl = std::chrono::milliseconds(o.session_ttl_ms);
    ro.heartbeat_interval = std::chrono::milliseconds(o.heartbeat_ms);
    ro.pool_size = 8;
    ro.log_sink = sink;
    auto c = fleet::RedisCoordinator::connect(ro);
    if (!c.ok()) {
      std::fprintf(stderr, "fleet-gateway: %s\n",
                   std::string(c.status().message()).c_str());
      return 1;
    }
    coordinator = std::move(*c);
  } else {
    fleet::LocalOptions lo;
    lo.session_ttl = std::chrono::milliseconds(o.session_ttl_ms);
    lo.log_sink = sink;
    coordinator = fleet::LocalCoordinator::create(lo).value();
  }
  fleet::InstanceInfo me;
  me.id = o.id;
  me.metadata["role"] = "gateway";
  if (auto st = coordinator->join(me); !st.ok()) {
    std::fprintf(stderr, "fleet-gateway: join as %s: %s\n", o.id.c_str(),
                 std::string(st.message()).c_str());
    return 1;
  }
  o.router.log_sink = sink;
  auto router = Router::create(*coordinator, o.router);
  if (!router.ok()) {
    std::fprintf(stderr, "fleet-gateway: %s\n",
                 std::string(router.status().message()).c_str());
    return 1;
  }
  for (const auto& n : o.nodes) {
    if (auto st = (*router)->add_node(n); !st.ok()) {
      std::fprintf(stderr, "fleet-gateway: node %s: %s\n", n.id.c_str(),
                   std::string(st.message()).c_str());
      return 1;
    }
  }

  httplib::Server svr;
  const int threads = o.threads;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  Gateway gateway(o, *coordinator, **router);
  gateway.install(svr);
  const int port = bind_server(svr, o.host, o.port);
  if (port <= 0) {
    std::fprintf(stderr, "fleet-gateway: cannot listen on %s:%d\n", o.host.c_str(),
                 o.port);
    return 1;
  }
  serve(svr, o.max_seconds, [&] {
    std::printf(
        "fleet-gateway %s listening on http://%s:%d (backend %s, pool %s, policy %s, "
        "%zu nodes)\n",
        o.id.c_str(), o.host.c_str(), port,
        std::string(coordinator->backend_name()).c_str(), o.pool.c_str(),
        std::string(fleet::router::to_string(o.router.policy)).c_str(), o.nodes.size());
    std::fflush(stdout);
  });
  // Final view, then leave: our in-flight counts are freed at once.
  std::printf("%s\n", gateway.view().dump().c_str());
  router->reset();
  (void)coordinator->leave();
  return 0;
}
