// fleet::router — one cluster-wide routing decision per request.
//
// Several gateways front one pool of backend nodes. Each gateway creates a
// Router on its own Coordinator session; all of them share the pool:
//
//   fleet::router::RouterOptions o;               // a fleet::ModuleOptions
//   o.name = "llm";                               // the pool
//   o.policy = fleet::router::Policy::kWeighted;
//   auto router = fleet::router::Router::create(*coordinator, o).value();
//   auto spec = fleet::router::parse_node_spec("10.0.0.7:11434,capacity=4").value();
//   if (auto st = router->add_node(spec); !st.ok()) return st;
//   auto ticket = router->acquire({});           // ResourceExhausted when full
//   if (!ticket.ok()) return reject(ticket.status());
//   bool ok = forward_to(ticket->address);
//   (void)router->release(*ticket, {ok});         // frees the slot whatever it says
//
// acquire() counts the request against the chosen node in the same atomic
// step that chooses it (Coordinator::acquire_slot: one Lua script on Redis),
// so no two gateways can overfill a node, and a crashed gateway's requests
// disappear with its session. Slower-moving observations — latency, success
// rate, host metrics — are published by each gateway and aggregated over the
// live ones; every gateway scores with the same aggregate.
//
// The router is a fleet module (module.hpp): it works with or without
// Coordinator::join() (it does not name this instance). Its check —
// every check_interval on its worker, or run_once() — publishes this
// gateway's observations and re-reads the aggregates and the in-flight
// counts; the registry and the open circuits it follows through their
// change streams.
//
// Threads: every method is safe from any thread. acquire_async's `done`
// runs on the Coordinator's slot I/O thread (Redis) or the calling thread
// (in-process); the router has no other callbacks.
//
// Lifetime: the Coordinator must outlive the Router. Tickets still held
// when the Router is destroyed stay counted until the session leaves or
// expires (as after a crash).
#ifndef FLEET_ROUTER_HPP_
#define FLEET_ROUTER_HPP_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fleet/clock.hpp"
#include "fleet/coordinator.hpp"
#include "fleet/log.hpp"
#include "fleet/module.hpp"

namespace fleet::router {

// Whether a backend node takes new requests. (Named apart from
// rooms::NodeState, a room-hosting node's lifecycle.)
enum class BackendState { kServing, kDraining, kDown };

struct Region {
  std::string name;                           // empty: unknown
  std::optional<double> latitude, longitude;  // degrees; both or neither
};

inline constexpr std::size_t kMaxNodeIdBytes = 128;

struct NodeSpec {
  std::string id;       // defaults to address; name rules, kMaxNodeIdBytes at most
  std::string address;  // host:port
  Region region;
  std::int64_t capacity = 1;     // most requests in flight at once, > 0
  std::set<std::string> labels;  // e.g. the models a node has loaded
  BackendState state = BackendState::kServing;
};

// "host:port[,id=..][,region=..][,lat=..,lon=..][,capacity=..][,labels=a|b]
// [,state=serving|draining|down]". InvalidArgument names what is wrong.
absl::StatusOr<NodeSpec> parse_node_spec(std::string_view spec);
// One spec per line; blank lines and lines starting with '#' are skipped.
absl::StatusOr<std::vector<NodeSpec>> parse_node_specs(std::string_view text);
// "name[,lat=..,lon=..]".
absl::StatusOr<Region> parse_region(std::string_view text);

enum class Policy {
  kLeastInflight,  // lowest in-flight / capacity
  kWeighted,       // lowest weighted score (latency, failures, load, GPU, in-flight)
  kRegionAware,    // nearest region with a node under region_load_limit, else all
  kPowerOfTwo,     // two random nodes with room; the less loaded one
};
// "least-inflight", "weighted", "region", "p2c" (and the enum's names).
absl::StatusOr<Policy> parse_policy(std::string_view name);
std::string_view to_string(Policy policy);
// "serving", "draining", "down".
std::string_view to_string(BackendState state);
absl::StatusOr<BackendState> parse_backend_state(std::string_view name);

// The weighted policy scores each node (lower is better) as
//   latency * latency_ms / max latency_ms over the candidates
// + success * (1 - success rate)
// + load    * cpu load (0..1, as reported)
// + gpu     * (1 - free GPU memory / max free GPU memory over the candidates)
// + inflight * in-flight / capacity   (live, read inside the atomic step)
// A node nobody has measured yet gets the candidates' mean for that factor.
struct Weights {
  double latency = 1.0;
  double success = 2.0;
  double load = 0.5;
  double gpu = 0.5;
  double inflight = 1.0;
};

enum class Priority { kLow, kNormal, kHigh };

struct Hints {
  Priority priority = Priority::kNormal;
  std::string label;              // only nodes with this label
  std::optional<Region> origin;   // overrides RouterOptions::home
  std::set<std::string> exclude;  // node ids not to use (e.g. already tried)
  // How long to wait for a slot when every eligible node is full; zero
  // fails at once with ResourceExhausted.
  std::chrono::milliseconds wait{0};
};

struct Ticket {
  std::uint64_t id = 0;
  std::string node_id;
  std::string address;
  Clock::TimePoint started{};
  std::int64_t cluster_inflight = 0;  // on the node, this request included
  std::int64_t own_inflight = 0;      // of them, this gateway's
};

struct Outcome {
  bool success = true;
  // Measured from the ticket's start when not given.
  std::optional<std::chrono::microseconds> latency;
};

// ModuleOptions::name is the pool: the gateways of one pool share its
// nodes, in-flight counts, observations and circuits.
struct RouterOptions : ModuleOptions {
  Policy policy = Policy::kLeastInflight;
  Weights weights;
  std::optional<Region> home;      // this gateway's location, for kRegionAware
  double region_load_limit = 0.8;  // (0, 1]
  // Share of a node's capacity low-priority requests may fill, (0, 1].
  double low_priority_share = 0.75;
  int breaker_failures = 5;  // consecutive failures that open a node's circuit
  std::chrono::milliseconds breaker_cooldown{10000};
  double ewma_alpha = 0.2;  // weight of the newest latency/success sample
  std::uint64_t seed = 0;   // power-of-two sampling; 0: random
};

// What this gateway knows about one node.
struct NodeView {
  NodeSpec spec;
  std::int64_t cluster_inflight = 0;  // all live gateways (at the last refresh)
  std::int64_t own_inflight = 0;      // this gateway, now
  std::uint32_t reporters = 0;        // gateways whose observations are aggregated
  std::optional<double> latency_ms;   // average of the gateways' EWMAs
  std::optional<double> success_rate;
  std::optional<double> cpu_load;
  std::optional<double> gpu_free_mb;
  bool circuit_open = false;
  std::chrono::milliseconds circuit_reopens_in{0};
  std::uint64_t decisions = 0;  // by this gateway
  std::uint64_t failures = 0;   // by this gateway
};

struct RouterStats {
  std::uint64_t checks = 0;  // checks completed (worker or run_once)
  std::uint64_t decisions = 0;
  std::uint64_t rejections = 0;  // ResourceExhausted returned
  std::uint64_t waits = 0;       // acquires that had to wait for a slot
  // Decisions that the other gateways' requests shaped: a node chosen that
  // already had others' requests in flight, or a decision that found the
  // pool full (and waited, or was refused) while this gateway's own
  // requests left room. The proof that it sees their load. At most one per
  // decision.
  std::uint64_t saw_other_gateways = 0;
  std::uint64_t breaker_trips = 0;
  // Latency histogram of released requests: counts per upper bound (ms),
  // the last bucket is +Inf.
  std::vector<double> latency_bounds_ms;
  std::vector<std::uint64_t> latency_counts;
  double latency_sum_ms = 0;
};

class Router {
 public:
  // InvalidArgument for bad options. Starts following the pool's registry
  // and circuit breakers, and (unless options.background is false) the
  // worker.
  static absl::StatusOr<std::unique_ptr<Router>> create(Coordinator& coordinator,
                                                        RouterOptions options);
  // Tickets still held when the Router is destroyed stay counted until the
  // Coordinator session leaves or expires, as after a crash: call
  // Coordinator::leave() at shutdown to free them at once.
  virtual ~Router() = default;

  // Registers or updates a node for every gateway of the pool.
  virtual absl::Status add_node(const NodeSpec& spec) = 0;
  // kDraining / kDown: no new requests; in-flight ones finish.
  virtual absl::Status set_node_state(std::string_view node_id, BackendState state) = 0;
  virtual absl::Status remove_node(std::string_view node_id) = 0;

  // Chooses a node by the policy and takes a slot on it, atomically across
  // all gateways. ResourceExhausted: every eligible node is at capacity
  // (after waiting hints.wait); NotFound: no registered node has the label;
  // Unavailable: no eligible node is serving (all draining, down, excluded
  // or with an open circuit), or the backend is unreachable.
  virtual absl::StatusOr<Ticket> acquire(const Hints& hints = {}) = 0;

  // acquire() without blocking: `done` gets the ticket or the error
  // acquire() would have returned, exactly once, on the Coordinator's slot
  // I/O thread (Redis) or before this returns (in-process). It never waits
  // for a slot: hints.wait must be zero (InvalidArgument otherwise), and a
  // full pool is ResourceExhausted at once. For event-loop servers and
  // many requests in flight: decisions made meanwhile share round trips,
  // and those on the same hints share one script call (see
  // Coordinator::acquire_slot_async). `done` must be quick and must not
  // destroy the Router; the Router's destructor waits for pending ones.
  // Returns InvalidArgument, deciding nothing, only when `done` is empty.
  using TicketCallback = std::function<void(absl::StatusOr<Ticket>)>;
  virtual absl::Status acquire_async(const Hints& hints, TicketCallback done) = 0;

  // Frees the ticket's slot and records its latency and success. A failure
  // counts toward the node's circuit breaker. FailedPrecondition for a
  // ticket that is unknown or already released.
  virtual absl::Status release(const Ticket& ticket, const Outcome& outcome) = 0;

  // Host metrics of a node as this gateway last saw them (e.g. from the
  // node's response headers); published with the other observations.
  virtual void report_host_metrics(std::string_view node_id,
                                   std::optional<double> cpu_load,
                                   std::optional<double> gpu_free_mb) = 0;

  // One check by hand: publishes this gateway's observations and re-reads
  // the aggregates and the in-flight counts (after a data loss, first
  // registers the pool's nodes again). The worker runs it every
  // check_interval.
  virtual absl::Status run_once() = 0;

  // The Coordinator slot pool holding the pool's in-flight counts
  // ("router/<name>"): Coordinator::slot_usage(router->slot_pool()).
  virtual const std::string& slot_pool() const = 0;

  // The pool as this gateway sees it, ordered by node id.
  virtual std::vector<NodeView> nodes() = 0;
  virtual RouterStats stats() = 0;
  virtual const RouterOptions& options() const = 0;
};

}  // namespace fleet::router

#endif  // FLEET_ROUTER_HPP_
