#include "redis/slot_lane.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "fmt/format.h"
#include "internal/validate.hpp"
#include "redis/codec.hpp"
#include "redis/sigpipe.hpp"

namespace fleet::internal {

// ---- SlotCall -----------------------------------------------------------------

SlotCall::SlotCall(std::string slots, std::string session, std::string_view pool,
                   const SlotRequest& request)
    : pool(pool),
      shape(request),
      slots_key(std::move(slots)),
      session_key(std::move(session)),
      field_prefix(fmt::format("{}:{}", pool.size(), pool)) {
  shape.rotate = 0;
  numbers = encode_slot_numbers(shape, &format);
}

bool SlotCall::matches(std::string_view p, const SlotRequest& r) const {
  if (p != pool || r.load_weight != shape.load_weight ||
      r.tier_load_limit != shape.tier_load_limit || r.sample != shape.sample ||
      r.candidates.size() != shape.candidates.size()) {
    return false;
  }
  for (std::size_t i = 0; i < r.candidates.size(); ++i) {
    const SlotCandidate &a = shape.candidates[i], &b = r.candidates[i];
    if (a.capacity != b.capacity || a.score != b.score || a.tier != b.tier ||
        a.target != b.target) {
      return false;
    }
  }
  return true;
}

Argv SlotCall::keys(std::string_view epochs_key) const {
  return {slots_key, session_key, epochs_key};
}

Argv SlotCall::args(std::string_view sid, std::string_view epoch,
                    const std::string& rotates) const {
  Argv a = {sid, epoch, field_prefix, numbers, format, rotates};
  a.reserve(a.size() + shape.candidates.size());
  for (const auto& c : shape.candidates) a.push_back(c.target);
  return a;
}

std::vector<SlotResult> decode_slot_reply(const SlotCall& call, std::size_t decisions,
                                          const absl::StatusOr<Reply>& reply) {
  auto all = [decisions](const absl::Status& st) {
    return std::vector<SlotResult>(decisions, SlotResult(st));
  };
  if (!reply.ok()) return all(reply.status());
  if (reply->is_error()) {
    const absl::Status st = status_from_error(reply->str);
    return all(absl::Status(
        st.code(), fmt::format("script slot_acquire: {}", std::string(st.message()))));
  }
  if (slot_reply_stale(reply)) {
    return all(absl::UnavailableError(
        "this session is being re-established in Redis (it expired, or Redis lost its "
        "data); no slot was taken"));
  }
  const auto& e = reply->elements;
  if (reply->type != Reply::Type::kArray || e.size() % 2 != 0 ||
      e.size() / 2 > decisions) {
    return all(absl::InternalError("slot_acquire returned an unexpected reply"));
  }
  std::vector<SlotResult> out;
  out.reserve(decisions);
  for (std::size_t i = 0; i < e.size(); i += 2) {
    const long long index = e[i].integer;
    if (index < 1 || static_cast<std::size_t>(index) > call.shape.candidates.size()) {
      return all(absl::InternalError("slot_acquire returned an unexpected reply"));
    }
    const SlotCandidate& c = call.shape.candidates[static_cast<std::size_t>(index - 1)];
    SlotGrant grant;
    grant.target = c.target;
    grant.used = e[i + 1].integer;
    grant.capacity = c.capacity;
    out.emplace_back(std::move(grant));
  }
  while (out.size() < decisions) out.emplace_back(std::nullopt);  // no room
  return out;
}

bool slot_reply_stale(const absl::StatusOr<Reply>& reply) {
  return reply.ok() && reply->type == Reply::Type::kInteger && reply->integer == -1;
}

void record_grants(const std::string& pool, const std::vector<SlotResult>& results,
                   SessionLedger::Record& record) {
  for (const auto& r : results) {
    if (r.ok() && r->has_value()) ++record.slots[pool][(*r)->target];
  }
}

// ---- SlotLane -----------------------------------------------------------------

SlotLane::SlotLane(Options options, SessionLedger* ledger, Clock* clock,
                   const Logger* logger)
    : options_(std::move(options)),
      ledger_(ledger),
      clock_(clock),
      logger_(logger),
      reconnect_(options_.backoff_min, options_.backoff_max) {
  if (::pipe2(wake_fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
    wake_fds_[0] = wake_fds_[1] = -1;  // submit() fails every decision then
    logger_->error("cannot create the async slot lane's pipe: errno {}", errno);
    return;
  }
  thread_ = std::thread([this] { loop(); });
}

SlotLane::~SlotLane() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  wake();
  if (thread_.joinable()) thread_.join();
  const absl::Status cancelled =
      absl::CancelledError("the coordinator was destroyed before Redis answered");
  fail_in_flight(cancelled);
  std::vector<Job> rest;
  {
    MutexLock lock(mu_);
    rest.swap(queue_);
  }
  fail_all(std::move(rest), cancelled);
  for (int fd : wake_fds_) {
    if (fd >= 0) ::close(fd);
  }
}

void SlotLane::submit(std::shared_ptr<const SlotCall> call, std::uint32_t rotate,
                      Done done) {
  bool queued = false, wake_it = false;
  {
    MutexLock lock(mu_);
    if (!stop_ && thread_.joinable()) {
      queue_.push_back(Job{std::move(call), rotate, std::move(done)});
      queued = true;
      wake_it = sleeping_;
      sleeping_ = false;
    }
  }
  if (!queued) {
    done(absl::UnavailableError("the async slot lane is not running"));
    return;
  }
  if (wake_it) wake();
}

void SlotLane::resume() {
  bool wake_it = false;
  {
    MutexLock lock(mu_);
    if (!held_) return;
    held_ = false;
    wake_it = sleeping_;
    sleeping_ = false;
  }
  if (wake_it) wake();
}

void SlotLane::retry_now() {
  MutexLock lock(mu_);
  retry_now_ = true;
}

void SlotLane::wake() {
  if (wake_fds_[1] < 0) return;
  const char b = 1;
  // Full pipe: a wake-up is pending anyway.
  while (::write(wake_fds_[1], &b, 1) < 0 && errno == EINTR) {
  }
}

absl::Status SlotLane::connect() {
  {
    // After an outage the connection is likely dead: a fresh one, at once.
    MutexLock lock(mu_);
    if (retry_now_ && in_flight_.empty()) {
      retry_now_ = false;
      reconnect_.reset();
      conn_.reset();
    }
  }
  if (conn_ && !conn_->broken()) return absl::OkStatus();
  FLEET_RETURN_IF_ERROR(reconnect_.ready(options_.endpoint, clock_->now()));
  conn_.reset();
  auto conn =
      RedisConnection::open(options_.endpoint, options_.timeouts, options_.on_connect);
  reconnect_.record(conn.status(), options_.endpoint, clock_, logger_);
  if (!conn.ok()) return conn.status();
  conn_ = *std::move(conn);
  return absl::OkStatus();
}

void SlotLane::fail_all(std::vector<Job> jobs, const absl::Status& status) {
  for (auto& j : jobs) j.done(status);
}

// Sent jobs began writes in the ledger: they end here, doubtful (Redis may
// or may not have made the decisions; the sync sets it right).
void SlotLane::fail_in_flight(const absl::Status& status) {
  std::deque<Sent> sent;
  sent.swap(in_flight_);
  for (auto& s : sent) {
    ledger_->end_write(s.jobs.size(), true);
    fail_all(std::move(s.jobs), status);
  }
}

void SlotLane::send(std::vector<Job> jobs) {
  if (absl::Status st = connect(); !st.ok()) {
    fail_all(std::move(jobs), st);
    return;
  }
  const auto epoch = ledger_->try_begin_write(jobs.size());
  if (!epoch) {
    // A sync takes its snapshot: hold the queue (in order) until resume().
    {
      MutexLock lock(mu_);
      jobs.insert(jobs.end(), std::make_move_iterator(queue_.begin()),
                  std::make_move_iterator(queue_.end()));
      queue_ = std::move(jobs);
      held_ = true;
    }
    // The sync may have ended (and called resume()) before held_ was set.
    if (ledger_->try_begin_write(0)) resume();
    return;
  }
  const std::string epoch_text = std::to_string(*epoch);
  // Merge: each job joins the first group on the same call, in queue order.
  std::vector<std::vector<Job>> groups;
  for (auto& j : jobs) {
    std::vector<Job>* into = nullptr;
    for (auto& g : groups) {
      const Job& head = g.front();
      if (g.size() < kMaxMerged && head.eval == j.eval &&
          (head.call == j.call || head.call->same_as(*j.call))) {
        into = &g;
        break;
      }
    }
    if (into == nullptr) {
      groups.emplace_back();
      into = &groups.back();
    }
    into->push_back(std::move(j));
  }
  const auto deadline = real_clock()->now() + options_.timeouts.command;
  absl::Status st;
  std::string rotates;
  for (auto& g : groups) {
    rotates.clear();
    for (const auto& j : g) append_double(j.rotate, &rotates);
    const SlotCall& call = *g.front().call;
    const bool eval = g.front().eval;
    if (st.ok()) {
      Argv argv = {eval ? "EVAL" : "EVALSHA",
                   eval ? options_.script_body : options_.script_sha,
                   SlotCall::kKeyCount};
      for (const Argv& part : {call.keys(options_.epochs_key),
                               call.args(options_.sid, epoch_text, rotates)}) {
        argv.insert(argv.end(), part.begin(), part.end());
      }
      st = conn_->append(argv);
    }
    in_flight_.push_back(Sent{std::move(g), deadline});
  }
  if (st.ok()) st = conn_->flush();
  if (!st.ok()) fail_in_flight(st);
}

void SlotLane::complete(Sent sent, const absl::StatusOr<Reply>& reply) {
  if (reply.ok() && reply->is_error() && reply->str.compare(0, 8, "NOSCRIPT") == 0 &&
      !sent.jobs.front().eval) {
    // Redis restarted or flushed its scripts: send the body this once.
    ledger_->end_write(sent.jobs.size(), false);
    MutexLock lock(mu_);
    for (auto& j : sent.jobs) {
      j.eval = true;
      queue_.push_back(std::move(j));
    }
    return;
  }
  const SlotCall& call = *sent.jobs.front().call;
  auto results = decode_slot_reply(call, sent.jobs.size(), reply);
  // Into the record before the callbacks run: a callback may release.
  ledger_->end_write(
      sent.jobs.size(), !reply.ok() || slot_reply_stale(reply),
      [&](SessionLedger::Record& r) { record_grants(call.pool, results, r); });
  for (std::size_t i = 0; i < sent.jobs.size(); ++i) {
    sent.jobs[i].done(std::move(results[i]));
  }
}

void SlotLane::loop() {
  block_sigpipe_for_this_thread();  // redis/sigpipe.hpp
  for (;;) {
    std::vector<Job> jobs;
    {
      MutexLock lock(mu_);
      if (stop_) return;
      if (!held_) jobs.swap(queue_);
    }
    if (!jobs.empty()) send(std::move(jobs));
    {
      MutexLock lock(mu_);
      if (stop_) return;
      if (in_flight_.empty() && !queue_.empty() && !held_) continue;
      // While replies are due, what is queued meanwhile goes out when they
      // come: no wake-up per decision, and more to merge.
      sleeping_ = in_flight_.empty();
    }
    pollfd fds[2] = {{wake_fds_[0], POLLIN, 0}, {-1, POLLIN, 0}};
    int timeout_ms = -1;
    if (!in_flight_.empty()) {
      fds[1].fd = conn_->fd();
      const auto left = in_flight_.front().deadline - real_clock()->now();
      timeout_ms = static_cast<int>(std::max<long long>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1));
    }
    const int ready = ::poll(fds, in_flight_.empty() ? 1 : 2, timeout_ms);
    if (ready < 0 && errno != EINTR) {
      fail_in_flight(absl::InternalError(fmt::format("poll failed: errno {}", errno)));
      conn_.reset();
      continue;
    }
    if (fds[0].revents != 0) {
      char buf[64];
      while (::read(wake_fds_[0], buf, sizeof buf) > 0) {
      }
    }
    if (!in_flight_.empty() && fds[1].revents != 0) {
      absl::Status st = conn_->fill();
      while (st.ok() && !in_flight_.empty()) {
        auto reply = conn_->buffered();
        if (!reply.ok()) {
          st = reply.status();
          break;
        }
        if (!reply->has_value()) break;
        Sent sent = std::move(in_flight_.front());
        in_flight_.pop_front();
        complete(std::move(sent), **reply);
      }
      if (!st.ok()) fail_in_flight(st);
    } else if (!in_flight_.empty() &&
               real_clock()->now() >= in_flight_.front().deadline) {
      conn_.reset();  // replies still due would be read as the next ones'
      fail_in_flight(absl::DeadlineExceededError(
          "Redis did not answer in time (acquiring a slot); the slot may have been "
          "taken, and is freed when this session leaves or expires"));
    }
  }
}

}  // namespace fleet::internal
