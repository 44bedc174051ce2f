// fleet::relay on the module skeleton: sessions in kBuckets Coordinator
// maps (one MapMirror each), one compare-and-set per write; restore,
// takeover and re-publication in batches (Coordinator::apply).
#include "fleet/relay.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <utility>

#include "fleet/names.hpp"
#include "fleet/status.hpp"
#include "fmt/format.h"
#include "internal/rendezvous.hpp"
#include "internal/status.hpp"
#include "module/core.hpp"
#include "relay/codec.hpp"
#include "relay/copies.hpp"
#include "relay/read_back.hpp"
#include "relay/takeover.hpp"

namespace fleet::relay {
namespace {

using namespace internal_relay;
using internal::MapMirror;
using internal::MutexLock;
using std::chrono::milliseconds;

absl::Status validate_options(const RelayOptions& o) {
  FLEET_RETURN_IF_ERROR(validate_module_options(o, "relay"));
  if (!o.group.empty()) FLEET_RETURN_IF_ERROR(validate_name("relay group", o.group));
  if (o.group.find(',') != std::string::npos) {
    return absl::InvalidArgumentError("relay group must not contain ','");
  }
  for (const auto& g : o.replicate) {
    FLEET_RETURN_IF_ERROR(validate_name("replicated group", g));
    if (g.find(',') != std::string::npos || g == "*") {
      return absl::InvalidArgumentError(
          fmt::format("replicated group '{}' must not contain ',' or be '*'", g));
    }
  }
  if (o.takeover_grace.count() < 0) {
    return absl::InvalidArgumentError("takeover_grace must not be negative");
  }
  return absl::OkStatus();
}

absl::Status check_document(std::string_view document) {
  if (document.size() > kMaxDocumentBytes) {
    return absl::InvalidArgumentError(
        fmt::format("session document is {} bytes; the limit is {}", document.size(),
                    kMaxDocumentBytes));
  }
  return absl::OkStatus();
}

class RelayImpl final : public Relay, private internal::ModuleHooks {
 public:
  RelayImpl(Coordinator& c, RelayOptions o)
      : core_(c, o, "relay", /*names_instance=*/true),
        c_(c),
        o_(std::move(o)),
        groups_(encode_groups(o_.replicate)) {}

  ~RelayImpl() override {
    core_.stop();
    remove_sub_.cancel();
    for (auto& m : buckets_) {
      if (m) m->stop();
    }
  }

  absl::Status start() { return core_.start(this); }

  const std::string& instance_id() const override {
    static const std::string kNone;
    return core_.attached() ? me_ : kNone;
  }
  const RestoreReport& restore_report() const override {
    static const RestoreReport kNone;
    return core_.attached() ? report_ : kNone;
  }

  absl::StatusOr<Session> create_session(std::string_view id, std::string_view document,
                                         milliseconds ttl) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_name("session id", id));
    FLEET_RETURN_IF_ERROR(check_document(document));
    if (ttl.count() < 0)
      return absl::InvalidArgumentError("session ttl must not be negative");
    FLEET_RETURN_IF_ERROR(
        read_back_->roll_back(std::string(id)));  // an earlier failed create
    Session s;
    s.id = std::string(id);
    s.owner = me_;
    s.fence = fence_;
    s.version = 1;
    s.group = o_.group;
    s.ttl = ttl;
    s.document = std::string(document);
    std::string raw = encode_session(s);
    const std::uint64_t losses = c_.data_losses();  // before the write: see Copy::losses
    auto r = c_.claim(bucket_map(o_.name, id), id, raw, ttl);
    if (!r.ok()) {
      if (outcome_unknown(r.status())) {
        MutexLock lock(copies_->mu);
        copies_->pending_create[s.id] = Copy{s, raw, 0, false, 0};
        copies_->unsure.insert(s.id);
      }
      return r.status();
    }
    if (!r->claimed) {
      auto stored = decode_session(id, r->entry.value);
      if (!stored.ok() || stored->owner != me_ || stored->fence != fence_ ||
          stored->version != 1 || stored->document != s.document) {
        return absl::AlreadyExistsError(fmt::format("session '{}' exists", id));
      }
      s = *stored;  // the same create again, whose earlier answer was lost
    }
    MutexLock lock(copies_->mu);
    copies_->own[s.id] = Copy{s, raw, r->entry.version, false, losses};
    copies_->foreign.erase(s.id);
    return s;
  }

  absl::StatusOr<Session> update(std::string_view id,
                                 std::string_view document) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_name("session id", id));
    FLEET_RETURN_IF_ERROR(check_document(document));
    for (int attempt = 0; attempt < 2; ++attempt) {
      FLEET_ASSIGN_OR_RETURN(Copy cur, read_back_->own_copy(id));
      Session next = cur.s;
      next.version += 1;
      next.document = std::string(document);
      std::string raw = encode_session(next);
      const std::uint64_t losses = c_.data_losses();
      auto r = c_.apply(bucket_map(o_.name, id),
                        {MapOp::compare_and_set(next.id, cur.raw, raw, next.ttl)});
      if (!r.ok()) {
        if (outcome_unknown(r.status())) {
          MutexLock lock(copies_->mu);
          copies_->unsure.insert(next.id);
        }
        return r.status();
      }
      if ((*r)[0].applied) {
        MutexLock lock(copies_->mu);
        auto it = copies_->own.find(next.id);
        if (it != copies_->own.end() && it->second.raw == cur.raw) {
          it->second = Copy{next, raw, (*r)[0].entry.version, false, losses};
        }
        return next;
      }
      // The stored copy is not the one we last wrote: read it back.
      FLEET_RETURN_IF_ERROR(read_back_->resolve(next.id));
    }
    return absl::AbortedError(fmt::format("session '{}' changed twice under update", id));
  }

  absl::Status remove(std::string_view id) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_name("session id", id));
    for (int attempt = 0; attempt < 2; ++attempt) {
      FLEET_ASSIGN_OR_RETURN(Copy cur, read_back_->own_copy(id));
      set_removing(cur.s.id, true);
      auto r = c_.compare_and_delete(bucket_map(o_.name, id), id, cur.raw);
      if (!r.ok()) {
        MutexLock lock(copies_->mu);
        auto it = copies_->own.find(cur.s.id);
        if (it != copies_->own.end()) {
          it->second.removing = false;
          if (outcome_unknown(r.status())) copies_->unsure.insert(cur.s.id);
        }
        return r.status();
      }
      if (*r) {
        MutexLock lock(copies_->mu);
        copies_->own.erase(cur.s.id);
        return absl::OkStatus();
      }
      set_removing(cur.s.id, false);
      FLEET_RETURN_IF_ERROR(read_back_->resolve(cur.s.id));
    }
    return absl::AbortedError(fmt::format("session '{}' changed twice under remove", id));
  }

  absl::Status forward_remove(std::string_view id) override {
    FLEET_RETURN_IF_ERROR(core_.ready());
    FLEET_RETURN_IF_ERROR(validate_name("session id", id));
    std::string owner;
    {
      MutexLock lock(copies_->mu);
      if (copies_->own.count(std::string(id)) != 0) {
        return absl::FailedPreconditionError(
            fmt::format("session '{}' is this instance's own: use remove()", id));
      }
      auto it = copies_->foreign.find(std::string(id));
      if (it == copies_->foreign.end()) {
        return absl::NotFoundError(fmt::format("no copy of session '{}' here", id));
      }
      owner = it->second.s.owner;
    }
    core_.log().info("session '{}': asking its owner '{}' to delete it", id, owner);
    return c_.publish(remove_channel(o_.name, owner), id);
  }

  std::optional<Session> find(std::string_view id) const override {
    if (!core_.attached()) return std::nullopt;
    MutexLock lock(copies_->mu);
    const std::string key(id);
    if (auto it = copies_->own.find(key); it != copies_->own.end()) return it->second.s;
    if (auto it = copies_->foreign.find(key); it != copies_->foreign.end()) {
      return it->second.s;
    }
    return std::nullopt;
  }
  std::vector<Session> own() const override {
    return core_.attached() ? copies_->list(true) : std::vector<Session>{};
  }
  std::vector<Session> foreign() const override {
    return core_.attached() ? copies_->list(false) : std::vector<Session>{};
  }
  RelayStats stats() const override {
    RelayStats out;
    out.checks = core_.steps();
    out.taken = taken_.load();
    out.lost = lost_.load();
    return out;
  }

  Counts counts() const override {
    if (!core_.attached()) return {};
    MutexLock lock(copies_->mu);
    return Counts{copies_->own.size(), copies_->foreign.size()};
  }

  absl::Status run_once() override { return core_.run_once(); }

 private:
  // ---- module hooks -------------------------------------------------------------

  // Registers, takes this incarnation's fencing token, reads every bucket
  // (adopting what an earlier incarnation of this id left), then listens
  // for remove requests.
  absl::Status attach(const std::string& id) override {
    const auto t0 = c_.clock()->now();
    me_ = id;
    copies_ = std::make_unique<Copies>(me_, groups_, core_.log());
    takeover_ = std::make_unique<Takeover>(c_, o_, me_, *copies_);
    read_back_ =
        std::make_unique<ReadBack>(c_, o_, me_, fence_, *copies_, core_.log(),
                                   [this](SessionEvent e) { queue_event(std::move(e)); });
    FLEET_RETURN_IF_ERROR(c_.put(instances_map(o_.name), me_, groups_).status());
    FLEET_ASSIGN_OR_RETURN(const std::uint64_t fence, takeover_->next_fence());
    fence_ = fence;
    copies_->begin_restore(fence_);
    std::vector<MapMirror*> all;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      buckets_[b] = core_.mirror(bucket_name(o_.name, b), "",
                                 [this](const MapMirror::Change& ch) { on_change(ch); });
      all.push_back(buckets_[b].get());
    }
    absl::Status read = internal::ModuleCore::read_mirrors(all, /*start=*/true);
    Restored restored = copies_->end_restore();
    FLEET_RETURN_IF_ERROR(read);
    // Sessions stored under our id by an earlier incarnation: rewritten with
    // our fencing token, so that incarnation (if it still runs somewhere,
    // paused) can no longer write them.
    std::map<std::string, std::vector<Copy>> adopt;
    for (auto& c : restored.adopt)
      adopt[bucket_map(o_.name, c.s.id)].push_back(std::move(c));
    for (const auto& [map, copies] : adopt) {
      FLEET_RETURN_IF_ERROR(takeover_->rewrite_as_own(
          map, copies, [this](Session& s) { s.fence = fence_; }, nullptr));
    }
    auto rm = c_.subscribe(remove_channel(o_.name, me_), [this](const Message& m) {
      core_.post_task([this, id = m.payload] { on_remove_request(id); });
    });
    if (!rm.ok()) return rm.status();
    remove_sub_ = std::move(*rm);
    const Counts n = counts_locked_free();
    report_.own = n.own;
    report_.foreign = n.foreign;
    report_.lost = restored.lost;
    report_.malformed = restored.malformed;
    report_.took =
        std::chrono::duration_cast<std::chrono::microseconds>(c_.clock()->now() - t0);
    core_.log().info(
        "relay '{}' started as '{}': restored own={} foreign={} lost={} malformed={} in "
        "{} ms",
        o_.name, me_, report_.own, report_.foreign, report_.lost, report_.malformed,
        report_.took.count() / 1000.0);
    return absl::OkStatus();
  }

  absl::Status check() override {
    std::vector<std::string> pending;
    {
      MutexLock lock(copies_->mu);
      for (const auto& [id, c] : copies_->pending_create) pending.push_back(id);
    }
    for (const auto& id : pending) FLEET_RETURN_IF_ERROR(read_back_->roll_back(id));
    if (!core_.live().fresh()) return absl::OkStatus();  // the step reported why
    std::vector<Session> taken;
    absl::Status st = takeover_->run(core_.live().ids(), &taken);
    for (auto& s : taken) {
      std::string why = fmt::format("owner '{}' is gone", s.taken_from);
      queue_event(SessionEvent{SessionEventType::kTaken, std::move(s), std::move(why)});
    }
    return st;
  }

  // After Redis lost its data: register again and put our sessions back
  // where they are absent (claim: a record someone wrote meanwhile wins,
  // and the re-read then tells us we lost it).
  absl::Status republish() override {
    FLEET_RETURN_IF_ERROR(c_.put(instances_map(o_.name), me_, groups_).status());
    std::map<std::string, std::vector<Copy>> by_map;
    {
      MutexLock lock(copies_->mu);
      for (const auto& [id, c] : copies_->own)
        by_map[bucket_map(o_.name, id)].push_back(c);
    }
    std::size_t n = 0;
    for (auto& [map, copies] : by_map) {
      for (std::size_t i = 0; i < copies.size(); i += kMaxMapBatchOps) {
        std::vector<MapOp> ops;
        for (std::size_t j = i; j < std::min(copies.size(), i + kMaxMapBatchOps); ++j) {
          ops.push_back(MapOp::claim(copies[j].s.id, copies[j].raw, copies[j].s.ttl));
        }
        const std::uint64_t losses = c_.data_losses();
        FLEET_ASSIGN_OR_RETURN(auto r, c_.apply(map, ops));
        MutexLock lock(copies_->mu);
        for (std::size_t j = 0; j < ops.size(); ++j) {
          auto it = copies_->own.find(ops[j].key);
          if (it == copies_->own.end()) continue;
          if (r[j].applied || r[j].entry.value == it->second.raw) {
            it->second.entry_version = r[j].entry.version;
            it->second.losses = losses;
            ++n;
          }
        }
      }
    }
    core_.log().info(
        "relay '{}': the backend lost its data; re-published {} own sessions", o_.name,
        n);
    return absl::OkStatus();
  }

  // After the buckets were re-read: own sessions they no longer hold are
  // read back one by one (resolve puts back one lost with the data, and
  // reports one deleted).
  absl::Status resync() override {
    std::vector<std::string> own, missing;
    {
      MutexLock lock(copies_->mu);
      for (const auto& [id, c] : copies_->own) {
        if (!c.removing) own.push_back(id);
      }
    }
    // Not under copies_->mu: a mirror calls into the copies under its lock.
    for (auto& id : own) {
      if (!buckets_[bucket_of(id)]->contains(id)) missing.push_back(std::move(id));
    }
    absl::Status first;
    for (const auto& id : missing) {
      absl::Status st = read_back_->resolve(id);
      if (first.ok() && outcome_unknown(st)) first = st;
    }
    if (first.ok()) {
      const Counts n = counts_locked_free();
      core_.log().info("relay '{}' re-read its sessions: own={} foreign={}", o_.name,
                       n.own, n.foreign);
    }
    return first;
  }

  // ---- changes, events ------------------------------------------------------------

  // A bucket's change (under its mirror's lock).
  void on_change(const MapMirror::Change& ch) {
    Effects fx;
    copies_->apply(ch, c_.data_losses(), &fx);
    for (auto& e : fx.events) queue_event(std::move(e));
    for (auto& id : fx.roll_back) {
      core_.post_task([this, id = std::move(id)] { (void)read_back_->roll_back(id); });
    }
  }

  void queue_event(SessionEvent e) {
    if (e.type == SessionEventType::kTaken) ++taken_;
    if (e.type == SessionEventType::kLost) ++lost_;
    if (e.type == SessionEventType::kLost || e.type == SessionEventType::kTaken) {
      core_.log().info("session '{}' {} (owner '{}', fence {}, version {}): {}",
                       e.session.id, to_string(e.type), e.session.owner, e.session.fence,
                       e.session.version, e.reason);
    }
    if (!o_.on_event) return;
    core_.post_callback([this, e = std::move(e)] { o_.on_event(e); });
  }

  void on_remove_request(const std::string& id) {
    std::optional<Session> s;
    {
      MutexLock lock(copies_->mu);
      auto it = copies_->own.find(id);
      if (it != copies_->own.end()) s = it->second.s;
    }
    if (!s) {
      core_.log().info("session '{}': a peer asked to delete it, but it is not ours", id);
      return;
    }
    if (absl::Status st = remove(id); !st.ok()) {
      core_.log().warn("session '{}': delete asked by a peer failed: {}", id,
                       std::string(st.message()));
      return;
    }
    core_.log().info("session '{}': deleted at a peer's request", id);
    queue_event(SessionEvent{SessionEventType::kRemovedOnRequest, *s, "a peer asked"});
  }

  // ---- own copies ---------------------------------------------------------------

  static std::size_t bucket_of(const std::string& id) {
    return internal::fnv1a(id) % kBuckets;
  }

  Counts counts_locked_free() const {
    MutexLock lock(copies_->mu);
    return Counts{copies_->own.size(), copies_->foreign.size()};
  }

  void set_removing(const std::string& id, bool on) {
    MutexLock lock(copies_->mu);
    auto it = copies_->own.find(id);
    if (it != copies_->own.end()) it->second.removing = on;
  }

  internal::ModuleCore core_;  // first: destroyed last, stopped first
  Coordinator& c_;
  const RelayOptions o_;
  const std::string groups_;
  // Set by attach(), before the core says attached.
  std::string me_;
  std::uint64_t fence_ = 0;
  RestoreReport report_;
  std::unique_ptr<Copies> copies_;
  std::unique_ptr<Takeover> takeover_;
  std::unique_ptr<ReadBack> read_back_;
  std::array<std::shared_ptr<MapMirror>, kBuckets> buckets_;
  std::atomic<std::uint64_t> taken_{0}, lost_{0};
  Subscription remove_sub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Relay>> Relay::create(Coordinator& coordinator,
                                                     RelayOptions options) {
  FLEET_RETURN_IF_ERROR(validate_options(options));
  auto relay = std::make_unique<RelayImpl>(coordinator, std::move(options));
  FLEET_RETURN_IF_ERROR(relay->start());
  return std::unique_ptr<Relay>(std::move(relay));
}

}  // namespace fleet::relay
