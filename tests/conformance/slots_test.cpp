// Conformance: slot pools (acquire_slot / release_slot / slot_usage).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <thread>

#include "backend.hpp"
#include "recorder.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

SlotCandidate cand(std::string target, std::int64_t capacity, double score = 0,
                   std::int32_t tier = 0) {
  SlotCandidate c;
  c.target = std::move(target);
  c.capacity = capacity;
  c.score = score;
  c.tier = tier;
  return c;
}

SlotRequest request(std::vector<SlotCandidate> candidates) {
  SlotRequest r;
  r.candidates = std::move(candidates);
  return r;
}

std::string take(Coordinator& c, const std::string& pool, const SlotRequest& r) {
  auto grant = unwrap(c.acquire_slot(pool, r));
  return grant ? grant->target : std::string("<none>");
}

TEST_CASE("acquire_slot picks the least loaded target and respects capacity",
          "[conformance][slots]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  const auto r = request({cand("n1", 2), cand("n2", 4)});

  auto first = unwrap(a->acquire_slot("gpu", r));
  REQUIRE(first.has_value());
  CHECK(first->target == "n1");  // both empty: the earliest wins the tie
  CHECK(first->used == 1);
  CHECK(first->capacity == 2);
  CHECK(take(*b, "gpu", r) == "n2");  // n1 at 1/2, n2 at 0/4
  CHECK(take(*a, "gpu", r) == "n2");  // 1/2 vs 1/4
  CHECK(take(*b, "gpu", r) == "n1");  // 1/2 vs 2/4: tie, earliest
  CHECK(take(*a, "gpu", r) == "n2");  // n1 is full
  CHECK(take(*b, "gpu", r) == "n2");
  CHECK(take(*a, "gpu", r) == "<none>");  // 2/2 and 4/4

  auto usage = unwrap(b->slot_usage("gpu"));
  CHECK(usage == std::map<std::string, std::int64_t>{{"n1", 2}, {"n2", 4}});

  FLEET_REQUIRE_OK(a->release_slot("gpu", "n1"));
  auto again = unwrap(b->acquire_slot("gpu", r));
  REQUIRE(again.has_value());
  CHECK(again->target == "n1");
  CHECK(again->used == 2);
}

TEST_CASE("acquire_slot adds load_weight times load to each score",
          "[conformance][slots]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto r = request({cand("slow", 10, 0.5), cand("fast", 10, 0.0)});
  r.load_weight = 2.0;
  // fast: 0 + 2*used/10; slow: 0.5 + 2*used/10. fast wins until it is
  // 3 slots ahead (0.6 > 0.5), then slow.
  CHECK(take(*a, "p", r) == "fast");  // 0.0 vs 0.5
  CHECK(take(*a, "p", r) == "fast");  // 0.2 vs 0.5
  CHECK(take(*a, "p", r) == "fast");  // 0.4 vs 0.5
  CHECK(take(*a, "p", r) == "slow");  // 0.6 vs 0.5
  CHECK(take(*a, "p", r) == "fast");  // 0.6 vs 0.7
  r.load_weight = 0;                  // score alone decides
  CHECK(take(*a, "p", r) == "fast");
  CHECK(unwrap(a->slot_usage("p")) ==
        std::map<std::string, std::int64_t>{{"fast", 5}, {"slow", 1}});
}

TEST_CASE("acquire_slot prefers the lowest tier under the load limit, else all",
          "[conformance][slots]") {
  auto backend = make_backend();
  auto a = backend->connect();
  // near: tier 0; far: tier 1 with a better score.
  auto r = request({cand("far", 4, -1.0, 1), cand("near", 4, 0.0, 0)});
  r.tier_load_limit = 0.5;
  CHECK(take(*a, "p", r) == "near");  // near 0/4 < 0.5
  CHECK(take(*a, "p", r) == "near");  // near 1/4 < 0.5
  CHECK(take(*a, "p", r) == "far");   // near 2/4 is at the limit: tier 1
  CHECK(take(*a, "p", r) == "far");   // far 1/4
  // Both at 2/4: no tier has a candidate under the limit, so every
  // candidate with room counts and the score decides (far: -1 + 0.5).
  CHECK(take(*a, "p", r) == "far");
  CHECK(take(*a, "p", r) == "far");
  CHECK(take(*a, "p", r) == "near");  // far is full
  CHECK(take(*a, "p", r) == "near");
  CHECK(take(*a, "p", r) == "<none>");
}

TEST_CASE("acquire_slot with sample k looks only at the first k with room",
          "[conformance][slots]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto fill = request({cand("a", 1)});
  CHECK(take(*a, "p", fill) == "a");  // a is now full

  auto r = request({cand("a", 1), cand("b", 3), cand("c", 3), cand("d", 3, -5.0)});
  r.sample = 2;  // a has no room, so b and c are the two sampled; d is not
  CHECK(take(*a, "p", r) == "b");
  CHECK(take(*a, "p", r) == "c");
  CHECK(take(*a, "p", r) == "b");
  r.sample = 0;
  CHECK(take(*a, "p", r) == "d");
}

TEST_CASE("acquire_slot starts its order at rotate, wrapping around",
          "[conformance][slots]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto r = request({cand("a", 2), cand("b", 2), cand("c", 2)});
  r.rotate = 1;
  CHECK(take(*a, "p", r) == "b");  // all idle: the first from index 1
  r.rotate = 5;                    // 5 % 3 == 2
  CHECK(take(*a, "p", r) == "c");
  CHECK(take(*a, "p", r) == "a");  // c is busier now: a comes next in c, a, b
  r.sample = 1;
  r.rotate = 2;
  CHECK(take(*a, "p", r) == "c");  // sample 1 from c: c, although busier
  CHECK(take(*a, "p", r) == "a");  // c is full: the first with room after it
  CHECK(unwrap(a->slot_usage("p")) ==
        std::map<std::string, std::int64_t>{{"a", 2}, {"b", 1}, {"c", 2}});
}

TEST_CASE("concurrent acquires never exceed capacity", "[conformance][slots]") {
  auto backend = make_backend();
  std::vector<std::unique_ptr<Coordinator>> sessions;
  for (int i = 0; i < 3; ++i) sessions.push_back(backend->connect());
  const auto r = request({cand("x", 3), cand("y", 2)});
  std::atomic<int> granted{0}, refused{0}, errors{0};
  std::mutex mu;
  std::string first_error;
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        auto g = sessions[t % 3]->acquire_slot("race", r);
        if (!g.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (first_error.empty()) first_error = g.status().ToString();
          ++errors;
        } else if (g->has_value()) {
          ++granted;
        } else {
          ++refused;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(first_error == "");
  CHECK(errors == 0);
  CHECK(granted == 5);
  CHECK(refused == 25);
  CHECK(unwrap(sessions[0]->slot_usage("race")) ==
        std::map<std::string, std::int64_t>{{"x", 3}, {"y", 2}});
}

TEST_CASE("a session's slots are freed by leave, and when it expires",
          "[conformance][slots]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  auto c = backend->connect();
  const auto r = request({cand("n", 6)});
  for (int i = 0; i < 2; ++i) CHECK(take(*a, "p", r) == "n");
  for (int i = 0; i < 3; ++i) CHECK(take(*b, "p", r) == "n");
  CHECK(take(*c, "p", r) == "n");
  CHECK(take(*a, "p", r) == "<none>");

  FLEET_REQUIRE_OK(c->leave());
  CHECK(unwrap(a->slot_usage("p")) == std::map<std::string, std::int64_t>{{"n", 5}});
  FLEET_REQUIRE_CODE(c->release_slot("p", "n"), kFailedPrecondition);

  b.reset();  // crashed holding 3 slots
  backend->advance(backend->session_ttl() * 2);
  CHECK(unwrap(a->slot_usage("p")) == std::map<std::string, std::int64_t>{{"n", 2}});
  for (int i = 0; i < 4; ++i) CHECK(take(*a, "p", r) == "n");
  CHECK(take(*a, "p", r) == "<none>");
}

TEST_CASE("release_slot frees only the caller's own slots", "[conformance][slots]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  const auto r = request({cand("n", 4)});
  CHECK(take(*a, "p", r) == "n");
  FLEET_REQUIRE_CODE(b->release_slot("p", "n"), kFailedPrecondition);
  FLEET_REQUIRE_CODE(a->release_slot("p", "m"), kFailedPrecondition);
  FLEET_REQUIRE_CODE(a->release_slot("q", "n"), kFailedPrecondition);
  FLEET_REQUIRE_OK(a->release_slot("p", "n"));
  FLEET_REQUIRE_CODE(a->release_slot("p", "n"), kFailedPrecondition);
  CHECK(unwrap(b->slot_usage("p")).empty());
  // Pools are independent.
  CHECK(take(*a, "p", r) == "n");
  CHECK(unwrap(a->slot_usage("q")).empty());
}

TEST_CASE("bad slot requests are InvalidArgument", "[conformance][slots]") {
  auto backend = make_backend();
  auto a = backend->connect();
  FLEET_REQUIRE_CODE(a->acquire_slot("p", request({})), kInvalidArgument);
  FLEET_REQUIRE_CODE(a->acquire_slot("", request({cand("n", 1)})), kInvalidArgument);
  FLEET_REQUIRE_CODE(a->acquire_slot("p", request({cand("", 1)})), kInvalidArgument);
  FLEET_REQUIRE_CODE(a->acquire_slot("p", request({cand("n", 0)})), kInvalidArgument);
  FLEET_REQUIRE_CODE(a->acquire_slot("p", request({cand("n", 1), cand("n", 2)})),
                     kInvalidArgument);
  FLEET_REQUIRE_CODE(
      a->acquire_slot("p",
                      request({cand("n", 1, std::numeric_limits<double>::infinity())})),
      kInvalidArgument);
  auto r = request({cand("n", 1)});
  r.tier_load_limit = 0;
  FLEET_REQUIRE_CODE(a->acquire_slot("p", r), kInvalidArgument);
  r.tier_load_limit = 1;
  r.load_weight = -1;
  FLEET_REQUIRE_CODE(a->acquire_slot("p", r), kInvalidArgument);
  std::vector<SlotCandidate> many;
  for (std::size_t i = 0; i <= kMaxSlotCandidates; ++i)
    many.push_back(cand("n" + std::to_string(i), 1));
  FLEET_REQUIRE_CODE(a->acquire_slot("p", request(many)), kInvalidArgument);
  many.pop_back();
  auto g = unwrap(a->acquire_slot("p", request(many)));
  REQUIRE(g.has_value());
  CHECK(g->target == "n0");
  FLEET_REQUIRE_CODE(a->release_slot("p", ""), kInvalidArgument);
  FLEET_REQUIRE_CODE(a->slot_usage(""), kInvalidArgument);
  CHECK(unwrap(a->slot_usage("p")) == std::map<std::string, std::int64_t>{{"n0", 1}});
}

// ---- acquire_slot_async ---------------------------------------------------------

using SlotResult = absl::StatusOr<std::optional<SlotGrant>>;

Coordinator::SlotCallback record(Recorder<SlotResult>& into) {
  return [cb = into.callback()](SlotResult r) { cb(r); };
}

std::string describe(const SlotResult& r) {
  if (!r.ok()) return r.status().ToString();
  if (!r->has_value()) return "<none>";
  return (*r)->target + " " + std::to_string((*r)->used) + "/" +
         std::to_string((*r)->capacity);
}

TEST_CASE("acquire_slot_async answers what acquire_slot would, once per call, in order",
          "[conformance][slots][async]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  const auto r = request({cand("n1", 2), cand("n2", 1)});
  Recorder<SlotResult> results;
  for (int i = 0; i < 4; ++i)
    FLEET_REQUIRE_OK(a->acquire_slot_async("gpu", r, record(results)));
  REQUIRE(results.wait_count(4));
  std::vector<std::string> got;
  for (const auto& e : results.events()) got.push_back(describe(e));
  // The same rule as acquire_slot, decision after decision: n1 (tie, the
  // earliest), n2 (0/1 beats 1/2), n1 (n2 is full), then no room.
  CHECK(got == std::vector<std::string>{"n1 1/2", "n2 1/1", "n1 2/2", "<none>"});
  // The slots are the session's, as acquire_slot's are.
  CHECK(unwrap(b->slot_usage("gpu")) ==
        std::map<std::string, std::int64_t>{{"n1", 2}, {"n2", 1}});
  FLEET_REQUIRE_OK(a->release_slot("gpu", "n2"));
  FLEET_REQUIRE_CODE(b->release_slot("gpu", "n1"), kFailedPrecondition);
  CHECK(take(*b, "gpu", r) == "n2");
  CHECK(results.size() == 4);  // each callback came exactly once
}

TEST_CASE("acquire_slot_async from many threads and sessions never exceeds capacity",
          "[conformance][slots][async]") {
  auto backend = make_backend();
  std::vector<std::unique_ptr<Coordinator>> sessions;
  for (int i = 0; i < 3; ++i) sessions.push_back(backend->connect());
  const auto r = request({cand("a", 10), cand("b", 10), cand("c", 10)});
  Recorder<SlotResult> results;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto req = r;
      for (int i = 0; i < 20; ++i) {
        req.rotate = static_cast<std::uint32_t>(i);
        auto st = sessions[static_cast<std::size_t>(t) % 3]->acquire_slot_async(
            "race", req, record(results));
        if (!st.ok()) std::abort();  // Catch's assertions are for the main thread
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(results.wait_count(80));
  std::map<std::string, std::vector<std::int64_t>> used;
  int refused = 0;
  for (const auto& e : results.events()) {
    REQUIRE(e.ok());
    if (e->has_value()) {
      used[(*e)->target].push_back((*e)->used);
    } else {
      ++refused;
    }
  }
  CHECK(refused == 50);
  // Each slot taken once: every target's grants saw exactly 1..10 in use.
  const std::vector<std::int64_t> one_to_ten = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  for (const char* target : {"a", "b", "c"}) {
    auto& u = used[target];
    std::sort(u.begin(), u.end());
    CHECK(u == one_to_ten);
  }
  CHECK(unwrap(sessions[0]->slot_usage("race")) ==
        std::map<std::string, std::int64_t>{{"a", 10}, {"b", 10}, {"c", 10}});
}

TEST_CASE("acquire_slot_async reports bad requests through its callback, or without one",
          "[conformance][slots][async]") {
  auto backend = make_backend();
  auto a = backend->connect();
  Recorder<SlotResult> results;
  FLEET_REQUIRE_OK(a->acquire_slot_async("p", request({}), record(results)));
  FLEET_REQUIRE_OK(a->acquire_slot_async("", request({cand("n", 1)}), record(results)));
  FLEET_REQUIRE_OK(a->acquire_slot_async("p", request({cand("n", 0)}), record(results)));
  REQUIRE(results.wait_count(3));
  // Without a callback nothing is decided: the call itself says so.
  FLEET_REQUIRE_CODE(a->acquire_slot_async("p", request({cand("n", 1)}), nullptr),
                     kInvalidArgument);
  for (const auto& e : results.events()) {
    CHECK(e.status().code() == absl::StatusCode::kInvalidArgument);
  }
  CHECK(unwrap(a->slot_usage("p")).empty());
}

}  // namespace
}  // namespace fleet::testing
