// fleet::relay: sessions in kBuckets Coordinator maps, one compare-and-set
// per write; takeover and restore in batches (Coordinator::apply).
#include "fleet/relay.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "fleet/names.hpp"
#include "fmt/format.h"
#include "internal/logger.hpp"
#include "internal/rendezvous.hpp"
#include "internal/validate.hpp"

namespace fleet::relay {

namespace {

using std::chrono::milliseconds;

constexpr std::string_view kMagic = "fr1";
constexpr std::size_t kBatch = 1000;  // kMaxMapBatchOps

using internal::fnv1a;

std::uint64_t weight(std::string_view a, std::string_view b) {
  return internal::rendezvous_weight(a, b);
}

std::string instances_map(std::string_view name) {
  return fmt::format("relay/{}/instances", name);
}
std::string remove_channel(std::string_view name, std::string_view instance) {
  return fmt::format("relay/{}/remove/{}", name, instance);
}
std::string fence_lock(std::string_view name) {
  return fmt::format("relay/{}/fence", name);
}

bool is_unknown_outcome(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded;
}

// "*" or the groups joined by ','.
std::string encode_groups(const std::set<std::string>& groups) {
  if (groups.empty()) return "*";
  std::string out;
  for (const auto& g : groups) {
    if (!out.empty()) out += ',';
    out += g;
  }
  return out;
}

bool replicates(std::string_view groups, std::string_view group) {
  if (groups == "*") return true;
  std::size_t start = 0;
  while (start <= groups.size()) {
    std::size_t end = groups.find(',', start);
    if (end == std::string_view::npos) end = groups.size();
    if (groups.substr(start, end - start) == group) return true;
    start = end + 1;
  }
  return false;
}

template <typename T>
bool parse_int(std::string_view text, T* out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

std::string_view to_string(SessionEventType type) {
  switch (type) {
    case SessionEventType::kTaken:
      return "taken";
    case SessionEventType::kLost:
      return "lost";
    case SessionEventType::kExpired:
      return "expired";
    case SessionEventType::kRemovedOnRequest:
      return "removed-on-request";
  }
  return "unknown";
}

std::string bucket_map(std::string_view relay_name, std::string_view id) {
  return fmt::format("relay/{}/s{}", relay_name, fnv1a(id) % kBuckets);
}

std::string encode_session(const Session& s) {
  return fmt::format("{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}", kMagic, s.owner, s.fence,
                     s.version, s.ttl.count(), s.group, s.taken_from, s.document);
}

absl::StatusOr<Session> decode_session(std::string_view id, std::string_view value) {
  std::string_view f[7];
  std::size_t pos = 0;
  for (auto& field : f) {
    const std::size_t nl = value.find('\n', pos);
    if (nl == std::string_view::npos) {
      return absl::DataLossError(fmt::format("session '{}': truncated record", id));
    }
    field = value.substr(pos, nl - pos);
    pos = nl + 1;
  }
  Session s;
  s.id = std::string(id);
  std::int64_t ttl = 0;
  if (f[0] != kMagic || f[1].empty() || !parse_int(f[2], &s.fence) ||
      !parse_int(f[3], &s.version) || !parse_int(f[4], &ttl) || ttl < 0 ||
      s.version == 0) {
    return absl::DataLossError(fmt::format("session '{}': malformed record header", id));
  }
  s.owner = std::string(f[1]);
  s.ttl = milliseconds(ttl);
  s.group = std::string(f[5]);
  s.taken_from = std::string(f[6]);
  s.document = std::string(value.substr(pos));
  return s;
}

namespace {

struct Copy {
  Session s;
  std::string raw;                  // the stored value, for compare-and-set
  std::uint64_t entry_version = 0;  // the map's revision of that value
  bool removing = false;            // our own remove() is on its way
  // Own copies: Coordinator::data_losses() read just before the call that
  // last showed the stored copy to be this one. A stored copy that is missing although no
  // data loss happened since was deleted; one lost with Redis's data is put back.
  std::uint64_t losses = 0;
};

class RelayImpl final : public Relay {
 public:
  RelayImpl(Coordinator& c, RelayOptions o, std::string me)
      : c_(c),
        o_(std::move(o)),
        me_(std::move(me)),
        groups_(encode_groups(o_.replicate)),
        log_(o_.log_sink, LogLevel::kInfo, "relay") {}

  ~RelayImpl() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    subs_.clear();  // no callback runs after this
  }

  absl::Status start() {
    FLEET_RETURN_IF_ERROR(c_.put(instances_map(o_.name), me_, groups_).status());
    for (std::size_t b = 0; b < kBuckets; ++b) {
      auto sub = c_.watch(fmt::format("relay/{}/s{}", o_.name, b), "",
                          [this](const WatchEvent& e) { on_change(e); });
      if (!sub.ok()) return sub.status();
      subs_.push_back(std::move(*sub));
    }
    auto rm = c_.subscribe(remove_channel(o_.name, me_), [this](const Message& m) {
      post([this, id = m.payload] { on_remove_request(id); });
    });
    if (!rm.ok()) return rm.status();
    subs_.push_back(std::move(*rm));
    auto members = c_.watch_members([this](const MemberEvent& e) {
      if (e.type != MemberEventType::kJoined) post([this] { (void)check(); });
    });
    if (!members.ok()) return members.status();
    subs_.push_back(std::move(*members));
    auto fence = next_fence();
    if (!fence.ok()) return fence.status();
    fence_ = *fence;
    losses_at_check_ = c_.data_losses();
    auto restored = resync(/*restore=*/true);
    if (!restored.ok()) return restored;
    auto conn = c_.watch_connection([this](ConnectionState s) {
      if (s == ConnectionState::kReconnected) post([this] { (void)resync(false); });
    });
    if (!conn.ok()) return conn.status();
    subs_.push_back(std::move(*conn));
    log_.info(
        "relay '{}' started as '{}': restored own={} foreign={} lost={} malformed={} in "
        "{} ms",
        o_.name, me_, report_.own, report_.foreign, report_.lost, report_.malformed,
        report_.took.count() / 1000.0);
    if (o_.background) worker_ = std::thread([this] { worker(); });
    return absl::OkStatus();
  }

  const std::string& instance_id() const override { return me_; }
  const RestoreReport& restore_report() const override { return report_; }

  absl::StatusOr<Session> create_session(std::string_view id, std::string_view document,
                                         milliseconds ttl) override {
    FLEET_RETURN_IF_ERROR(validate_name("session id", id));
    FLEET_RETURN_IF_ERROR(check_document(document));
    if (ttl.count() < 0)
      return absl::InvalidArgumentError("session ttl must not be negative");
    FLEET_RETURN_IF_ERROR(roll_back(std::string(id)));  // an earlier failed create
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
      if (is_unknown_outcome(r.status())) remember_unsure(s, raw);
      return r.status();
    }
    if (!r->claimed) {
      auto stored = decode_session(id, r->entry.value);
      if (stored.ok() && stored->owner == me_ && stored->fence == fence_ &&
          stored->version == 1 && stored->document == s.document) {
        s = *stored;  // the same create again, whose earlier answer was lost
      } else {
        return absl::AlreadyExistsError(fmt::format("session '{}' exists", id));
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    Copy& copy = own_[s.id];
    copy = Copy{s, raw, r->entry.version, false, losses};
    foreign_.erase(s.id);
    return s;
  }

  absl::StatusOr<Session> update(std::string_view id,
                                 std::string_view document) override {
    FLEET_RETURN_IF_ERROR(validate_name("session id", id));
    FLEET_RETURN_IF_ERROR(check_document(document));
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto cur = own_copy(id);
      if (!cur.ok()) return cur.status();
      Session next = cur->s;
      next.version += 1;
      next.document = std::string(document);
      std::string raw = encode_session(next);
      const std::uint64_t losses = c_.data_losses();
      auto r = c_.apply(bucket_map(o_.name, id),
                        {MapOp::compare_and_set(next.id, cur->raw, raw, next.ttl)});
      if (!r.ok()) {
        if (is_unknown_outcome(r.status())) mark_unsure(next.id);
        return r.status();
      }
      if ((*r)[0].applied) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = own_.find(next.id);
        if (it != own_.end() && it->second.raw == cur->raw) {
          it->second = Copy{next, raw, (*r)[0].entry.version, false, losses};
        }
        return next;
      }
      // The stored copy is not the one we last wrote: read it back.
      FLEET_RETURN_IF_ERROR(resolve(next.id));
    }
    return absl::AbortedError(fmt::format("session '{}' changed twice under update", id));
  }

  absl::Status remove(std::string_view id) override {
    FLEET_RETURN_IF_ERROR(validate_name("session id", id));
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto cur = own_copy(id);
      if (!cur.ok()) return cur.status();
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = own_.find(cur->s.id);
        if (it != own_.end()) it->second.removing = true;
      }
      auto r = c_.compare_and_delete(bucket_map(o_.name, id), id, cur->raw);
      if (!r.ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = own_.find(cur->s.id);
        if (it != own_.end()) {
          it->second.removing = false;
          if (is_unknown_outcome(r.status())) unsure_.insert(cur->s.id);
        }
        return r.status();
      }
      if (*r) {
        std::lock_guard<std::mutex> lock(mu_);
        own_.erase(cur->s.id);
        return absl::OkStatus();
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = own_.find(cur->s.id);
        if (it != own_.end()) it->second.removing = false;
      }
      FLEET_RETURN_IF_ERROR(resolve(cur->s.id));
    }
    return absl::AbortedError(fmt::format("session '{}' changed twice under remove", id));
  }

  absl::Status forward_remove(std::string_view id) override {
    FLEET_RETURN_IF_ERROR(validate_name("session id", id));
    std::string owner;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (own_.count(std::string(id)) != 0) {
        return absl::FailedPreconditionError(
            fmt::format("session '{}' is this instance's own: use remove()", id));
      }
      auto it = foreign_.find(std::string(id));
      if (it == foreign_.end()) {
        return absl::NotFoundError(fmt::format("no copy of session '{}' here", id));
      }
      owner = it->second.s.owner;
    }
    log_.info("session '{}': asking its owner '{}' to delete it", id, owner);
    return c_.publish(remove_channel(o_.name, owner), id);
  }

  std::optional<Session> find(std::string_view id) const override {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string key(id);
    if (auto it = own_.find(key); it != own_.end()) return it->second.s;
    if (auto it = foreign_.find(key); it != foreign_.end()) return it->second.s;
    return std::nullopt;
  }
  std::vector<Session> own() const override { return list(own_); }
  std::vector<Session> foreign() const override { return list(foreign_); }
  Counts counts() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return Counts{own_.size(), foreign_.size()};
  }

  absl::Status run_once() override {
    drain();
    absl::Status s = check();
    drain();
    return s;
  }

 private:
  template <typename M>
  std::vector<Session> list(const M& m) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Session> out;
    out.reserve(m.size());
    for (const auto& [id, copy] : m) out.push_back(copy.s);
    return out;
  }

  static absl::Status check_document(std::string_view document) {
    if (document.size() > kMaxDocumentBytes) {
      return absl::InvalidArgumentError(
          fmt::format("session document is {} bytes; the limit is {}", document.size(),
                      kMaxDocumentBytes));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::uint64_t> next_fence() {
    auto lease = c_.lock(fence_lock(o_.name), milliseconds(2000), milliseconds(5000));
    if (!lease.ok()) return lease.status();
    if (!lease->has_value()) {
      return absl::UnavailableError("could not get a fencing token within 5 s");
    }
    (void)c_.release(**lease);
    return (*lease)->fence;
  }

  // Our copy of an own session, read back first when a write's outcome was
  // unknown. NotFound / FailedPrecondition when it is not ours.
  absl::StatusOr<Copy> own_copy(std::string_view id) {
    const std::string key(id);
    bool unsure = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      unsure = unsure_.count(key) != 0;
      if (!unsure) {
        if (auto it = own_.find(key); it != own_.end()) return it->second;
        if (auto it = foreign_.find(key); it != foreign_.end()) {
          return absl::FailedPreconditionError(
              fmt::format("session '{}' is owned by '{}', not by this instance", id,
                          it->second.s.owner));
        }
        return absl::NotFoundError(fmt::format("no session '{}' here", id));
      }
    }
    FLEET_RETURN_IF_ERROR(resolve(key));
    std::lock_guard<std::mutex> lock(mu_);
    auto it = own_.find(key);
    if (it == own_.end())
      return absl::NotFoundError(fmt::format("no session '{}' here", id));
    return it->second;
  }

  void remember_unsure(const Session& s, const std::string& raw) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_create_[s.id] = Copy{s, raw, 0, false};
    unsure_.insert(s.id);
  }
  void mark_unsure(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    unsure_.insert(id);
  }

  // Reads the stored copy of a session we own (or believe we own, or tried
  // to create) and makes ours equal to it: ours when the stored copy has
  // our owner name and fencing token, lost otherwise.
  absl::Status resolve(const std::string& id) {
    bool pending = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending = pending_create_.count(id) != 0;
    }
    if (pending) {  // a create that returned an error: make sure it does not exist
      FLEET_RETURN_IF_ERROR(roll_back(id));
      return absl::NotFoundError(fmt::format("session '{}' was not created", id));
    }
    // What our copy was before the read: if another thread changes it
    // meanwhile (a re-publication, an update), the read is not the last word.
    std::optional<std::pair<std::uint64_t, std::uint64_t>> seen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = own_.find(id); it != own_.end()) {
        seen.emplace(it->second.entry_version, it->second.losses);
      }
    }
    const std::uint64_t losses = c_.data_losses();
    auto stored = c_.get(bucket_map(o_.name, id), id);
    if (!stored.ok()) return stored.status();
    std::optional<Copy> lost, put_back;
    absl::Status result = absl::OkStatus();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = own_.find(id);
          it != own_.end() && seen &&
          *seen != std::make_pair(it->second.entry_version, it->second.losses)) {
        return absl::OkStatus();  // changed under the read: the caller tries again
      }
      unsure_.erase(id);
      std::uint64_t fence = fence_;
      if (auto it = own_.find(id); it != own_.end()) fence = it->second.s.fence;
      if (stored->has_value()) {
        auto s = decode_session(id, (*stored)->value);
        if (s.ok() && s->owner == me_ && s->fence == fence) {
          own_[id] = Copy{*s, (*stored)->value, (*stored)->version, false, losses};
          foreign_.erase(id);
          return absl::OkStatus();
        }
      }
      if (auto it = own_.find(id); it != own_.end() && !stored->has_value() &&
                                   it->second.losses < c_.data_losses()) {
        put_back = it->second;  // lost with Redis's data, not deleted
      } else if (it != own_.end()) {
        lost = it->second;
        own_.erase(it);
      }
      result =
          stored->has_value()
              ? absl::FailedPreconditionError(
                    fmt::format("session '{}' is no longer owned by this instance", id))
              : absl::NotFoundError(fmt::format("session '{}' no longer exists", id));
    }
    if (put_back) {
      const std::uint64_t before = c_.data_losses();
      auto r = c_.claim(bucket_map(o_.name, id), id, put_back->raw, put_back->s.ttl);
      if (!r.ok()) return r.status();
      std::lock_guard<std::mutex> lock(mu_);
      auto it = own_.find(id);
      if (it != own_.end() && (r->claimed || r->entry.value == it->second.raw)) {
        it->second.entry_version = r->entry.version;
        it->second.losses = before;
        return absl::OkStatus();
      }
      if (it != own_.end()) {
        lost = it->second;
        own_.erase(it);
      }
      result = absl::FailedPreconditionError(
          fmt::format("session '{}' is no longer owned by this instance", id));
    }
    if (lost) {
      queue_event(
          SessionEvent{SessionEventType::kLost, lost->s, std::string(result.message())});
    }
    return result;
  }

  // ---- change stream (Coordinator event thread) ------------------------------

  void on_change(const WatchEvent& e) {
    std::optional<SessionEvent> event;
    bool roll_back_after = false;
    do {
      std::lock_guard<std::mutex> lock(mu_);
      if (e.type == WatchEventType::kSet) {
        if (resyncing_) touched_.insert(e.key);  // set after the scan may have read
        auto s = decode_session(e.key, e.value);
        if (!s.ok()) {
          log_.warn("skipped a malformed session record '{}' in map '{}'", e.key, e.map);
          return;
        }
        if (s->owner == me_) {
          foreign_.erase(e.key);
          auto it = own_.find(e.key);
          if (it != own_.end() && it->second.s.fence == s->fence &&
              it->second.entry_version < e.version) {
            // Our own write; after one of unknown outcome, what landed.
            // What the event shows may have been lost since: keep `losses`.
            it->second =
                Copy{std::move(*s), e.value, e.version, false, it->second.losses};
          } else if (it == own_.end() && pending_create_.count(e.key) != 0) {
            roll_back_after = true;  // a create that returned an error landed
          }
          break;
        }
        if (auto it = own_.find(e.key);
            it != own_.end() && it->second.entry_version < e.version) {
          event = SessionEvent{SessionEventType::kLost, it->second.s,
                               fmt::format("now owned by '{}'", s->owner)};
          own_.erase(it);
        }
        if (replicates(groups_, s->group)) {
          Copy& c = foreign_[e.key];
          if (c.entry_version < e.version)
            c = Copy{std::move(*s), e.value, e.version, false};
        } else {
          foreign_.erase(e.key);
        }
      } else {
        if (resyncing_) tombstones_[e.key] = e.version;
        foreign_.erase(e.key);
        auto it = own_.find(e.key);
        if (it != own_.end() && it->second.entry_version < e.version) {
          if (!it->second.removing) {
            const char* why = e.type == WatchEventType::kExpired ? "its ttl passed"
                              : unsure_.count(e.key) != 0
                                  ? "deleted (a remove whose answer was lost)"
                                  : "deleted by another instance";
            event = SessionEvent{e.type == WatchEventType::kExpired
                                     ? SessionEventType::kExpired
                                     : SessionEventType::kLost,
                                 it->second.s, why};
          }
          unsure_.erase(e.key);
          own_.erase(it);
        }
      }
    } while (false);
    if (event) queue_event(std::move(*event));
    if (roll_back_after) post([this, id = e.key] { (void)roll_back(id); });
  }

  // ---- restore / resync ------------------------------------------------------------

  // Reads every bucket (one scan each: kBuckets pages) and makes our copies
  // equal to it. On restore, and after a data loss, sessions stored under
  // our instance id are adopted (restore) or re-published (data loss).
  struct Partial {
    absl::Status status;
    std::size_t malformed = 0, lost = 0;
    std::set<std::string> present;
    std::vector<SessionEvent> events;
  };

  // One bucket of resync: decodes outside the lock, applies under it, then
  // adopts the sessions stored under our name (restore only).
  absl::Status resync_bucket(std::size_t b, bool restore, Partial* out) {
    const std::string map = fmt::format("relay/{}/s{}", o_.name, b);
    const std::uint64_t losses = c_.data_losses();
    auto entries = c_.scan(map);
    if (!entries.ok()) return entries.status();
    std::vector<std::pair<MapEntry*, Session>> decoded;
    decoded.reserve(entries->size());
    for (auto& me : *entries) {
      auto s = decode_session(me.key, me.entry.value);
      if (!s.ok()) {
        ++out->malformed;
        log_.warn("skipped a malformed session record '{}' in map '{}': {}", me.key, map,
                  std::string(s.status().message()));
        continue;
      }
      out->present.insert(me.key);
      decoded.emplace_back(&me, std::move(*s));
    }
    std::vector<Copy> adopt;  // stored under our name by an earlier incarnation
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [me, s] : decoded) {
        if (auto t = tombstones_.find(me->key);
            t != tombstones_.end() && t->second > me->entry.version) {
          continue;  // deleted while we read
        }
        if (s.owner == me_) {
          auto it = own_.find(me->key);
          if (it != own_.end() && it->second.s.fence == s.fence) {
            if (it->second.entry_version < me->entry.version) {
              it->second = Copy{s, me->entry.value, me->entry.version, false, losses};
            }
          } else if (restore) {
            adopt.push_back(
                Copy{std::move(s), std::move(me->entry.value), me->entry.version, false});
          }
          continue;
        }
        if (s.taken_from == me_ && restore) {
          ++out->lost;
          out->events.push_back(SessionEvent{
              SessionEventType::kLost, s,
              fmt::format("taken over by '{}' while this instance was away", s.owner)});
        }
        if (auto it = own_.find(me->key);
            it != own_.end() && it->second.entry_version < me->entry.version) {
          out->events.push_back(SessionEvent{SessionEventType::kLost, it->second.s,
                                             fmt::format("now owned by '{}'", s.owner)});
          own_.erase(it);
        }
        if (replicates(groups_, s.group)) {
          Copy& c = foreign_[me->key];
          if (c.entry_version < me->entry.version) {
            c = Copy{std::move(s), std::move(me->entry.value), me->entry.version, false};
          }
        }
      }
    }
    return adopt_batch(map, adopt);
  }

  absl::Status resync(bool restore) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::uint64_t losses = c_.data_losses();
    const bool data_loss = !restore && losses != seen_losses_;
    if (data_loss) {  // not marked seen until done: check() retries it
      FLEET_RETURN_IF_ERROR(c_.put(instances_map(o_.name), me_, groups_).status());
      FLEET_RETURN_IF_ERROR(republish());
    }
    seen_losses_ = losses;
    {
      std::lock_guard<std::mutex> lock(mu_);
      resyncing_ = true;
      tombstones_.clear();
      touched_.clear();
    }
    // The buckets are read (and our sessions in them adopted) by up to four
    // threads: while Redis runs one bucket's batch, another is decoded.
    RestoreReport report;
    std::vector<Partial> parts(kBuckets);
    std::atomic<std::size_t> next_bucket{0};
    auto work = [&] {
      for (std::size_t b; (b = next_bucket++) < kBuckets;) {
        parts[b].status = resync_bucket(b, restore, &parts[b]);
        if (!parts[b].status.ok()) break;
      }
    };
    std::vector<std::thread> helpers;
    for (int t = 0; t < 3; ++t) helpers.emplace_back(work);
    work();
    for (auto& t : helpers) t.join();
    absl::Status status = absl::OkStatus();
    std::vector<SessionEvent> events;
    std::set<std::string> present;
    std::vector<std::string> missing;
    for (auto& p : parts) {
      if (status.ok() && !p.status.ok()) status = p.status;
      report.malformed += p.malformed;
      report.lost += p.lost;
      present.insert(p.present.begin(), p.present.end());
      for (auto& e : p.events) events.push_back(std::move(e));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (status.ok()) {
        // Copies of sessions no longer stored (missed deletes).
        for (auto it = foreign_.begin(); it != foreign_.end();) {
          const bool keep =
              present.count(it->first) != 0 || touched_.count(it->first) != 0;
          it = keep ? std::next(it) : foreign_.erase(it);
        }
        // Own sessions the scan did not find: each is read again by
        // resolve() (a write may have put it back since the scan), which
        // puts back one lost with Redis's data and reports a deleted one.
        for (const auto& [id, c] : own_) {
          if (present.count(id) == 0 && !c.removing) missing.push_back(id);
        }
      }
      resyncing_ = false;
      tombstones_.clear();
      touched_.clear();
      report.own = own_.size();
      report.foreign = foreign_.size();
    }
    for (auto& e : events) queue_event(std::move(e));
    for (const auto& id : missing) {
      if (absl::Status st = resolve(id);
          !st.ok() && status.ok() && is_unknown_outcome(st)) {
        status = st;
      }
    }
    report.took = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - t0);
    if (restore) report_ = report;
    if (!restore && status.ok()) {
      log_.info("relay '{}' re-read its sessions ({}): own={} foreign={}", o_.name,
                data_loss ? "Redis lost its data" : "reconnected", report.own,
                report.foreign);
    }
    return status;
  }

  // Adopts sessions stored under our instance id by an earlier incarnation:
  // rewrites them with our fencing token, so that incarnation (if it still
  // runs somewhere, paused) can no longer write them.
  absl::Status adopt_batch(const std::string& map, std::vector<Copy>& adopt) {
    return rewrite_as_own(
        map, adopt, [this](Session& s) { s.fence = fence_; }, nullptr);
  }

  // Rewrites `copies` (as stored in `map`) with `change` applied and the
  // version + 1, by compare-and-set in batches; each one that matched
  // becomes our own copy (and, with `taken`, is listed there). One that
  // did not had changed meanwhile: the change stream says how.
  absl::Status rewrite_as_own(const std::string& map, const std::vector<Copy>& copies,
                              const std::function<void(Session&)>& change,
                              std::vector<Session>* taken) {
    for (std::size_t i = 0; i < copies.size(); i += kBatch) {
      std::vector<MapOp> ops;
      std::vector<Copy> next;
      for (std::size_t j = i; j < std::min(copies.size(), i + kBatch); ++j) {
        Copy c = copies[j];
        change(c.s);
        c.s.version += 1;
        c.raw = encode_session(c.s);
        ops.push_back(MapOp::compare_and_set(c.s.id, copies[j].raw, c.raw, c.s.ttl));
        next.push_back(std::move(c));
      }
      const std::uint64_t losses = c_.data_losses();
      auto r = c_.apply(map, ops);
      if (!r.ok()) return r.status();
      std::lock_guard<std::mutex> lock(mu_);
      for (std::size_t j = 0; j < next.size(); ++j) {
        if (!(*r)[j].applied) continue;
        next[j].entry_version = (*r)[j].entry.version;
        next[j].losses = losses;
        foreign_.erase(next[j].s.id);
        orphaned_since_.erase(next[j].s.id);
        if (taken != nullptr) taken->push_back(next[j].s);
        own_[next[j].s.id] = std::move(next[j]);
      }
    }
    return absl::OkStatus();
  }

  // After Redis lost its data: put our sessions back where they are absent
  // (claim: a record someone wrote meanwhile wins, and tells us we lost it).
  absl::Status republish() {
    std::map<std::string, std::vector<Copy>> by_map;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, c] : own_) by_map[bucket_map(o_.name, id)].push_back(c);
    }
    std::size_t n = 0;
    absl::Status status = absl::OkStatus();
    for (auto& [map, copies] : by_map) {
      for (std::size_t i = 0; i < copies.size(); i += kBatch) {
        std::vector<MapOp> ops;
        for (std::size_t j = i; j < std::min(copies.size(), i + kBatch); ++j) {
          ops.push_back(MapOp::claim(copies[j].s.id, copies[j].raw, copies[j].s.ttl));
        }
        const std::uint64_t losses = c_.data_losses();
        auto r = c_.apply(map, ops);
        if (!r.ok()) {
          log_.warn("re-publishing sessions after a data loss failed: {}",
                    std::string(r.status().message()));
          if (status.ok()) status = r.status();
          continue;
        }
        std::lock_guard<std::mutex> lock(mu_);
        for (std::size_t j = 0; j < ops.size(); ++j) {
          auto it = own_.find(ops[j].key);
          if (it == own_.end()) continue;
          if ((*r)[j].applied || (*r)[j].entry.value == it->second.raw) {
            it->second.entry_version = (*r)[j].entry.version;
            it->second.losses = losses;
            ++n;
          }
        }
      }
    }
    log_.info("relay '{}': Redis lost its data; re-published {} own sessions", o_.name,
              n);
    return status;
  }

  // ---- takeover ------------------------------------------------------------------

  // A create that returned an error must not exist: deletes it if it
  // landed after all (only the exact record we tried to write).
  absl::Status roll_back(const std::string& id) {
    std::string raw;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_create_.find(id);
      if (it == pending_create_.end()) return absl::OkStatus();
      raw = it->second.raw;
    }
    auto r = c_.compare_and_delete(bucket_map(o_.name, id), id, raw);
    if (!r.ok()) return r.status();  // tried again at the next check
    std::lock_guard<std::mutex> lock(mu_);
    auto it = pending_create_.find(id);
    if (it != pending_create_.end() && it->second.raw == raw) {
      pending_create_.erase(it);
      unsure_.erase(id);
    }
    if (*r)
      log_.info("session '{}': a create reported as failed had landed; deleted it", id);
    return absl::OkStatus();
  }

  absl::Status check() {
    const std::uint64_t losses = c_.data_losses();
    if (losses != losses_at_check_) {
      // After Redis lost its data every instance re-joins and re-publishes
      // within about a heartbeat: until takeover_grace has passed, an owner
      // missing from the members is not taken for gone.
      losses_at_check_ = losses;
      loss_noticed_at_ = c_.clock()->now();
    }
    if (losses != seen_losses_) FLEET_RETURN_IF_ERROR(resync(false));
    std::vector<std::string> pending;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, c] : pending_create_) pending.push_back(id);
    }
    for (const auto& id : pending) FLEET_RETURN_IF_ERROR(roll_back(id));
    auto members = c_.members();
    if (!members.ok()) return members.status();
    std::set<std::string> live;
    for (const auto& m : *members) live.insert(m.info.id);
    if (live.count(me_) == 0) return absl::OkStatus();  // we are not a member now
    auto registry = c_.scan(instances_map(o_.name));
    if (!registry.ok()) return registry.status();
    std::vector<std::pair<std::string, std::string>> peers;  // live relay instances
    for (const auto& e : *registry) {
      if (live.count(e.key) != 0) peers.emplace_back(e.key, e.entry.value);
    }
    const auto now = c_.clock()->now();
    if (loss_noticed_at_ != Clock::TimePoint{} &&
        now - loss_noticed_at_ < o_.takeover_grace) {
      return absl::OkStatus();
    }
    std::map<std::string, std::vector<Copy>> take;  // by map
    std::size_t count = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = orphaned_since_.begin(); it != orphaned_since_.end();) {
        auto f = foreign_.find(it->first);
        it = (f == foreign_.end() || live.count(f->second.s.owner) != 0)
                 ? orphaned_since_.erase(it)
                 : std::next(it);
      }
      for (const auto& [id, c] : foreign_) {
        if (live.count(c.s.owner) != 0) continue;
        auto since = orphaned_since_.emplace(id, now).first->second;
        std::string chosen;
        std::uint64_t best = 0;
        for (const auto& [peer, groups] : peers) {
          if (!replicates(groups, c.s.group)) continue;
          const std::uint64_t w = weight(id, peer);
          if (chosen.empty() || w > best) {
            chosen = peer;
            best = w;
          }
        }
        if (chosen != me_ && now - since < o_.takeover_grace) continue;
        if (o_.max_takeover != 0 && count >= o_.max_takeover) break;
        take[bucket_map(o_.name, id)].push_back(c);
        ++count;
      }
    }
    if (count == 0) return absl::OkStatus();
    auto fence = next_fence();
    if (!fence.ok()) return fence.status();
    std::size_t taken = 0;
    for (auto& [map, copies] : take) {
      std::vector<Session> now_ours;
      absl::Status st = rewrite_as_own(
          map, copies,
          [&](Session& s) {
            s.taken_from = s.owner;
            s.owner = me_;
            s.fence = *fence;
          },
          &now_ours);
      for (auto& s : now_ours) {
        std::string why = fmt::format("owner '{}' is gone", s.taken_from);
        queue_event(SessionEvent{SessionEventType::kTaken, std::move(s), std::move(why)});
      }
      taken += now_ours.size();
      if (!st.ok()) return st;  // the next check reads back and retries
    }
    if (taken > 0) {
      log_.info(
          "relay '{}': took over {} session(s) of instances that are gone (fence {})",
          o_.name, taken, *fence);
    }
    return absl::OkStatus();
  }

  void on_remove_request(const std::string& id) {
    std::optional<Session> s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = own_.find(id);
      if (it != own_.end()) s = it->second.s;
    }
    if (!s) {
      log_.info("session '{}': a peer asked to delete it, but it is not ours", id);
      return;
    }
    absl::Status st = remove(id);
    if (!st.ok()) {
      log_.warn("session '{}': delete asked by a peer failed: {}", id,
                std::string(st.message()));
      return;
    }
    log_.info("session '{}': deleted at a peer's request", id);
    queue_event(SessionEvent{SessionEventType::kRemovedOnRequest, *s, "a peer asked"});
  }

  // ---- the relay's thread ------------------------------------------------------

  void post(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_all();
  }
  void queue_event(SessionEvent e) {
    if (e.type == SessionEventType::kLost || e.type == SessionEventType::kTaken) {
      log_.info("session '{}' {} (owner '{}', fence {}, version {}): {}", e.session.id,
                to_string(e.type), e.session.owner, e.session.fence, e.session.version,
                e.reason);
    }
    if (!o_.on_event) return;
    post([this, e = std::move(e)] { o_.on_event(e); });
  }

  // Runs queued tasks (and the events they queue) on the calling thread.
  void drain() {
    for (;;) {
      std::function<void()> task;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  void worker() {
    auto next_check = std::chrono::steady_clock::now();
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_until(lock, next_check, [this] { return stopping_ || !tasks_.empty(); });
        if (stopping_) return;
        if (!tasks_.empty()) {
          task = std::move(tasks_.front());
          tasks_.pop_front();
        }
      }
      if (task) {
        task();
        continue;
      }
      if (std::chrono::steady_clock::now() >= next_check) {
        absl::Status s = check();
        if (!s.ok()) log_.warn("takeover check failed: {}", std::string(s.message()));
        next_check = std::chrono::steady_clock::now() + o_.check_interval;
      }
    }
  }

  Coordinator& c_;
  const RelayOptions o_;
  const std::string me_;
  const std::string groups_;
  const internal::Logger log_;
  std::uint64_t fence_ = 0;
  std::uint64_t seen_losses_ = 0;
  std::uint64_t losses_at_check_ = 0;  // data_losses() at the last check
  Clock::TimePoint loss_noticed_at_{};
  RestoreReport report_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Copy> own_;
  std::map<std::string, Copy> foreign_;
  std::set<std::string> unsure_;                // own writes of unknown outcome
  std::map<std::string, Copy> pending_create_;  // creates of unknown outcome
  std::map<std::string, Clock::TimePoint> orphaned_since_;
  std::map<std::string, std::uint64_t> tombstones_;  // deletes seen during resync
  std::set<std::string> touched_;                    // sets seen during resync
  bool resyncing_ = false;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread worker_;
  std::vector<Subscription> subs_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Relay>> Relay::create(Coordinator& coordinator,
                                                     RelayOptions options) {
  FLEET_RETURN_IF_ERROR(validate_name("relay name", options.name));
  if (!options.group.empty()) {
    FLEET_RETURN_IF_ERROR(validate_name("relay group", options.group));
  }
  for (const auto& g : options.replicate) {
    FLEET_RETURN_IF_ERROR(validate_name("replicated group", g));
    if (g.find(',') != std::string::npos || g == "*") {
      return absl::InvalidArgumentError(
          fmt::format("replicated group '{}' must not contain ',' or be '*'", g));
    }
  }
  if (options.group.find(',') != std::string::npos) {
    return absl::InvalidArgumentError("relay group must not contain ','");
  }
  if (options.check_interval.count() <= 0 || options.takeover_grace.count() < 0) {
    return absl::InvalidArgumentError(
        "check_interval must be positive and takeover_grace not negative");
  }
  auto members = coordinator.members();
  if (!members.ok()) return members.status();
  std::string me;
  for (const auto& m : *members) {
    if (m.session_id == coordinator.session_id()) me = m.info.id;
  }
  if (me.empty()) {
    return absl::FailedPreconditionError(
        "fleet::relay needs a Coordinator that has joined: its instance id owns the "
        "sessions");
  }
  auto relay = std::make_unique<RelayImpl>(coordinator, std::move(options), me);
  FLEET_RETURN_IF_ERROR(relay->start());
  return std::unique_ptr<Relay>(std::move(relay));
}

}  // namespace fleet::relay
