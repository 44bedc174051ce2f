// The skeleton every fleet module (router, rooms, relay) is built on: what
// include/fleet/module.hpp promises, written once.
//
//   options    ModuleOptions: name, check_interval, background, log sink/level
//   identity   attach(instance id) once the session has joined, whenever
//              that is (before or after the module was created)
//   worker     one thread that waits on the Coordinator's Clock and runs the
//              step: attach, re-publish after a data loss, re-read after an
//              interruption, the module's check; run_once() runs it by hand
//   mirrors    the maps the module follows (MapMirror), re-read together
//   members    the live instances (LiveMembers), read at attach and at every check
//   callbacks  one queue and thread per module for application callbacks
//   connection one hook where a module reacts to CONNECTED / SUSPENDED /
//              LOST / RECONNECTED
//
// A module implements ModuleHooks and owns a ModuleCore, declared before
// the members the hooks touch; its destructor calls stop() first, then
// stops its own subscriptions and mirrors.
#ifndef FLEET_SRC_MODULE_CORE_HPP_
#define FLEET_SRC_MODULE_CORE_HPP_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "fleet/coordinator.hpp"
#include "fleet/module.hpp"
#include "internal/dispatcher.hpp"
#include "internal/logger.hpp"
#include "internal/mutex.hpp"
#include "module/live_members.hpp"
#include "module/map_mirror.hpp"
#include "module/worker.hpp"

namespace fleet::internal {

// What a module does at each point of its life; the core calls these.
class ModuleHooks {
 public:
  virtual ~ModuleHooks() = default;
  // The instance id is known: subscribe, load, publish. Called once with
  // success (again after a failure, from the next step or call); before
  // it, no check runs. On the creating thread when the session had joined
  // by then, else on the worker, in run_once() or in a call's ready().
  virtual absl::Status attach(const std::string& instance_id) = 0;
  // One check, every check_interval (worker) or per run_once().
  virtual absl::Status check() = 0;
  // The backend lost its data: put back what this instance owns (claims:
  // what another instance wrote meanwhile wins). Before the mirrors are
  // re-read. Retried at every step until it succeeds.
  virtual absl::Status republish() { return absl::OkStatus(); }
  // After the mirrors were re-read (an interruption or a data loss):
  // re-read whatever else events would have told.
  virtual absl::Status resync() { return absl::OkStatus(); }
  // The connection state changed. On the Coordinator's event thread: quick,
  // no blocking call. The mirrors are already marked inexact.
  virtual void on_connection(ConnectionState state) { (void)state; }
  // A member joined, left or expired (event thread; quick). The live
  // members are already updated, and the worker woken when one went.
  virtual void on_member(const MemberEvent& e) { (void)e; }
};

class ModuleCore {
 public:
  // `kind` names the module in logs and errors ("rooms"). A module that
  // `names_instance` attaches when the session has joined; the others
  // attach at start().
  ModuleCore(Coordinator& c, const ModuleOptions& options, std::string kind,
             bool names_instance);
  ~ModuleCore();  // stop()
  ModuleCore(const ModuleCore&) = delete;
  ModuleCore& operator=(const ModuleCore&) = delete;

  // Watches membership and connection, attaches if it can (its error is
  // returned), then starts the worker (background).
  absl::Status start(ModuleHooks* hooks);
  // Stops the worker and the callback thread (callbacks not delivered are
  // dropped) and the core's watches. Idempotent. After it returns no hook
  // is called.
  void stop();

  // One step on the calling thread (tasks, step, tasks), then waits until
  // the callbacks queued so far have run (unless called from one).
  absl::Status run_once();
  // OK once attached, attaching now if the session has joined since;
  // FailedPrecondition while it has not. Every call that needs the
  // instance id starts with it.
  absl::Status ready();
  bool attached() const { return attached_.load(std::memory_order_acquire); }
  // Set by the attach (empty before).
  const std::string& instance_id() const { return instance_id_; }

  // The worker steps at once.
  void wake() { worker_.wake(); }
  // Runs `task` on the worker (or in the next run_once()), before the next
  // step: work an event calls for that may block (Coordinator calls).
  void post_task(std::function<void()> task) { worker_.post(std::move(task)); }
  // Runs an application callback on the module's callback thread, after
  // those posted before it.
  void post_callback(std::function<void()> fn);
  bool on_callback_thread() const { return callbacks_.on_event_thread(); }

  // A mirror of `map` (keys under `prefix`) re-read with the others after
  // an interruption or a data loss. Not started: start() it (or read it
  // with start_mirrors); it stops when the last reference goes.
  std::shared_ptr<MapMirror> mirror(std::string map, std::string prefix,
                                    MapMirror::Listener listener);
  // Starts (first read) or re-reads the given mirrors, up to four at once.
  static absl::Status read_mirrors(const std::vector<MapMirror*>& mirrors, bool start);

  LiveMembers& live() { return live_; }
  Coordinator& coordinator() { return c_; }
  Clock* clock() const { return c_.clock(); }
  const Logger& log() const { return log_; }
  const std::string& kind() const { return kind_; }
  // Steps completed (worker and run_once), whatever their outcome.
  std::uint64_t steps() const { return steps_.load(); }
  // Coordinator::data_losses() that the module has handled (re-published).
  std::uint64_t losses_handled() const { return losses_handled_.load(); }

 private:
  absl::Status step();
  absl::Status attach_locked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(attach_mu_);
  void on_connection(ConnectionState state);
  void on_member(const MemberEvent& e);
  std::vector<std::shared_ptr<MapMirror>> mirrors();
  void note_step(const absl::Status& st);

  Coordinator& c_;
  const std::string kind_;
  const bool names_instance_;
  const Logger log_;
  ModuleHooks* hooks_ = nullptr;  // set by start()

  Mutex attach_mu_;
  std::atomic<bool> attached_{false};
  std::string instance_id_;  // written once, before attached_ is set

  Mutex step_mu_;  // one step at a time (worker, run_once)
  // Coordinator::data_losses() whose mirrors were told / that republish()
  // handled.
  std::atomic<std::uint64_t> losses_forgotten_{0}, losses_handled_{0};
  std::atomic<bool> resync_due_{false};
  std::atomic<std::uint64_t> steps_{0};
  absl::StatusCode last_step_code_ ABSL_GUARDED_BY(step_mu_) = absl::StatusCode::kOk;

  Mutex mirrors_mu_;
  std::vector<std::weak_ptr<MapMirror>> mirrors_ ABSL_GUARDED_BY(mirrors_mu_);

  LiveMembers live_;
  Dispatcher callbacks_;
  const std::shared_ptr<Dispatcher::Slot> callback_slot_ = callbacks_.new_slot();
  Worker worker_;
  const bool background_;
  Subscription members_sub_, connection_sub_;  // start() and stop() only
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_MODULE_CORE_HPP_
