#include "module/requests.hpp"

#include <utility>

#include "fmt/format.h"
#include "internal/parse.hpp"

namespace fleet::internal {
namespace {

constexpr std::string_view kRequestMagic = "rq1";
constexpr std::string_view kReplyMagic = "rs1";
constexpr std::uint64_t kMaxStatusCode = 16;  // absl::StatusCode::kUnauthenticated

}  // namespace

Requests::Requests(Coordinator& c, std::string prefix, const Logger& log, Handler handler)
    : c_(c), prefix_(std::move(prefix)), log_(log), handler_(std::move(handler)) {}

Requests::~Requests() { stop(); }

absl::Status Requests::attach(const std::string& me) {
  {
    MutexLock lock(mu_);
    me_ = me;
  }
  auto replies = c_.subscribe(fmt::format("{}/resp/{}", prefix_, me),
                              [this](const Message& m) { on_reply(m); });
  if (!replies.ok()) return replies.status();
  replies_sub_ = std::move(*replies);
  auto requests = c_.subscribe(fmt::format("{}/req", prefix_),
                               [this](const Message& m) { on_request(m); });
  if (!requests.ok()) return requests.status();
  requests_sub_ = std::move(*requests);
  return absl::OkStatus();
}

void Requests::stop() {
  requests_sub_.cancel();
  replies_sub_.cancel();
  {
    MutexLock lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  handlers_.cancel(slot_);
  handlers_.stop();
}

RequestResult Requests::ask(std::string_view topic, std::string_view body,
                            std::set<std::string> expected,
                            std::chrono::milliseconds timeout) {
  RequestResult out;
  Clock* clock = c_.clock();
  const auto deadline = clock->now() + timeout;
  std::uint64_t id;
  std::string me;
  {
    MutexLock lock(mu_);
    id = ++next_id_;
    me = me_;
    pending_[id].expected = expected;
  }
  std::string msg = fmt::format("{}\n{}\n{}\n{}\n", kRequestMagic, id, me, topic);
  msg.append(body);
  if (on_handler_thread() && expected.count(me) != 0) {
    // This thread would answer us: answer here, then ask the others. (This
    // thread hears the request too, later: it skips it then.)
    {
      MutexLock lock(mu_);
      if (answered_inline_.size() > 1000) answered_inline_.clear();  // lost ones
      answered_inline_.insert(std::to_string(id));
    }
    take_reply(answer(std::to_string(id), topic, body));
  }
  const absl::Status st = c_.publish(fmt::format("{}/req", prefix_), msg);
  Pending done;
  {
    MutexLock lock(mu_);
    while (st.ok() && !stopped_ && clock->now() < deadline) {
      const Pending& p = pending_[id];
      if (p.replies.size() >= p.expected.size()) break;
      clock->wait_until(lock.native(), cv_, deadline);
    }
    done = std::move(pending_[id]);
    pending_.erase(id);
  }
  for (auto& [inst, reply] : done.replies) out.replies.push_back(std::move(reply));
  for (const auto& inst : done.expected) {
    if (done.replies.count(inst) == 0) out.missing.push_back(inst);
  }
  if (!st.ok()) {
    out.status = st;
  } else if (!out.missing.empty()) {
    std::string names;
    for (const auto& m : out.missing) names += (names.empty() ? "" : ", ") + m;
    out.status = absl::DeadlineExceededError(fmt::format(
        "request '{}': {} of {} instance(s) did not answer within {} ms: {}", topic,
        out.missing.size(), done.expected.size(), timeout.count(), names));
  }
  return out;
}

std::string Requests::answer(std::string_view id, std::string_view topic,
                             std::string_view body) {
  absl::StatusOr<std::string> result = handler_(topic, body);
  std::string me;
  {
    MutexLock lock(mu_);
    me = me_;
  }
  std::string reply =
      fmt::format("{}\n{}\n{}\n{}\n", kReplyMagic, id, me,
                  result.ok() ? 0 : static_cast<int>(result.status().code()));
  reply.append(result.ok() ? *result : std::string(result.status().message()));
  return reply;
}

void Requests::on_request(const Message& m) {
  std::string_view body;
  auto f = split_lines(m.payload, 4, &body);
  if (f.size() != 4 || f[0] != kRequestMagic || f[2].empty()) {
    log_.warn("skipping a malformed request");
    return;
  }
  // Off the event thread: a handler may take its time, and may call back.
  handlers_.post(slot_, [this, payload = m.payload] {
    std::string_view body;
    auto f = split_lines(payload, 4, &body);
    {
      MutexLock lock(mu_);
      // Our own request, already answered inline by this thread.
      if (f[2] == me_ && answered_inline_.erase(std::string(f[1])) != 0) return;
    }
    const std::string reply = answer(f[1], f[3], body);
    absl::Status st = c_.publish(fmt::format("{}/resp/{}", prefix_, f[2]), reply);
    if (!st.ok()) {
      log_.warn("could not answer request {} of '{}': {}", f[1], f[2],
                std::string(st.message()));
    }
  });
}

void Requests::on_reply(const Message& m) { take_reply(m.payload); }

void Requests::take_reply(std::string_view payload) {
  std::string_view body;
  auto f = split_lines(payload, 4, &body);
  std::uint64_t id = 0, code = 0;
  if (f.size() != 4 || f[0] != kReplyMagic || !parse_u64(f[1], &id) ||
      !parse_u64(f[3], &code) || code > kMaxStatusCode || f[2].empty()) {
    log_.warn("skipping a malformed reply");
    return;
  }
  {
    MutexLock lock(mu_);
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // too late
    Reply r;
    r.instance = std::string(f[2]);
    if (code == 0) {
      r.body = std::string(body);
    } else {
      r.status = absl::Status(static_cast<absl::StatusCode>(code), std::string(body));
    }
    it->second.expected.insert(r.instance);  // joined meanwhile: count it
    it->second.replies[r.instance] = std::move(r);
  }
  cv_.notify_all();
}

}  // namespace fleet::internal
