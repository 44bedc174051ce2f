#include "workload.hpp"

#include <unistd.h>
#include <cstdio>

#include <algorithm>
#include <cstdlib>

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;

std::string unique_namespace() {
  static std::atomic<int> n{0};
  return "fault-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

}  // namespace

std::string_view to_string(Op op) {
  switch (op) {
    case Op::kLock:
      return "lock";
    case Op::kClaim:
      return "claim";
    case Op::kRoute:
      return "route";
  }
  return "?";
}

Workload::Workload(RedisServer& server, int instances, bool through_proxies,
                   Timing timing, const std::string& url)
    : server_(server), timing_(timing), ns_(unique_namespace()) {
  for (int i = 0; i < instances; ++i) {
    auto in = std::make_unique<Instance>();
    in->name = "i" + std::to_string(i);
    RedisOptions o;
    o.url = url.empty() ? server_.url() : url;
    if (through_proxies) {
      in->proxy = FaultProxy::start(server_.port()).value();
      o.url = in->proxy->url();
    }
    o.namespace_name = ns_;
    o.heartbeat_interval = timing_.heartbeat;
    o.session_ttl = timing_.session_ttl;
    o.command_timeout = timing_.command_timeout;
    o.connect_timeout = timing_.command_timeout;
    o.reconnect_backoff_min = milliseconds(20);
    o.reconnect_backoff_max = timing_.backoff_max;
    const bool verbose = std::getenv("FLEET_TEST_LOG") != nullptr;
    o.log_sink = verbose ? stderr_log_sink() : quiet_log_sink();
    in->coordinator = RedisCoordinator::connect(o).value();
    InstanceInfo me;
    me.id = in->name;
    if (!in->coordinator->join(me).ok()) std::abort();
    router::RouterOptions ro;
    ro.name = "p";
    ro.check_interval = milliseconds(100);
    ro.log_sink = o.log_sink;
    in->router = router::Router::create(*in->coordinator, ro).value();
    if (i == 0) {
      for (int n = 0; n < 2; ++n) {
        router::NodeSpec spec;
        spec.id = "n" + std::to_string(n + 1);
        spec.address = "127.0.0.1:" + std::to_string(10001 + n);
        spec.capacity = kCapacity[n];
        if (!in->router->add_node(spec).ok()) std::abort();
      }
    }
    instances_.push_back(std::move(in));
  }
  for (auto& in : instances_) (void)in->router->run_once();
}

Workload::~Workload() {
  stop();
  for (auto& in : instances_) {
    in->router.reset();
    in->coordinator.reset();
  }
}

void Workload::start() {
  for (int i = 0; i < instances(); ++i) {
    Instance& in = *instances_[i];
    in.threads.emplace_back([this, &in, i] { lock_loop(in, i); });
    in.threads.emplace_back([this, &in, i] { claim_loop(in, i); });
    in.threads.emplace_back([this, &in, i] { route_loop(in, i); });
  }
}

void Workload::stop() {
  stop_ = true;
  for (auto& in : instances_) {
    for (auto& t : in->threads) {
      if (t.joinable()) t.join();
    }
  }
}

void Workload::crash(int i) {
  Instance& in = *instances_.at(i);
  in.crashed = true;
  for (auto& t : in.threads) t.join();
  in.threads.clear();
  history_.holder_died(in.name, History::now());
  in.router.reset();       // tickets stay counted: a crash, no release
  in.coordinator.reset();  // no leave(): the session expires
  in.dead = true;
}

void Workload::note(Op op, int index, const absl::Status& st) {
  std::lock_guard<std::mutex> lock(mu_);
  outcomes_.push_back(Outcome{op, index, History::now(), st.ok(), st.ToString()});
}

void Workload::lock_loop(Instance& in, int index) {
  Coordinator& c = *in.coordinator;
  while (running(in)) {
    const auto asked = History::now();
    auto lease = c.try_lock("L", timing_.lease_ttl);
    note(Op::kLock, index, lease.status());
    if (!lease.ok() || !lease->has_value()) {
      std::this_thread::sleep_for(milliseconds(2));
      continue;
    }
    const Lease& l = **lease;
    history_.lock_granted("L", in.name, l.fence, asked, History::now(), l.expires_at);
    std::this_thread::sleep_for(milliseconds(5));
    if (in.crashed) return;  // dies holding it
    // The holder stops relying on the lock when it asks to release it.
    history_.lock_released("L", in.name, l.fence, History::now());
    (void)c.release(l);
  }
}

void Workload::claim_loop(Instance& in, int index) {
  Coordinator& c = *in.coordinator;
  for (int k = 0; running(in); ++k) {
    const std::string key = "k" + std::to_string(k);
    auto r = c.claim("rooms", key, in.name);
    note(Op::kClaim, index, r.status());
    if (r.ok()) {
      history_.claim("rooms", key, in.name, r->claimed, r->entry.value, History::now());
    } else {
      history_.claim_failed("rooms", key, in.name, r.status().ToString(), History::now());
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
}

void Workload::route_loop(Instance& in, int index) {
  router::Router& r = *in.router;
  while (running(in)) {
    auto t = r.acquire();
    // A full pool is not a failure of fleet's.
    note(Op::kRoute, index,
         t.ok() || absl::IsResourceExhausted(t.status()) ? absl::OkStatus() : t.status());
    if (!t.ok()) {
      std::this_thread::sleep_for(milliseconds(5));
      continue;
    }
    const std::int64_t capacity = kCapacity[t->node_id == "n1" ? 0 : 1];
    history_.slot_granted("p", t->node_id, capacity, in.name, t->id, History::now());
    std::this_thread::sleep_for(milliseconds(5));
    if (in.crashed) return;  // dies holding it
    history_.slot_released("p", t->node_id, in.name, t->id, History::now());
    (void)r.release(*t, {true});
  }
}

std::vector<Workload::Outcome> Workload::outcomes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return outcomes_;
}

Workload::Report Workload::report(History::Time fault_begin,
                                  History::Time fault_end) const {
  const auto all = outcomes();
  Report rep;
  for (Op op : {Op::kLock, Op::kClaim, Op::kRoute}) {
    History::Time worst = fault_end;
    for (int i = 0; i < instances(); ++i) {
      if (instances_[i]->dead) continue;
      auto first_ok = History::Time::max();
      for (const auto& o : all) {
        if (o.op == op && o.instance == i && o.ok && o.at >= fault_end) {
          first_ok = std::min(first_ok, o.at);
        }
      }
      worst = std::max(worst, first_ok);
    }
    rep.recovery[op] = worst == History::Time::max()
                           ? milliseconds::max()
                           : std::chrono::duration_cast<milliseconds>(worst - fault_end);
    for (const auto& o : all) {
      if (o.op != op) continue;
      if (o.ok) {
        ++rep.ok[op];
        continue;
      }
      if (o.at >= fault_begin && o.at <= worst) {
        ++rep.errors_before_recovery[op];
        continue;
      }
      ++(o.at < fault_begin ? rep.errors_before_fault : rep.errors_after_recovery)[op];
      if (rep.first_unexpected.empty()) {
        rep.first_unexpected = std::string(to_string(op)) + ": " + o.error;
      }
    }
  }
  return rep;
}

void Workload::print(const std::string& kind, const std::string& name, const Report& rep,
                     History::Time::duration fault,
                     const std::vector<std::string>& violations) const {
  std::printf(
      "%s '%s': %s; fault %lld ms\n", kind.c_str(), name.c_str(),
      history_.summary().c_str(),
      static_cast<long long>(std::chrono::duration_cast<milliseconds>(fault).count()));
  for (Op op : {Op::kLock, Op::kClaim, Op::kRoute}) {
    std::printf(
        "  %-5s recovered %5lld ms after the fault; errors: %d during, %d after; %d ok\n",
        std::string(to_string(op)).c_str(),
        static_cast<long long>(rep.recovery.at(op).count()),
        rep.errors_before_recovery.count(op) ? rep.errors_before_recovery.at(op) : 0,
        rep.errors_after_recovery.count(op) ? rep.errors_after_recovery.at(op) : 0,
        rep.ok.count(op) ? rep.ok.at(op) : 0);
  }
  std::printf("  history violations: %zu\n", violations.size());
  for (const auto& v : violations) std::printf("    %s\n", v.c_str());
  std::fflush(stdout);
}

}  // namespace fleet::testing
