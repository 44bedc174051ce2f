// fake-backend: a small HTTP server that imitates an inference node, so that
// demos and tests of fleet-gateway need no real model server.
//
//   fake-backend [--port N] [--name NAME] [--latency-ms MS] [--chunks N]
//                [--capacity N] [--error-rate P] [--gpu-free-mb MB]
//                [--models a,b] [--max-seconds S] [--seed N]
//
// POST /api/generate and /api/chat stream --chunks NDJSON lines spread over
// --latency-ms; GET /api/tags lists --models. A request beyond --capacity
// is answered 503 and counted as rejected; with probability --error-rate a
// request fails with 500. GET /stats reports requests, peak concurrency (the
// most requests it was serving at once), rejections and errors.
// It listens on 127.0.0.1 only, prints "fake-backend listening on
// 127.0.0.1:PORT" once ready (port 0: any free port), and exits by itself
// after --max-seconds (default 600).
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "nlohmann/json.hpp"
#include "serve.hpp"

namespace {

using Json = nlohmann::json;

struct Options {
  int port = 0;
  std::string name = "fake";
  int latency_ms = 50;
  int chunks = 5;
  int capacity = 0;  // 0: unlimited
  double error_rate = 0;
  double gpu_free_mb = 16000;
  std::string models = "llama3";
  int max_seconds = 600;
  unsigned seed = 0;
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "fake-backend: %s\n"
               "usage: fake-backend [--port N] [--name NAME] [--latency-ms MS] "
               "[--chunks N] [--capacity N] [--error-rate P] [--gpu-free-mb MB] "
               "[--models a,b] [--max-seconds S] [--seed N]\n",
               problem.c_str());
  std::exit(2);
}

long number(const std::string& flag, const char* text, long min, long max) {
  return flag_integer(flag, text, min, max, usage);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage("missing value for " + a);
    const char* v = argv[++i];
    if (a == "--port") {
      o.port = static_cast<int>(number(a, v, 0, 65535));
    } else if (a == "--name") {
      o.name = v;
    } else if (a == "--latency-ms") {
      o.latency_ms = static_cast<int>(number(a, v, 0, 600000));
    } else if (a == "--chunks") {
      o.chunks = static_cast<int>(number(a, v, 1, 100000));
    } else if (a == "--capacity") {
      o.capacity = static_cast<int>(number(a, v, 0, 1000000));
    } else if (a == "--error-rate") {
      char* end = nullptr;
      o.error_rate = std::strtod(v, &end);
      if (end == v || *end != '\0' || !(o.error_rate >= 0 && o.error_rate <= 1)) {
        usage("--error-rate needs a number in [0, 1]");
      }
    } else if (a == "--gpu-free-mb") {
      o.gpu_free_mb = static_cast<double>(number(a, v, 0, 10000000));
    } else if (a == "--models") {
      o.models = v;
    } else if (a == "--max-seconds") {
      o.max_seconds = static_cast<int>(number(a, v, 1, 86400));
    } else if (a == "--seed") {
      o.seed = static_cast<unsigned>(number(a, v, 0, 1L << 30));
    } else {
      usage("unknown flag " + a);
    }
  }
  return o;
}

class Backend {
 public:
  explicit Backend(Options o)
      : o_(std::move(o)), rng_(o_.seed ? o_.seed : std::random_device{}()) {}

  void install(httplib::Server& svr) {
    auto generate = [this](const httplib::Request& req, httplib::Response& res) {
      serve(req, res);
    };
    svr.Post("/api/generate", generate);
    svr.Post("/api/chat", generate);
    svr.Get("/api/tags", [this](const httplib::Request&, httplib::Response& res) {
      Json models = Json::array();
      std::size_t start = 0;
      while (start <= o_.models.size()) {
        const auto comma = o_.models.find(',', start);
        const auto m = o_.models.substr(
            start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!m.empty()) models.push_back({{"name", m}});
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      res.set_content(Json{{"models", models}, {"node", o_.name}}.dump(),
                      "application/json");
    });
    svr.Get("/stats", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(stats().dump(), "application/json");
    });
    svr.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok\n", "text/plain");
    });
  }

  Json stats() const {
    return Json{{"name", o_.name},
                {"requests", requests_.load()},
                {"current", current_.load()},
                {"peak_concurrency", peak_.load()},
                {"rejected", rejected_.load()},
                {"errors", errors_.load()},
                {"capacity", o_.capacity}};
  }

 private:
  void serve(const httplib::Request&, httplib::Response& res) {
    const int now = ++current_;
    if (o_.capacity > 0 && now > o_.capacity) {
      --current_;
      ++rejected_;
      res.status = 503;
      res.set_content(Json{{"error", "over capacity"}, {"node", o_.name}}.dump(),
                      "application/json");
      return;
    }
    ++requests_;
    for (int peak = peak_.load();
         now > peak && !peak_.compare_exchange_weak(peak, now);) {
    }
    bool fail = false;
    {
      std::lock_guard<std::mutex> lock(rng_mu_);
      fail = std::uniform_real_distribution<double>(0, 1)(rng_) < o_.error_rate;
    }
    res.set_header("X-Fleet-Cpu-Load",
                   std::to_string(o_.capacity > 0 ? double(now) / o_.capacity : 0.0));
    res.set_header("X-Fleet-Gpu-Free-Mb", std::to_string(o_.gpu_free_mb));
    if (fail) {
      --current_;
      ++errors_;
      res.status = 500;
      res.set_content(Json{{"error", "injected failure"}, {"node", o_.name}}.dump(),
                      "application/json");
      return;
    }
    const auto pause = std::chrono::microseconds(o_.latency_ms * 1000L / o_.chunks);
    // The request stops counting when its last byte is written (a client may
    // send the next one before this server has finished its bookkeeping), or
    // when the response ends otherwise (the client went away).
    auto counted = std::make_shared<std::atomic<bool>>(true);
    auto finish = [this, counted] {
      if (counted->exchange(false)) --current_;
    };
    res.set_chunked_content_provider(
        "application/x-ndjson",
        [this, pause, finish](std::size_t, httplib::DataSink& sink) {
          for (int i = 0; i < o_.chunks; ++i) {
            std::this_thread::sleep_for(pause);
            const std::string line =
                Json{{"node", o_.name}, {"chunk", i}, {"done", i + 1 == o_.chunks}}
                    .dump() +
                "\n";
            if (i + 1 == o_.chunks) finish();
            if (!sink.write(line.data(), line.size())) return false;  // client went away
          }
          sink.done();
          return true;
        },
        [finish](bool) { finish(); });
  }

  const Options o_;
  std::mutex rng_mu_;
  std::mt19937 rng_;
  std::atomic<int> current_{0}, peak_{0};
  std::atomic<long> requests_{0}, rejected_{0}, errors_{0};
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  httplib::Server svr;
  svr.new_task_queue = [] { return new httplib::ThreadPool(64); };
  Backend backend(o);
  backend.install(svr);
  const int port = bind_server(svr, "127.0.0.1", o.port);
  if (port <= 0) {
    std::fprintf(stderr, "fake-backend: cannot listen on 127.0.0.1:%d\n", o.port);
    return 1;
  }
  serve(svr, o.max_seconds, [&] {
    std::printf("fake-backend %s listening on 127.0.0.1:%d\n", o.name.c_str(), port);
    std::fflush(stdout);
  });
  std::printf("%s\n", backend.stats().dump().c_str());
  return 0;
}
