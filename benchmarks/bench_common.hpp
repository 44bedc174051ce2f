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
};

inline double percentile(std::vector<double>& v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * (v.size() - 1))];
}

// Runs op(thread, i) `per_thread` times on each of `threads` threads. Each
// thread alternates blocks of 50 operations with blocks of 50 raw PINGs
// (ping(thread)), so the baseline sees the same scheduling and load as the
// operation; the ratio is p50(op) / p50(interleaved PING). ops/s counts the
// operations only, over the time spent in them.
inline Result measure(const std::string& name, int threads, int per_thread,
                      const std::function<void(int, int)>& op,
                      const std::function<void(int, int)>& untimed_setup,
                      const std::function<void(int)>& ping) {
  constexpr int kBlock = 50;
  std::vector<std::vector<double>> lat(threads), base(threads);
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
      for (int i = 0; i < per_thread;) {
        for (int k = 0; k < kBlock; ++k) {
          const auto s = Clock::now();
          ping(t);
          base[t].push_back(
              std::chrono::duration<double, std::micro>(Clock::now() - s).count());
        }
        for (int k = 0; k < kBlock && i < per_thread; ++k, ++i) {
          if (untimed_setup) untimed_setup(t, i);
          const auto s = Clock::now();
          op(t, i);
          const double us =
              std::chrono::duration<double, std::micro>(Clock::now() - s).count();
          lat[t].push_back(us);
          busy[t] += us;
        }
      }
    });
  }
  while (ready < threads) std::this_thread::yield();
  go = true;
  for (auto& th : pool) th.join();
  std::vector<double> all, pings;
  double busy_s = 0;
  for (int t = 0; t < threads; ++t) {
    all.insert(all.end(), lat[t].begin(), lat[t].end());
    pings.insert(pings.end(), base[t].begin(), base[t].end());
    busy_s = std::max(busy_s, busy[t] / 1e6);
  }
  const double p50 = percentile(all, 0.50), p99 = percentile(all, 0.99);
  const double ping_p50 = percentile(pings, 0.50);
  return Result{name, threads, p50, p99, all.size() / busy_s, p50 / ping_p50};
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
  std::printf("%-26s %7s %10s %10s %12s %12s\n", "operation", "threads", "p50 us",
              "p99 us", "ops/s", "p50 / PING");
  for (const auto& r : results) {
    std::printf("%-26s %7d %10.1f %10.1f %12.0f %12.2f\n", r.name.c_str(), r.threads,
                r.p50_us, r.p99_us, r.ops_per_s, r.ratio);
  }
  if (json_path.empty()) return;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : results) {
    out.push_back({{"name", r.name},
                   {"p50_us", r.p50_us},
                   {"p99_us", r.p99_us},
                   {"ops_per_s", r.ops_per_s},
                   {"threads", r.threads},
                   {"ratio_to_ping_p50", r.ratio}});
  }
  std::ofstream(json_path) << out.dump(2) << "\n";
}

}  // namespace bench

#endif  // FLEET_BENCHMARKS_BENCH_COMMON_HPP_
