// Shared by the benchmarks: timing with an interleaved baseline, results
// as a table and as JSON (one array of rows, the format scripts/bench joins).
#ifndef FLEET_BENCHMARKS_BENCH_COMMON_HPP_
#define FLEET_BENCHMARKS_BENCH_COMMON_HPP_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace bench {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct Result {
  std::string name;
  int threads;
  double p50_us, p99_us, ops_per_s, ratio;
  // p50 / p50 of the second baseline (bench_router: a minimal decision
  // script); 0 when there is none.
  double ratio_script = 0;
};

inline double percentile(std::vector<double>& v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * (v.size() - 1))];
}

// Runs op(thread, i) `per_thread` times on each of `threads` threads. Each
// thread alternates blocks of 50 raw PINGs (ping(thread)), 50 of a second
// baseline if given (script(thread)) and 50 operations, so the baselines
// see the same scheduling and load as the operation. A ratio is the median,
// over the blocks, of p50(the block's operations) / p50(the adjacent
// baseline block): the machine's state (a VM's latency can change by 4x
// within a minute) then cancels out, which whole-run p50s do not. ops/s
// counts the operations only, over the time spent in them.
inline Result measure(const std::string& name, int threads, int per_thread,
                      const std::function<void(int, int)>& op,
                      const std::function<void(int, int)>& untimed_setup,
                      const std::function<void(int)>& ping,
                      const std::function<void(int)>& script = {}) {
  constexpr int kBlock = 50;
  std::vector<std::vector<double>> lat(threads);
  std::vector<std::vector<double>> ratios(threads), ratios2(threads);
  std::vector<double> busy(threads, 0);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = 0; i < std::min(per_thread / 10, 200); ++i) {  // warm-up, as timed
        if (untimed_setup) untimed_setup(t, -1 - i);
        op(t, -1 - i);
      }
      ++ready;
      while (!go) std::this_thread::yield();
      std::vector<double> b1, b2, o;
      auto timed = [](const std::function<void()>& f) {
        const auto s = Clock::now();
        f();
        return std::chrono::duration<double, std::micro>(Clock::now() - s).count();
      };
      for (int i = 0; i < per_thread;) {
        b1.clear();
        b2.clear();
        o.clear();
        for (int k = 0; k < kBlock; ++k) b1.push_back(timed([&] { ping(t); }));
        for (int k = 0; script && k < kBlock; ++k) {
          b2.push_back(timed([&] { script(t); }));
        }
        for (int k = 0; k < kBlock && i < per_thread; ++k, ++i) {
          if (untimed_setup) untimed_setup(t, i);
          o.push_back(timed([&] { op(t, i); }));
          busy[t] += o.back();
        }
        lat[t].insert(lat[t].end(), o.begin(), o.end());
        const double op_p50 = percentile(o, 0.50);
        ratios[t].push_back(op_p50 / percentile(b1, 0.50));
        if (script) ratios2[t].push_back(op_p50 / percentile(b2, 0.50));
      }
    });
  }
  while (ready < threads) std::this_thread::yield();
  go = true;
  for (auto& th : pool) th.join();
  std::vector<double> all, r1, r2;
  double busy_s = 0;
  for (int t = 0; t < threads; ++t) {
    all.insert(all.end(), lat[t].begin(), lat[t].end());
    r1.insert(r1.end(), ratios[t].begin(), ratios[t].end());
    r2.insert(r2.end(), ratios2[t].begin(), ratios2[t].end());
    busy_s = std::max(busy_s, busy[t] / 1e6);
  }
  const double p50 = percentile(all, 0.50), p99 = percentile(all, 0.99);
  Result r{name, threads, p50, p99, all.size() / busy_s, percentile(r1, 0.50)};
  if (!r2.empty()) r.ratio_script = percentile(r2, 0.50);
  return r;
}

[[noreturn]] inline void die(const std::string& what, const absl::Status& st) {
  std::fprintf(stderr, "bench_redis: %s: %s\n", what.c_str(), st.ToString().c_str());
  std::exit(1);
}

template <typename T>
T must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) die(what, v.status());
  return *std::move(v);
}

inline void report(const std::vector<Result>& results, const std::string& json_path) {
  bool scripted = false;
  for (const auto& r : results) scripted = scripted || r.ratio_script > 0;
  std::printf("%-26s %7s %10s %10s %12s %12s%s\n", "operation", "threads", "p50 us",
              "p99 us", "ops/s", "p50 / PING", scripted ? "  p50 / min script" : "");
  for (const auto& r : results) {
    std::printf("%-26s %7d %10.1f %10.1f %12.0f %12.2f", r.name.c_str(), r.threads,
                r.p50_us, r.p99_us, r.ops_per_s, r.ratio);
    if (r.ratio_script > 0) std::printf(" %18.2f", r.ratio_script);
    std::printf("\n");
  }
  if (json_path.empty()) return;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : results) {
    nlohmann::json row = {{"name", r.name},       {"p50_us", r.p50_us},
                          {"p99_us", r.p99_us},   {"ops_per_s", r.ops_per_s},
                          {"threads", r.threads}, {"ratio_to_ping_p50", r.ratio}};
    if (r.ratio_script > 0) row["ratio_to_min_script_p50"] = r.ratio_script;
    out.push_back(std::move(row));
  }
  std::ofstream(json_path) << out.dump(2) << "\n";
}

}  // namespace bench

#endif  // FLEET_BENCHMARKS_BENCH_COMMON_HPP_
