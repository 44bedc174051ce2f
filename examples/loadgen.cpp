// fleet-loadgen: sends requests through one or more fleet-gateways at once
// and prints what happened, per node and per gateway. scripts/demo runs it.
//
//   fleet-loadgen --gateway http://127.0.0.1:P1 [--gateway ...] [--requests N]
//                 [--concurrency C] [--backend NAME=http://127.0.0.1:P ...]
//
// Per node: requests served, peak concurrency against capacity (asked from
// each fake-backend's /stats), p50 and p99 latency seen by the clients.
// Per gateway: decisions, refusals, and the decisions the other gateways'
// load shaped (from /fleet). Exits 1 if any node ever served more requests
// at once than its capacity.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"

namespace {

using Json = nlohmann::json;

struct Target {
  std::string host;
  int port = 0;
};

Target parse_url(const std::string& url) {
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0 || url.rfind(':') <= prefix.size()) {
    std::fprintf(stderr, "fleet-loadgen: '%s' is not http://host:port\n", url.c_str());
    std::exit(2);
  }
  const auto colon = url.rfind(':');
  return {url.substr(prefix.size(), colon - prefix.size()),
          std::atoi(url.c_str() + colon + 1)};
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

Json get_json(const Target& t, const char* path) {
  httplib::Client cli(t.host, t.port);
  auto res = cli.Get(path);
  if (!res || res->status != 200) return Json();
  Json j = Json::parse(res->body, nullptr, false);
  return j.is_discarded() ? Json() : j;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> gateway_urls;
  std::vector<std::pair<std::string, std::string>> backends;  // name, url
  int requests = 2000, concurrency = 16;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "fleet-loadgen: missing value for %s\n", a.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    if (a == "--gateway") {
      gateway_urls.push_back(v);
    } else if (a == "--backend") {
      const auto eq = v.find('=');
      if (eq == std::string::npos) {
        std::fprintf(stderr, "fleet-loadgen: --backend wants NAME=URL\n");
        return 2;
      }
      backends.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (a == "--requests") {
      requests = std::max(1, std::atoi(v.c_str()));
    } else if (a == "--concurrency") {
      concurrency = std::max(1, std::atoi(v.c_str()));
    } else {
      std::fprintf(stderr, "fleet-loadgen: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (gateway_urls.empty()) {
    std::fprintf(stderr, "fleet-loadgen: give at least one --gateway\n");
    return 2;
  }
  std::vector<Target> gateways;
  for (const auto& u : gateway_urls) gateways.push_back(parse_url(u));

  std::mutex mu;
  std::map<std::string, std::vector<double>> latency_by_node;
  std::map<int, int> statuses;
  std::atomic<int> next{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&, c] {
      std::vector<std::unique_ptr<httplib::Client>> conns;
      for (const auto& g : gateways) {
        conns.push_back(std::make_unique<httplib::Client>(g.host, g.port));
        conns.back()->set_read_timeout(std::chrono::seconds(60));
      }
      for (int i; (i = next++) < requests;) {
        auto& cli = *conns[static_cast<std::size_t>(i + c) % conns.size()];
        const auto t0 = std::chrono::steady_clock::now();
        auto res = cli.Post("/api/generate", R"({"model":"llama3","prompt":"hello"})",
                            "application/json");
        const double ms = std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - t0)
                              .count();
        std::lock_guard<std::mutex> lock(mu);
        ++statuses[res ? res->status : -1];
        if (res && res->status == 200) {
          latency_by_node[res->get_header_value("X-Fleet-Node")].push_back(ms);
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("\n%d requests from %d clients through %zu gateway(s) in %.1f s (%.0f/s)\n",
              requests, concurrency, gateways.size(), seconds, requests / seconds);
  std::printf("HTTP statuses:");
  for (const auto& [code, n] : statuses) std::printf("  %d x %d", code, n);
  std::printf("\n\n%-10s %-22s %9s %16s %9s %9s\n", "node", "address", "requests",
              "peak/capacity", "p50 ms", "p99 ms");
  bool overfilled = false;
  // Node ids are addresses unless the spec named them; match by address.
  for (const auto& [name, url] : backends) {
    const Target t = parse_url(url);
    const Json s = get_json(t, "/stats");
    const std::string address = t.host + ":" + std::to_string(t.port);
    std::vector<double> lat;
    for (const auto& [node, v] : latency_by_node) {
      if (node == address || node == name) lat.insert(lat.end(), v.begin(), v.end());
    }
    const int peak = s.value("peak_concurrency", -1), capacity = s.value("capacity", 0);
    if (capacity > 0 && peak > capacity) overfilled = true;
    std::printf("%-10s %-22s %9ld %10d / %-3d %9.1f %9.1f\n", name.c_str(),
                address.c_str(), s.value("requests", 0L), peak, capacity,
                percentile(lat, 0.5), percentile(lat, 0.99));
  }
  std::printf("\n%-24s %10s %10s %12s %26s\n", "gateway", "decisions", "refusals",
              "waited", "shaped by others' load");
  for (const auto& g : gateways) {
    const Json f = get_json(g, "/fleet");
    long seen_by_all = 0;
    for (const auto& n : f.value("nodes", Json::array())) {
      if (n.value("reporters", 0) >= static_cast<int>(gateways.size())) ++seen_by_all;
    }
    std::printf("%-24s %10ld %10ld %12ld %26ld\n",
                f.value("gateway", std::string("?")).c_str(), f.value("decisions", 0L),
                f.value("rejections", 0L), f.value("waits", 0L),
                f.value("saw_other_gateways", 0L));
    std::printf("  nodes with observations from all %zu gateways: %ld of %zu\n",
                gateways.size(), seen_by_all, f.value("nodes", Json::array()).size());
  }
  if (overfilled) {
    std::printf("\nFAILED: a node served more requests at once than its capacity\n");
    return 1;
  }
  std::printf("\nno node ever served more requests at once than its capacity\n");
  return 0;
}
