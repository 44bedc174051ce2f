// Conformance: locks, fencing tokens, LeaseGuard, leader election.
#include <atomic>
#include <thread>

#include "backend.hpp"
#include "fault_coordinator.hpp"
#include "fleet/lease_guard.hpp"
#include "recorder.hpp"
#include "status.hpp"

namespace fleet::testing {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kLongTtl{60000};  // outlives any test

TEST_CASE("of two contenders exactly one holds a lock", "[conformance][locks]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  auto la = unwrap(a->try_lock("L", kLongTtl));
  auto lb = unwrap(b->try_lock("L", kLongTtl));
  REQUIRE(la.has_value());
  CHECK_FALSE(lb.has_value());
  CHECK(la->owner == a->session_id());
  CHECK(la->name == "L");
  CHECK(la->kind == LeaseKind::kLock);
  CHECK(la->ttl == kLongTtl);
  CHECK_FALSE(unwrap(a->try_lock("L", kLongTtl)).has_value());  // not re-entrant
}

TEST_CASE("N threads racing for one lock: exactly one wins", "[conformance][locks]") {
  auto backend = make_backend();
  constexpr int kThreads = 8;
  std::vector<std::unique_ptr<Coordinator>> sessions;
  for (int i = 0; i < kThreads; ++i) sessions.push_back(backend->connect());
  std::atomic<int> winners{0}, errors{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto r = sessions[i]->try_lock("race", kLongTtl);
      if (!r.ok())
        ++errors;
      else if (r->has_value())
        ++winners;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(errors == 0);
  CHECK(winners == 1);
}

TEST_CASE("fencing tokens strictly increase across holders", "[conformance][locks]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  std::uint64_t last = 0;
  for (int round = 0; round < 3; ++round) {
    for (Coordinator* c : {a.get(), b.get()}) {
      auto lease = unwrap(c->try_lock("F", kLongTtl));
      REQUIRE(lease.has_value());
      CHECK(lease->fence > last);
      last = lease->fence;
      FLEET_REQUIRE_OK(c->release(*lease));
    }
  }
  // A grant after an expiry continues the sequence too.
  auto expiring = unwrap(a->try_lock("F", backend->lease_ttl()));
  REQUIRE(expiring.has_value());
  CHECK(expiring->fence > last);
  backend->advance(backend->lease_ttl() * 2);
  auto taken = unwrap(b->try_lock("F", kLongTtl));
  REQUIRE(taken.has_value());
  CHECK(taken->fence > expiring->fence);
  // Other lock names have their own sequence: no interference with "F".
  auto other = unwrap(a->try_lock("G", kLongTtl));
  REQUIRE(other.has_value());
}

TEST_CASE("release and renew by a non-owner are FailedPrecondition",
          "[conformance][locks]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  auto lease = unwrap(a->try_lock("L", kLongTtl));
  REQUIRE(lease.has_value());
  FLEET_REQUIRE_CODE(b->release(*lease), kFailedPrecondition);
  FLEET_REQUIRE_CODE(b->renew(*lease), kFailedPrecondition);
  Lease forged = *lease;
  forged.owner = b->session_id();
  FLEET_REQUIRE_CODE(b->release(forged), kAborted);  // b holds no such grant
  // The real holder is unaffected.
  CHECK_FALSE(unwrap(b->try_lock("L", kLongTtl)).has_value());
  FLEET_REQUIRE_OK(a->release(*lease));
}

TEST_CASE("release or renew of an expired lease is Aborted", "[conformance][locks]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  auto lease = unwrap(a->try_lock("L", backend->lease_ttl()));
  REQUIRE(lease.has_value());
  backend->advance(backend->lease_ttl() * 2);
  FLEET_REQUIRE_CODE(a->renew(*lease), kAborted);
  FLEET_REQUIRE_CODE(a->release(*lease), kAborted);
  // Now someone else holds it: the stale lease still gets Aborted.
  auto other = unwrap(b->try_lock("L", kLongTtl));
  REQUIRE(other.has_value());
  FLEET_REQUIRE_CODE(a->release(*lease), kAborted);
  FLEET_REQUIRE_OK(b->release(*other));
  FLEET_REQUIRE_CODE(b->release(*other), kAborted);  // released twice
}

TEST_CASE("release and renew of a lease never granted are InvalidArgument",
          "[conformance][locks]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto lease = unwrap(a->try_lock("L", kLongTtl));
  REQUIRE(lease.has_value());
  // A fence above every one granted under the name: never a grant.
  Lease made_up = *lease;
  made_up.fence = lease->fence + 1000;
  auto st = a->release(made_up);
  FLEET_REQUIRE_CODE(st, kInvalidArgument);
  CHECK(std::string(st.message()).find("was never granted") != std::string::npos);
  CHECK(std::string(st.message()).find(std::to_string(lease->fence)) !=
        std::string::npos);
  FLEET_REQUIRE_CODE(a->renew(made_up), kInvalidArgument);
  // A name nothing was ever granted under.
  Lease nowhere = *lease;
  nowhere.name = "never-locked";
  FLEET_REQUIRE_CODE(a->release(nowhere), kInvalidArgument);
  // The real one is untouched, and once released it is Aborted, not this.
  FLEET_REQUIRE_OK(a->release(*lease));
  FLEET_REQUIRE_CODE(a->release(*lease), kAborted);
}

TEST_CASE("renew extends the lease past its original expiry", "[conformance][locks]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  const auto ttl = backend->lease_ttl();
  auto lease = unwrap(a->try_lock("L", ttl));
  REQUIRE(lease.has_value());
  backend->advance(ttl / 2);
  auto renewed = unwrap(a->renew(*lease));
  CHECK(renewed.fence == lease->fence);
  CHECK(renewed.expires_at > lease->expires_at);
  backend->advance(ttl * 2 / 3);  // past the original expiry, before the new one
  CHECK_FALSE(unwrap(b->try_lock("L", ttl)).has_value());
  FLEET_REQUIRE_OK(a->release(renewed));
}

TEST_CASE("lock with timeout returns not-acquired after the timeout",
          "[conformance][locks]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  REQUIRE(unwrap(a->try_lock("L", kLongTtl)).has_value());
  const milliseconds timeout(200);
  std::atomic<bool> done{false};
  absl::StatusOr<std::optional<Lease>> result;
  Clock::TimePoint started{}, finished{};
  std::thread waiter([&] {
    started = b->clock()->now();
    result = b->lock("L", kLongTtl, timeout);
    finished = b->clock()->now();
    done = true;
  });
  for (int i = 0; i < 40 && !done; ++i) {
    backend->advance(milliseconds(50));
    eventually([&] { return done.load(); }, milliseconds(20));
  }
  waiter.join();
  REQUIRE(result.ok());
  CHECK_FALSE(result->has_value());
  CHECK(finished - started >= timeout);
}

TEST_CASE("a waiting lock() is granted when the holder releases",
          "[conformance][locks]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  auto held = unwrap(a->try_lock("L", kLongTtl));
  REQUIRE(held.has_value());
  absl::StatusOr<std::optional<Lease>> result;
  std::thread waiter([&] { result = b->lock("L", kLongTtl, milliseconds(60000)); });
  FLEET_REQUIRE_OK(a->release(*held));
  waiter.join();  // no time passes: only the release can wake the waiter
  REQUIRE(result.ok());
  REQUIRE(result->has_value());
  CHECK((*result)->owner == b->session_id());
  CHECK((*result)->fence > held->fence);
}

TEST_CASE("a waiting lock() is granted when the holder's lease expires",
          "[conformance][locks]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  REQUIRE(unwrap(a->try_lock("L", backend->lease_ttl())).has_value());
  std::atomic<bool> done{false};
  absl::StatusOr<std::optional<Lease>> result;
  std::thread waiter([&] {
    result = b->lock("L", kLongTtl, milliseconds(60000));
    done = true;
  });
  for (int i = 0; i < 40 && !done; ++i) {
    backend->advance(backend->lease_ttl() / 2);
    eventually([&] { return done.load(); }, milliseconds(20));
  }
  waiter.join();
  REQUIRE(result.ok());
  REQUIRE(result->has_value());
  CHECK((*result)->owner == b->session_id());
}

TEST_CASE("a LeaseGuard keeps the lease through many TTLs and releases it at the end",
          "[conformance][locks][guard]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  const auto ttl = backend->lease_ttl();
  auto lease = unwrap(a->try_lock("G", ttl));
  REQUIRE(lease.has_value());
  std::atomic<int> lost{0};
  {
    LeaseGuard guard(*a, *lease, [&](const absl::Status&) { ++lost; });
    for (int i = 1; i <= 6; ++i) {
      backend->advance(ttl / 3);
      REQUIRE(eventually([&] { return guard.renewals() >= i; }));
    }
    CHECK(guard.held());
    CHECK_FALSE(unwrap(b->try_lock("G", ttl)).has_value());
    CHECK(guard.lease().expires_at > lease->expires_at);
  }
  CHECK(lost == 0);
  auto next = unwrap(b->try_lock("G", ttl));  // released by the guard
  REQUIRE(next.has_value());
  CHECK(next->fence > lease->fence);
}

TEST_CASE("a lost lease fires the guard's callback", "[conformance][locks][guard]") {
  auto backend = make_backend();
  auto real = backend->connect();
  auto b = backend->connect();
  FaultCoordinator a(*real);
  const auto ttl = backend->lease_ttl();
  auto lease = unwrap(a.try_lock("G", ttl));
  REQUIRE(lease.has_value());
  Recorder<absl::Status> lost;
  LeaseGuard guard(a, *lease, lost.callback());
  a.set_partitioned(true);  // renewals fail from now on
  for (int i = 0; i < 20 && lost.size() == 0; ++i) {
    backend->advance(ttl / 3);
    lost.wait_count(1, milliseconds(20));
  }
  REQUIRE(lost.wait_count(1));
  CHECK(lost.events()[0].code() == absl::StatusCode::kAborted);
  CHECK_FALSE(guard.held());
  auto taken = unwrap(b->try_lock("G", ttl));
  REQUIRE(taken.has_value());
  CHECK(taken->fence > lease->fence);
  FLEET_REQUIRE_OK(guard.release());  // nothing left to release: OK, no callback
  CHECK(lost.size() == 1);
}

TEST_CASE("leader: one wins, observers see each change including no leader",
          "[conformance][election]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  auto c = backend->connect();
  Recorder<std::optional<Leader>> seen;
  auto sub = unwrap(c->observe_leader("primary", seen.callback()));
  REQUIRE(seen.wait_count(1));
  CHECK_FALSE(seen.events()[0].has_value());  // initial state: no leader
  CHECK_FALSE(unwrap(c->leader("primary")).has_value());

  auto la = unwrap(a->campaign("primary", "addr-a", kLongTtl, milliseconds(0)));
  REQUIRE(la.has_value());
  CHECK(la->kind == LeaseKind::kLeadership);
  CHECK_FALSE(
      unwrap(b->campaign("primary", "addr-b", kLongTtl, milliseconds(0))).has_value());
  auto now = unwrap(c->leader("primary"));
  REQUIRE(now.has_value());
  CHECK(now->value == "addr-a");
  CHECK(now->owner == a->session_id());
  CHECK(now->fence == la->fence);

  FLEET_REQUIRE_OK(a->resign(*la));
  auto lb = unwrap(b->campaign("primary", "addr-b", kLongTtl, milliseconds(0)));
  REQUIRE(lb.has_value());
  CHECK(lb->fence > la->fence);

  REQUIRE(seen.wait_count(4));
  auto ev = seen.events();
  REQUIRE(ev[1].has_value());
  CHECK(ev[1]->value == "addr-a");
  CHECK_FALSE(ev[2].has_value());
  REQUIRE(ev[3].has_value());
  CHECK(ev[3]->value == "addr-b");
}

TEST_CASE("leadership passes on when the leader dies", "[conformance][election]") {
  auto backend = make_backend();
  auto a = backend->connect();
  auto b = backend->connect();
  Recorder<std::optional<Leader>> seen;
  auto sub = unwrap(b->observe_leader("primary", seen.callback()));
  auto la =
      unwrap(a->campaign("primary", "addr-a", backend->lease_ttl(), milliseconds(0)));
  REQUIRE(la.has_value());
  a.reset();  // the leader crashes; nobody renews its lease

  std::atomic<bool> done{false};
  absl::StatusOr<std::optional<Lease>> lb;
  std::thread candidate([&] {
    lb = b->campaign("primary", "addr-b", kLongTtl, milliseconds(60000));
    done = true;
  });
  for (int i = 0; i < 40 && !done; ++i) {
    backend->advance(backend->lease_ttl() / 2);
    eventually([&] { return done.load(); }, milliseconds(20));
  }
  candidate.join();
  REQUIRE(lb.ok());
  REQUIRE(lb->has_value());
  REQUIRE(seen.wait_for([](const auto& ev) {
    return ev.size() >= 4 && ev.back().has_value() && ev.back()->value == "addr-b";
  }));
  auto ev = seen.events();
  CHECK_FALSE(ev[0].has_value());
  CHECK(ev[1]->value == "addr-a");
  CHECK_FALSE(ev[2].has_value());  // the expiry is reported as "no leader"
}

}  // namespace
}  // namespace fleet::testing
