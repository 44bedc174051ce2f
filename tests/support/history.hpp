// A record of what every client of a fault test was granted, and when, and
// a checker of the invariants fleet promises whatever the faults:
//  - locks: no two holders at once, unless the later one has the higher
//    fence; and a grant that follows another (granted before it was asked
//    for) has a higher fence;
//  - claims: one owner per claimed key (between two data losses: Redis
//    without persistence forgets claims), and every claimer was told that
//    owner;
//  - slots: never more in use on a target than its capacity, no release of
//    a slot not held, and (if asked) none held at the end.
// Intervals are what the clients believed: a lock from its grant's reply to
// its release's request (or its believed expiry), a slot from the grant's
// reply to the release's request. They lie inside the backend's own
// intervals, so an overlap found here happened for real.
//
// Thread-safe: clients record from their own threads.
#ifndef FLEET_TESTS_SUPPORT_HISTORY_HPP_
#define FLEET_TESTS_SUPPORT_HISTORY_HPP_

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace fleet::testing {

class History {
 public:
  using Time = std::chrono::steady_clock::time_point;
  static Time now() { return std::chrono::steady_clock::now(); }

  // `asked`: when the request was sent; `granted`: when its reply came;
  // `believed_expiry`: the lease's expires_at, on the same clock.
  void lock_granted(const std::string& lock, const std::string& holder,
                    std::uint64_t fence, Time asked, Time granted, Time believed_expiry);
  void lock_released(const std::string& lock, const std::string& holder,
                     std::uint64_t fence, Time at);
  // `winner`: the value the claim returned (the claimer's own if claimed).
  void claim(const std::string& map, const std::string& key, const std::string& claimer,
             bool claimed, const std::string& winner, Time at);
  // A claim that returned an error (its outcome unknown): not checked, only
  // shown with a violation on the same key, to explain it.
  void claim_failed(const std::string& map, const std::string& key,
                    const std::string& claimer, const std::string& error, Time at);
  void slot_granted(const std::string& pool, const std::string& target,
                    std::int64_t capacity, const std::string& holder,
                    std::uint64_t ticket, Time at);
  void slot_released(const std::string& pool, const std::string& target,
                     const std::string& holder, std::uint64_t ticket, Time at);
  // The holder is gone (killed): it holds nothing from `at` on.
  void holder_died(const std::string& holder, Time at);
  // The backend lost its data at `at`.
  void data_lost(Time at);

  // Every violation, described; empty when the history is clean.
  std::vector<std::string> check(bool none_held_at_end = true) const;
  // "N lock grants, N claims, N slot grants" (for the test's log).
  std::string summary() const;

 private:
  struct LockGrant {
    std::string lock, holder;
    std::uint64_t fence;
    Time asked, granted, end;
  };
  struct Claim {
    std::string map, key, claimer;
    bool claimed;
    std::string winner;
    Time at;
    std::string error;  // a failed claim's (claim_failed)
  };
  struct Slot {
    std::string pool, target, holder;
    std::int64_t capacity;
    std::uint64_t ticket;
    Time granted, released;
    bool open = true;
  };

  mutable std::mutex mu_;
  std::vector<LockGrant> locks_;
  std::vector<Claim> claims_;
  std::vector<Claim> failed_claims_;  // error set, winner empty
  std::vector<Slot> slots_;
  std::vector<std::string> errors_;  // found while recording
  std::vector<Time> losses_;
};

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_HISTORY_HPP_
