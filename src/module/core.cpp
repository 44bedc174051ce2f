#include "module/core.hpp"

#include <algorithm>
#include <thread>
#include <utility>

#include "fleet/names.hpp"
#include "fmt/format.h"
#include "internal/status.hpp"

namespace fleet {

absl::Status validate_module_options(const ModuleOptions& options,
                                     std::string_view kind) {
  FLEET_RETURN_IF_ERROR(validate_name(fmt::format("{} name", kind), options.name));
  if (options.name.size() > kMaxModuleNameBytes) {
    return absl::InvalidArgumentError(
        fmt::format("{} name is {} bytes; at most {} are allowed", kind,
                    options.name.size(), kMaxModuleNameBytes));
  }
  if (options.check_interval.count() <= 0) {
    return absl::InvalidArgumentError(
        fmt::format("{}: check_interval must be positive", kind));
  }
  return absl::OkStatus();
}

namespace internal {

ModuleCore::ModuleCore(Coordinator& c, const ModuleOptions& options, std::string kind,
                       bool names_instance)
    : c_(c),
      kind_(std::move(kind)),
      names_instance_(names_instance),
      log_(options.log_sink, options.log_level, kind_),
      live_(c),
      worker_(c.clock(), options.check_interval, [this] { note_step(step()); }),
      background_(options.background) {}

ModuleCore::~ModuleCore() { stop(); }

absl::Status ModuleCore::start(ModuleHooks* hooks) {
  hooks_ = hooks;
  auto members = c_.watch_members([this](const MemberEvent& e) { on_member(e); });
  if (!members.ok()) return members.status();
  members_sub_ = std::move(*members);
  auto conn = c_.watch_connection([this](ConnectionState s) { on_connection(s); });
  if (!conn.ok()) return conn.status();
  connection_sub_ = std::move(*conn);
  losses_forgotten_ = losses_handled_ = c_.data_losses();
  if (!names_instance_ || !c_.instance_id().empty()) {
    MutexLock lock(attach_mu_);
    FLEET_RETURN_IF_ERROR(attach_locked());
  } else {
    log_.info(
        "waiting for the Coordinator to join: this {} names its instance by the "
        "instance id",
        kind_);
  }
  if (background_) worker_.start();
  return absl::OkStatus();
}

void ModuleCore::stop() {
  worker_.stop();
  members_sub_.cancel();
  connection_sub_.cancel();
  callbacks_.cancel(callback_slot_);
  callbacks_.stop();
}

absl::Status ModuleCore::ready() {
  if (attached()) return absl::OkStatus();
  MutexLock lock(attach_mu_);
  return attach_locked();
}

absl::Status ModuleCore::attach_locked() {
  if (attached()) return absl::OkStatus();
  std::string id;
  if (names_instance_) {
    id = c_.instance_id();
    if (id.empty()) {
      return absl::FailedPreconditionError(fmt::format(
          "fleet::{} starts once its Coordinator has joined (it names this instance by "
          "the instance id): call Coordinator::join()",
          kind_));
    }
  }
  // The live instances as they are now, before the module looks at them:
  // the watch (subscribed in start()) only tells of changes after it.
  if (names_instance_) FLEET_RETURN_IF_ERROR(live_.refresh());
  FLEET_RETURN_IF_ERROR(hooks_->attach(id));
  instance_id_ = id;
  attached_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status ModuleCore::run_once() {
  worker_.run_tasks();
  absl::Status st = step();
  worker_.run_tasks();
  if (!callbacks_.on_event_thread()) callbacks_.drain();
  return st;
}

absl::Status ModuleCore::step() {
  MutexLock step_lock(step_mu_);
  FLEET_RETURN_IF_ERROR(ready());
  absl::Status first;
  auto note = [&first](absl::Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  const std::uint64_t losses = c_.data_losses();
  if (losses != losses_handled_.load()) {
    // The connection hook tells the mirrors at the RECONNECTED that follows
    // a loss; a loss seen only here (no RECONNECTED yet) is told now.
    if (losses_forgotten_.exchange(losses) != losses) {
      for (auto& m : mirrors()) m->forget_versions();
    }
    absl::Status st = hooks_->republish();
    if (st.ok()) {
      losses_handled_ = losses;
      resync_due_ = true;
    } else {
      log_.warn(
          "putting back what this instance holds after the backend lost its data "
          "failed (retried at the next check): {}",
          st.ToString());
      note(st);
    }
  }
  if (first.ok() && resync_due_.exchange(false)) {
    std::vector<MapMirror*> list;
    auto all = mirrors();
    for (auto& m : all) list.push_back(m.get());
    absl::Status st = read_mirrors(list, /*start=*/false);
    if (st.ok()) st = hooks_->resync();
    if (!st.ok()) {
      resync_due_ = true;
      note(st);
    }
  }
  if (names_instance_) note(live_.refresh());
  note(hooks_->check());
  ++steps_;
  return first;
}

void ModuleCore::note_step(const absl::Status& st) {
  // The worker logs a failing check once per kind of failure, and the
  // recovery, rather than every interval while the backend is away.
  MutexLock lock(step_mu_);
  if (st.code() == last_step_code_) return;
  if (!st.ok() && !(absl::IsFailedPrecondition(st) && !attached())) {
    log_.warn("check failed: {}", st.ToString());
  } else if (st.ok() && last_step_code_ != absl::StatusCode::kOk) {
    log_.info("check works again");
  }
  last_step_code_ = st.code();
}

void ModuleCore::post_callback(std::function<void()> fn) {
  callbacks_.post(callback_slot_, std::move(fn));
}

std::shared_ptr<MapMirror> ModuleCore::mirror(std::string map, std::string prefix,
                                              MapMirror::Listener listener) {
  auto m = std::make_shared<MapMirror>(c_, std::move(map), std::move(prefix),
                                       std::move(listener));
  MutexLock lock(mirrors_mu_);
  mirrors_.erase(
      std::remove_if(mirrors_.begin(), mirrors_.end(),
                     [](const std::weak_ptr<MapMirror>& w) { return w.expired(); }),
      mirrors_.end());
  mirrors_.push_back(m);
  return m;
}

std::vector<std::shared_ptr<MapMirror>> ModuleCore::mirrors() {
  MutexLock lock(mirrors_mu_);
  std::vector<std::shared_ptr<MapMirror>> out;
  for (const auto& w : mirrors_) {
    if (auto m = w.lock()) out.push_back(std::move(m));
  }
  return out;
}

absl::Status ModuleCore::read_mirrors(const std::vector<MapMirror*>& mirrors,
                                      bool start) {
  // While Redis answers one read, another is in flight: up to four.
  std::vector<absl::Status> results(mirrors.size());
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i; (i = next++) < mirrors.size();) {
      results[i] = start ? mirrors[i]->start() : mirrors[i]->resync();
    }
  };
  std::vector<std::thread> helpers;
  const std::size_t threads = std::min<std::size_t>(4, mirrors.size());
  for (std::size_t t = 1; t < threads; ++t) helpers.emplace_back(work);
  work();
  for (auto& t : helpers) t.join();
  for (const auto& st : results) FLEET_RETURN_IF_ERROR(st);
  return absl::OkStatus();
}

void ModuleCore::on_connection(ConnectionState state) {
  if (state != ConnectionState::kConnected) {
    for (auto& m : mirrors()) m->interrupted();
  }
  if (state == ConnectionState::kReconnected) {
    // The stream may have missed changes meanwhile: re-read. After a data
    // loss (data_losses() has grown by now) the versions start again.
    const std::uint64_t losses = c_.data_losses();
    if (losses_forgotten_.exchange(losses) != losses) {
      for (auto& m : mirrors()) m->forget_versions();
    }
    resync_due_ = true;
    worker_.wake();
  }
  if (hooks_ != nullptr) hooks_->on_connection(state);
}

void ModuleCore::on_member(const MemberEvent& e) {
  live_.apply(e);
  if (e.type != MemberEventType::kJoined) {
    worker_.wake();  // an instance went: handle it now
  } else if (!attached() && e.member.session_id == c_.session_id()) {
    worker_.wake();  // we joined: attach
  }
  if (hooks_ != nullptr) hooks_->on_member(e);
}

}  // namespace internal
}  // namespace fleet
