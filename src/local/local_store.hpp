// The in-process backend's shared state. Every operation takes the session
// id of the caller; LocalSession (local_session.cpp) validates arguments and
// forwards here. One mutex guards everything: the in-process backend is for
// one process, where a contention-free design would buy nothing measurable.
#ifndef FLEET_SRC_LOCAL_LOCAL_STORE_HPP_
#define FLEET_SRC_LOCAL_LOCAL_STORE_HPP_

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fleet/local_coordinator.hpp"
#include "fleet/subscription.hpp"
#include "fleet/types.hpp"
#include "internal/dispatcher.hpp"
#include "internal/logger.hpp"

namespace fleet::internal {

class LocalStoreImpl final : public LocalStore,
                             public std::enable_shared_from_this<LocalStoreImpl> {
 public:
  using TimePoint = Clock::TimePoint;
  using Ms = std::chrono::milliseconds;

  explicit LocalStoreImpl(const LocalOptions& options);  // options validated
  ~LocalStoreImpl() override;

  Clock* clock() const { return clock_; }
  const Logger& logger() const { return logger_; }

  std::string open_session();
  // Crash semantics: the session's owned state expires session_ttl later.
  void close_session(const std::string& sid);

  // faults (LocalStore's API) and what a session sees of them
  absl::Status set_reachable(std::string_view session_id, bool reachable) override;
  void lose_data() override;
  void drain_events() override { dispatcher_.drain(); }
  // Unavailable while the session is cut off.
  absl::Status reachable(const std::string& sid);
  ConnectionState connection_state(const std::string& sid);
  std::uint64_t data_losses(const std::string& sid);

  // membership
  absl::Status join(const std::string& sid, const InstanceInfo& info);
  // The id the session's record holds (empty when it has not joined).
  std::string instance_id(const std::string& sid) const;
  absl::Status leave(const std::string& sid);
  std::vector<Member> members();
  Subscription watch_members(const std::string& sid,
                             std::function<void(const MemberEvent&)> cb);

  // node state (the record takes the view even while the session is cut off)
  absl::Status publish_node_state(const std::string& sid, const std::string& node,
                                  const std::map<std::string, double>& metrics);
  absl::Status remove_node_state(const std::string& sid, const std::string& node);
  std::optional<NodeAggregate> aggregate(const std::string& node,
                                         const AggregationSpec& spec);
  std::vector<NodeAggregate> aggregate_all(const AggregationSpec& spec);

  // counters
  absl::StatusOr<std::int64_t> counter_add(const std::string& name, std::int64_t delta);
  std::int64_t counter_get(const std::string& name);
  absl::StatusOr<std::int64_t> owned_counter_add(const std::string& sid,
                                                 const std::string& name,
                                                 std::int64_t delta);
  std::int64_t owned_counter_get(const std::string& name);

  // slot pools (request validated)
  std::optional<SlotGrant> acquire_slot(const std::string& sid, const std::string& pool,
                                        const SlotRequest& request);
  absl::Status release_slot(const std::string& sid, const std::string& pool,
                            const std::string& target);
  std::map<std::string, std::int64_t> slot_usage(const std::string& pool);

  // locks and elections
  std::optional<Lease> acquire(const std::string& sid, LeaseKind kind,
                               const std::string& name, const std::string& value, Ms ttl,
                               Ms timeout);
  absl::Status release(const std::string& sid, const Lease& lease);
  absl::StatusOr<Lease> renew(const std::string& sid, const Lease& lease);
  std::optional<Leader> leader(const std::string& election);
  Subscription observe_leader(const std::string& sid, const std::string& election,
                              std::function<void(const std::optional<Leader>&)> cb);

  // maps and watches
  ClaimResult claim(const std::string& map, const std::string& key,
                    const std::string& value, Ms ttl);
  Entry put(const std::string& map, const std::string& key, const std::string& value,
            Ms ttl);
  std::optional<Entry> get(const std::string& map, const std::string& key);
  bool compare_and_set(const std::string& map, const std::string& key,
                       const std::string& expected, const std::string& value, Ms ttl);
  bool compare_and_delete(const std::string& map, const std::string& key,
                          const std::string* expected);
  std::vector<MapOpResult> apply(const std::string& map, const std::vector<MapOp>& ops);
  std::vector<MapEntry> scan(const std::string& map, const std::string& prefix,
                             std::size_t limit);
  Subscription watch(const std::string& sid, const std::string& map,
                     const std::string& prefix,
                     std::function<void(const WatchEvent&)> cb);

  // messaging and connection state
  void publish(const std::string& sid, const std::string& channel,
               const std::string& payload);
  Subscription subscribe(const std::string& sid, const std::string& channel,
                         std::function<void(const Message&)> cb);
  Subscription watch_connection(const std::string& sid,
                                std::function<void(ConnectionState)> cb);

 private:
  template <typename Event>
  struct Subscriber {
    std::shared_ptr<Dispatcher::Slot> slot;
    std::function<void(const Event&)> callback;
    std::string filter;  // key prefix for map watches
    std::string sid;     // its session: a cut-off one hears nothing
  };
  template <typename Event>
  using Subscribers = std::vector<Subscriber<Event>>;

  // What a session's owner holds of its session-bound state: while the
  // session is reachable the store's state equals it; after a fault the
  // store is set back to it (apply_record_locked).
  struct Record {
    std::optional<InstanceInfo> joined;
    std::map<std::string, std::map<std::string, double>> views;        // node -> metrics
    std::map<std::string, std::int64_t> owned;                         // counter -> value
    std::map<std::string, std::map<std::string, std::int64_t>> slots;  // pool -> target
  };

  struct Session {
    bool open = true;
    TimePoint expires_at{};         // meaningful once !open
    Clock::WallTime closed_wall{};  // last heartbeat of a closed or cut session
    std::optional<Member> member;
    std::uint64_t next_sequence = 1;
    Record record;
    // Faults: cut off (set_reachable), its state dropped meanwhile (expired
    // while cut, or lose_data()), a data loss it has yet to notice.
    bool reachable = true;
    bool dropped = false;
    bool missed_loss = false;
    TimePoint cut_expires_at{};
    std::uint64_t data_losses = 0;
    ConnectionState state = ConnectionState::kConnected;
    // The session's subscriptions: cancelled and detached when it closes.
    std::vector<std::pair<std::weak_ptr<Dispatcher::Slot>,
                          std::function<void(const std::shared_ptr<Dispatcher::Slot>&)>>>
        slots;
  };

  struct LockState {
    bool held = false;
    std::string owner;
    std::string value;
    std::uint64_t fence = 0;       // fence of the current grant
    std::uint64_t last_fence = 0;  // survives releases: tokens never repeat
    TimePoint expires_at{};
  };

  struct StoredEntry {
    std::string value;
    std::uint64_t version = 0;
    std::optional<TimePoint> expires_at;
  };

  struct MapState {
    std::uint64_t revision = 0;
    std::map<std::string, StoredEntry, std::less<>> entries;
  };

  enum class ExpiryKind { kSession, kLock, kEntry };
  struct Expiry {
    TimePoint at;
    ExpiryKind kind;
    LeaseKind lease_kind;
    std::string a;  // session id, lock name, or map name
    std::string b;  // map key
    bool operator>(const Expiry& o) const { return at > o.at; }
  };

  using LockKey = std::pair<LeaseKind, std::string>;

  // All *_locked methods require mu_.
  void expire_due_locked();
  void schedule_locked(Expiry e);
  void drop_session_state_locked(const std::string& sid);
  void remove_member_locked(const std::string& sid, MemberEventType why);
  // Makes `sid` a member with `info` (AlreadyExists if another holds it).
  absl::Status add_member_locked(const std::string& sid, const InstanceInfo& info);
  void apply_record_locked(const std::string& sid);
  void set_state_locked(const std::string& sid, ConnectionState state);
  LockState* current_grant_locked(const std::string& sid, const Lease& lease);
  // Why `lease` is not the current grant: Aborted, or InvalidArgument when no
  // grant of its name ever had its fence.
  absl::Status not_held_locked(const Lease& lease) const;
  std::optional<Lease> try_grant_locked(const std::string& sid, LeaseKind kind,
                                        const std::string& name, const std::string& value,
                                        Ms ttl);
  void emit_leader_locked(const std::string& election);
  std::optional<Leader> leader_locked(const std::string& election) const;
  Entry write_entry_locked(const std::string& map, const std::string& key,
                           const std::string& value, Ms ttl);
  void emit_watch_locked(const WatchEvent& event);
  void sweep_loop();

  template <typename Event>
  void emit_locked(Subscribers<Event>& subs, const Event& event);
  using SlotPtr = std::shared_ptr<Dispatcher::Slot>;
  // Registers cb in `subs`; `detach` (run under mu_ on cancel) removes it.
  template <typename Event>
  Subscription add_subscriber_locked(const std::string& sid, Subscribers<Event>& subs,
                                     std::function<void(const Event&)> cb,
                                     std::string filter,
                                     std::function<void(const SlotPtr&)> detach);
  template <typename Event>
  static void remove_slot(Subscribers<Event>& list, const SlotPtr& slot) {
    list.erase(std::remove_if(list.begin(), list.end(),
                              [&](const auto& s) { return s.slot == slot; }),
               list.end());
  }
  // For a list that lives as long as the store.
  template <typename Event>
  static std::function<void(const SlotPtr&)> detach_from(Subscribers<Event>* list) {
    return [list](const SlotPtr& slot) { remove_slot(*list, slot); };
  }
  // For a list keyed by name: the entry goes when its last subscriber does.
  template <typename Event>
  static std::function<void(const SlotPtr&)> detach_from(
      std::map<std::string, Subscribers<Event>>* lists, std::string key) {
    return [lists, key = std::move(key)](const SlotPtr& slot) {
      auto it = lists->find(key);
      if (it == lists->end()) return;
      remove_slot(it->second, slot);
      if (it->second.empty()) lists->erase(it);
    };
  }

  Clock* const clock_;
  const Logger logger_;
  const Ms session_ttl_;

  mutable std::mutex mu_;
  std::condition_variable sweep_cv_;
  std::condition_variable lock_cv_;
  bool stop_ = false;
  std::uint64_t next_session_ = 1;

  std::map<std::string, Session> sessions_;
  std::map<std::string, std::string> member_index_;  // instance id -> session id
  // node -> session -> metric -> value
  std::map<std::string, std::map<std::string, std::map<std::string, double>>> nodes_;
  std::map<std::string, std::int64_t, std::less<>> counters_;
  // counter -> session -> contribution
  std::map<std::string, std::map<std::string, std::int64_t>, std::less<>> owned_;
  // pool -> target -> session -> slots held
  std::map<std::string, std::map<std::string, std::map<std::string, std::int64_t>>>
      slots_;
  std::map<LockKey, LockState> locks_;
  std::map<std::string, MapState, std::less<>> maps_;
  std::priority_queue<Expiry, std::vector<Expiry>, std::greater<>> expiries_;

  Subscribers<MemberEvent> member_watchers_;
  std::map<std::string, Subscribers<std::optional<Leader>>> leader_watchers_;
  std::map<std::string, Subscribers<WatchEvent>> map_watchers_;
  std::map<std::string, Subscribers<Message>> channels_;
  std::map<std::string, Subscribers<ConnectionState>> connection_watchers_;  // by session

  Dispatcher dispatcher_;
  std::thread sweeper_;
};

// ---- subscriber helpers (used by both local_store*.cpp) ----

template <typename Event>
inline void LocalStoreImpl::emit_locked(Subscribers<Event>& subs, const Event& event) {
  for (const auto& sub : subs) {
    if (auto s = sessions_.find(sub.sid); s != sessions_.end() && !s->second.reachable) {
      continue;  // like pub/sub to an instance cut off from Redis: lost
    }
    if (!sub.filter.empty()) {
      if constexpr (std::is_same_v<Event, WatchEvent>) {
        if (event.key.compare(0, sub.filter.size(), sub.filter) != 0) continue;
      }
    }
    dispatcher_.post(sub.slot, [cb = sub.callback, event] { cb(event); });
  }
}

template <typename Event>
inline Subscription LocalStoreImpl::add_subscriber_locked(
    const std::string& sid, Subscribers<Event>& subs,
    std::function<void(const Event&)> cb, std::string filter,
    std::function<void(const SlotPtr&)> detach) {
  auto slot = dispatcher_.new_slot();
  subs.push_back(Subscriber<Event>{slot, std::move(cb), std::move(filter), sid});
  auto& slots = sessions_.at(sid).slots;
  if (slots.size() % 64 == 63) {  // drop cancelled ones now and then
    slots.erase(std::remove_if(slots.begin(), slots.end(),
                               [](const auto& e) { return e.first.expired(); }),
                slots.end());
  }
  slots.emplace_back(slot, detach);
  std::weak_ptr<LocalStoreImpl> weak = weak_from_this();
  return Subscription([weak, slot, detach = std::move(detach)] {
    auto self = weak.lock();
    if (!self) return;
    self->dispatcher_.cancel(slot);
    std::lock_guard<std::mutex> lock(self->mu_);
    detach(slot);
  });
}

}  // namespace fleet::internal

#endif  // FLEET_SRC_LOCAL_LOCAL_STORE_HPP_
