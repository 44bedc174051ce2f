// The fault suite's in-process workload: a few instances of a service, each
// a RedisCoordinator session (optionally through a FaultProxy of its own)
// with a fleet::router, running three loops at once — take a lock and hand
// it back, claim the next key of a sequence all of them walk, route a
// request and release it — and recording every grant in a History and the
// outcome of every call, so that a scenario can check the invariants and
// measure how long each kind of call failed after the fault ended.
#ifndef FLEET_TESTS_FAULT_WORKLOAD_HPP_
#define FLEET_TESTS_FAULT_WORKLOAD_HPP_

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fault_proxy.hpp"
#include "fleet/coordinator.hpp"
#include "fleet/redis_coordinator.hpp"
#include "fleet/router.hpp"
#include "history.hpp"
#include "redis_server.hpp"

namespace fleet::testing {

struct Timing {
  std::chrono::milliseconds heartbeat{100};
  std::chrono::milliseconds session_ttl{1000};
  std::chrono::milliseconds command_timeout{300};
  std::chrono::milliseconds backoff_max{400};
  std::chrono::milliseconds lease_ttl{1000};
};

enum class Op { kLock, kClaim, kRoute };
std::string_view to_string(Op op);

class Workload {
 public:
  // The pool "p": node "n1" with capacity 2, "n2" with capacity 3.
  static constexpr std::int64_t kCapacity[] = {2, 3};

  // `url`: connect there instead of to `server` (a redis+sentinel:// URL).
  Workload(RedisServer& server, int instances, bool through_proxies, Timing timing = {},
           const std::string& url = "");
  ~Workload();

  void start();
  // Every loop ends (releasing what it holds) and its thread is joined.
  void stop();
  // Instance i crashes: its loops stop where they are, holding what they
  // hold, and its session is destroyed without leave().
  void crash(int i);

  FaultProxy& proxy(int i) { return *instances_.at(i)->proxy; }
  int instances() const { return static_cast<int>(instances_.size()); }
  Coordinator& coordinator(int i) { return *instances_.at(i)->coordinator; }
  History& history() { return history_; }
  const Timing& timing() const { return timing_; }
  const std::string& ns() const { return ns_; }

  struct Outcome {
    Op op;
    int instance;
    History::Time at;
    bool ok;
    std::string error;  // when !ok
  };
  std::vector<Outcome> outcomes() const;

  // Per kind of call: how long after `end` each live instance first
  // succeeded again (the worst of them), and the errors after `from`.
  struct Report {
    std::map<Op, std::chrono::milliseconds> recovery;
    std::map<Op, int> errors_before_fault, errors_before_recovery, errors_after_recovery;
    std::map<Op, int> ok;
    std::string first_unexpected;  // the first error before the fault or after recovery
  };
  Report report(History::Time fault_begin, History::Time fault_end) const;
  // Prints what a scenario measured: the history's summary, per kind of
  // call the recovery and the errors, and every violation.
  void print(const std::string& kind, const std::string& name, const Report& rep,
             History::Time::duration fault,
             const std::vector<std::string>& violations) const;

 private:
  struct Instance {
    std::string name;
    std::unique_ptr<FaultProxy> proxy;
    std::unique_ptr<Coordinator> coordinator;
    std::unique_ptr<router::Router> router;
    std::vector<std::thread> threads;
    std::atomic<bool> crashed{false};
    bool dead = false;
  };

  void lock_loop(Instance& in, int index);
  void claim_loop(Instance& in, int index);
  void route_loop(Instance& in, int index);
  void note(Op op, int index, const absl::Status& st);
  bool running(const Instance& in) const { return !stop_ && !in.crashed; }

  RedisServer& server_;
  const Timing timing_;
  const std::string ns_;
  History history_;
  std::vector<std::unique_ptr<Instance>> instances_;
  std::atomic<bool> stop_{false};

  mutable std::mutex mu_;
  std::vector<Outcome> outcomes_;
};

}  // namespace fleet::testing

#endif  // FLEET_TESTS_FAULT_WORKLOAD_HPP_
