// RedisSession: node state, aggregates, counters and slot pools. Writes to
// session-bound state go through the session's ledger (redis/ledger.hpp):
// each carries the sync epoch, and its outcome goes into the record.
#include <algorithm>
#include <cstdlib>

#include "fleet/names.hpp"
#include "fmt/format.h"
#include "internal/slots.hpp"
#include "internal/validate.hpp"
#include "redis/codec.hpp"
#include "redis/redis_session.hpp"

namespace fleet::internal {

// ---- node state ------------------------------------------------------------------
// The record takes the view first; if Redis does not take it too (no reply,
// or the session must sync first) the sync publishes the record.

absl::Status RedisSession::publish_node_state(
    std::string_view node_id, const std::map<std::string, double>& metrics) {
  FLEET_RETURN_IF_ERROR(validate_name("node id", node_id));
  FLEET_RETURN_IF_ERROR(validate_metrics(metrics));
  const std::string encoded = encode_metrics(metrics);
  FLEET_RETURN_IF_ERROR(validate_value("node state", encoded));
  return write_view(node_id, &encoded);
}

absl::Status RedisSession::remove_node_state(std::string_view node_id) {
  FLEET_RETURN_IF_ERROR(validate_name("node id", node_id));
  return write_view(node_id, nullptr);
}

absl::Status RedisSession::write_view(std::string_view node_id,
                                      const std::string* encoded) {
  const std::string node(node_id);
  const std::uint64_t epoch = ledger_.begin_write();
  const std::string e = std::to_string(epoch);
  auto r = run(Script::kNodeState,
               {keys_.node(node_id), keys_.node_index, keys_.views_gen, keys_.epochs},
               {sid_, node_id, encoded ? std::string_view(*encoded) : std::string_view(),
                encoded ? "1" : "0", e});
  const bool stale = r.ok() && r->integer == -1;
  ledger_.end_write(1, !r.ok() || stale, [&](SessionLedger::Record& rec) {
    if (encoded) {
      rec.views[node] = *encoded;
    } else {
      rec.views.erase(node);
    }
  });
  if (!r.ok()) return r.status();
  if (stale && !await_sync(epoch)) {
    return absl::UnavailableError(
        "this session is being re-established in Redis; the view is published once it "
        "is");
  }
  return absl::OkStatus();
}

namespace {

// Parses aggregate.lua's payload: "<skipped>\n" then one line per node,
// "<node>\t<reporters>(\t<metric>\t<value>\t<count>)*".
bool parse_aggregates(std::string_view payload, std::int64_t* skipped,
                      std::vector<NodeAggregate>* out) {
  auto nl = payload.find('\n');
  if (nl == std::string_view::npos || !parse_int(payload.substr(0, nl), skipped))
    return false;
  payload.remove_prefix(nl + 1);
  while (!payload.empty()) {
    nl = payload.find('\n');
    std::string_view line = payload.substr(0, nl);
    payload.remove_prefix(nl == std::string_view::npos ? payload.size() : nl + 1);
    std::vector<std::string_view> f;
    for (std::size_t pos = 0;;) {
      const auto tab = line.find('\t', pos);
      f.push_back(line.substr(pos, tab == std::string_view::npos ? tab : tab - pos));
      if (tab == std::string_view::npos) break;
      pos = tab + 1;
    }
    std::uint64_t reporters = 0;
    if (f.size() < 2 || (f.size() - 2) % 3 != 0 || !parse_u64(f[1], &reporters))
      return false;
    NodeAggregate agg;
    agg.node_id = std::string(f[0]);
    agg.reporters = static_cast<std::uint32_t>(reporters);
    for (std::size_t i = 2; i < f.size(); i += 3) {
      AggregatedMetric m;
      std::uint64_t count = 0;
      const std::string text(f[i + 1]);
      char* end = nullptr;
      m.value = std::strtod(text.c_str(), &end);
      if (end != text.c_str() + text.size() || !parse_u64(f[i + 2], &count)) return false;
      m.reporters = static_cast<std::uint32_t>(count);
      agg.metrics.emplace(std::string(f[i]), m);
    }
    out->push_back(std::move(agg));
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<NodeAggregate>> RedisSession::run_aggregate(
    std::string_view node_id, const AggregationSpec& spec) {
  const std::string ops = encode_ops(spec);
  const std::string_view default_op = to_string(spec.default_aggregation);
  const std::string cache_key = std::string(default_op) + "\n" + ops;
  std::string stamp;
  if (node_id.empty()) {
    MutexLock lock(aggregate_mu_);
    if (auto it = aggregates_.find(cache_key); it != aggregates_.end())
      stamp = it->second.first;
  }
  auto r = run(Script::kAggregate,
               {keys_.sessions, keys_.node_index, keys_.views_gen, keys_.aggregate_cache},
               {keys_.prefix, ops, default_op, node_id, stamp});
  if (!r.ok()) return r.status();
  if (r->str == "=") {
    MutexLock lock(aggregate_mu_);
    if (auto it = aggregates_.find(cache_key); it != aggregates_.end())
      return it->second.second;
    return absl::InternalError("aggregate: Redis confirmed a result this session lacks");
  }
  // "<gen>\n<valid until>\n<payload>"
  const std::string_view reply = r->str;
  const auto a = reply.find('\n');
  const auto b = a == std::string_view::npos ? a : reply.find('\n', a + 1);
  std::int64_t skipped = 0;
  std::vector<NodeAggregate> out;
  if (b == std::string_view::npos ||
      !parse_aggregates(reply.substr(b + 1), &skipped, &out)) {
    return absl::InternalError("aggregate: unexpected reply from Redis");
  }
  if (skipped > 0)
    logger_.warn("aggregate: skipped {} malformed node views or values", skipped);
  std::sort(out.begin(), out.end(),
            [](const auto& x, const auto& y) { return x.node_id < y.node_id; });
  if (node_id.empty()) {
    MutexLock lock(aggregate_mu_);
    if (aggregates_.size() >= 16) aggregates_.clear();  // a few specs in practice
    aggregates_[cache_key] = {std::string(reply.substr(0, b)), out};
  }
  return out;
}

absl::StatusOr<std::vector<NodeAggregate>> RedisSession::aggregate_all(
    const AggregationSpec& spec) {
  FLEET_RETURN_IF_ERROR(validate_spec(spec));
  return run_aggregate("", spec);
}

absl::StatusOr<std::optional<NodeAggregate>> RedisSession::aggregate(
    std::string_view node_id, const AggregationSpec& spec) {
  FLEET_RETURN_IF_ERROR(validate_name("node id", node_id));
  FLEET_RETURN_IF_ERROR(validate_spec(spec));
  auto one = run_aggregate(node_id, spec);
  if (!one.ok()) return one.status();
  if (one->empty()) return std::optional<NodeAggregate>();
  return std::optional<NodeAggregate>(std::move(one->front()));
}

// ---- counters
// -------------------------------------------------------------------------------

absl::StatusOr<std::int64_t> RedisSession::counter_add(std::string_view name,
                                                       std::int64_t delta) {
  FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
  const std::string d = std::to_string(delta);
  auto r = command({"HINCRBY", keys_.counters, name, d});
  if (!r.ok()) return r.status();
  return static_cast<std::int64_t>(r->integer);
}

absl::StatusOr<std::int64_t> RedisSession::counter_get(std::string_view name) {
  FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
  auto r = command({"HGET", keys_.counters, name});
  if (!r.ok()) return r.status();
  if (r->is_nil()) return 0;
  std::int64_t v = 0;
  if (!parse_int(r->str, &v)) {
    return absl::DataLossError(
        fmt::format("counter '{}' holds a malformed value in {}", name, keys_.counters));
  }
  return v;
}

absl::StatusOr<std::int64_t> RedisSession::owned_counter_add(std::string_view name,
                                                             std::int64_t delta) {
  FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
  const std::string d = std::to_string(delta);
  const std::string counter(name);
  for (int attempt = 0;; ++attempt) {
    const std::uint64_t epoch = ledger_.begin_write();
    const std::string e = std::to_string(epoch);
    auto r = run(Script::kOwnedCounter,
                 {keys_.owned(name), keys_.owned_index, keys_.sessions, keys_.epochs},
                 {sid_, name, d, e});
    const bool stale = r.ok() && !r->elements.empty() && r->elements[0].integer == -1;
    const bool added = r.ok() && !stale && r->elements.size() == 2;
    ledger_.end_write(1, !r.ok() || stale, [&](SessionLedger::Record& rec) {
      if (!added) return;
      std::int64_t& mine = rec.owned[counter];
      mine += delta;  // Redis checked the overflow (HINCRBY)
      if (mine == 0) rec.owned.erase(counter);
    });
    if (!r.ok()) return r.status();
    if (added) return static_cast<std::int64_t>(r->elements[1].integer);
    if (!stale) return absl::InternalError("owned_counter: unexpected reply from Redis");
    if (attempt == 2 || !await_sync(epoch)) {
      return absl::UnavailableError(
          "this session is being re-established in Redis; nothing was added");
    }
  }
}

absl::StatusOr<std::int64_t> RedisSession::owned_counter_get(std::string_view name) {
  FLEET_RETURN_IF_ERROR(validate_name("counter name", name));
  auto r = run(Script::kOwnedCounter,
               {keys_.owned(name), keys_.owned_index, keys_.sessions, keys_.epochs},
               {sid_, name, "", ""});
  if (!r.ok()) return r.status();
  if (r->elements.size() != 2) {
    return absl::InternalError("owned_counter: unexpected reply from Redis");
  }
  return static_cast<std::int64_t>(r->elements[1].integer);
}

// ---- slot pools ----------------------------------------------------------------

absl::StatusOr<std::shared_ptr<const SlotCall>> RedisSession::slot_call(
    std::string_view pool, const SlotRequest& request) {
  {
    MutexLock lock(calls_mu_);
    auto it = calls_.find(pool);
    if (it != calls_.end() && it->second->matches(pool, request)) return it->second;
  }
  FLEET_RETURN_IF_ERROR(validate_slot_request(pool, request));
  auto call = std::make_shared<const SlotCall>(keys_.slots(pool),
                                               keys_.session_slots(sid_), pool, request);
  MutexLock lock(calls_mu_);
  if (calls_.size() >= 64) calls_.clear();  // a few pools in practice
  calls_.insert_or_assign(std::string(pool), call);
  return call;
}

absl::StatusOr<std::optional<SlotGrant>> RedisSession::acquire_slot(
    std::string_view pool, const SlotRequest& request) {
  auto call = slot_call(pool, request);
  if (!call.ok()) return call.status();
  std::string rotate;
  append_double(request.rotate, &rotate);
  const SlotCall& c = **call;
  for (int attempt = 0;; ++attempt) {
    FLEET_RETURN_IF_ERROR(check_grace());
    const std::uint64_t epoch = ledger_.begin_write();
    const std::string e = std::to_string(epoch);
    auto reply = run(Script::kSlotAcquire, c.keys(keys_.epochs), c.args(sid_, e, rotate));
    const bool stale = slot_reply_stale(reply);
    auto results = decode_slot_reply(c, 1, reply);
    // No reply: Redis may have taken a slot nobody holds; the sync frees it.
    ledger_.end_write(1, !reply.ok() || stale, [&](SessionLedger::Record& r) {
      record_grants(c.pool, results, r);
    });
    if (!stale || attempt == 2 || !await_sync(epoch)) return std::move(results.front());
  }
}

absl::Status RedisSession::acquire_slot_async(std::string_view pool,
                                              const SlotRequest& request,
                                              SlotCallback done) {
  if (!done) return absl::InvalidArgumentError("acquire_slot_async needs a callback");
  // One router's requests between two changes of its view are the same
  // call: found in calls_, checked once, encoded once, merged by pointer.
  auto call = slot_call(pool, request);
  if (!call.ok()) {
    done(call.status());
    return absl::OkStatus();
  }
  if (absl::Status st = check_grace(); !st.ok()) {
    done(std::move(st));
    return absl::OkStatus();
  }
  slot_lane().submit(*std::move(call), request.rotate, std::move(done));
  return absl::OkStatus();
}

SlotLane& RedisSession::slot_lane() {
  MutexLock lock(lane_mu_);
  if (!lane_) {
    const Script script = Script::kSlotAcquire;
    lane_ = std::make_unique<SlotLane>(
        SlotLane::Options{pool_.endpoint(),
                          {options_.connect_timeout, options_.command_timeout},
                          options_.reconnect_backoff_min,
                          options_.reconnect_backoff_max,
                          keys_.epochs,
                          sid_,
                          scripts_.sha(script),
                          scripts_.body(script),
                          [this](RedisConnection& c) { return check_incarnation(c); }},
        &ledger_, clock_, &logger_);
  }
  return *lane_;
}

// The record lets the slot go at once; Redis follows now, or at the sync.
absl::Status RedisSession::release_slot(std::string_view pool, std::string_view target) {
  FLEET_RETURN_IF_ERROR(validate_name("pool name", pool));
  FLEET_RETURN_IF_ERROR(validate_name("slot target", target));
  const auto epoch = ledger_.begin_release(std::string(pool), std::string(target));
  if (!epoch) {
    return absl::FailedPreconditionError(
        fmt::format("this session holds no slot on '{}' in pool '{}'", target, pool));
  }
  const std::string e = std::to_string(*epoch);
  auto r = run(Script::kSlotRelease,
               {keys_.slots(pool), keys_.session_slots(sid_), keys_.epochs},
               {pool, target, sid_, e});
  // Not freed in Redis (no reply, stale, or Redis had lost it): the sync
  // makes Redis match the record.
  const bool freed = r.ok() && r->integer == 1;
  ledger_.end_write(1, !freed);
  if (!freed) {
    logger_.log(LogLevel::kDebug,
                "release of a slot on '{}' in pool '{}' left to the sync: {}", target,
                pool, r.ok() ? std::to_string(r->integer) : r.status().ToString());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::int64_t>> RedisSession::slot_usage(
    std::string_view pool) {
  FLEET_RETURN_IF_ERROR(validate_name("pool name", pool));
  const std::string key = keys_.slots(pool);
  auto r = command({"HGETALL", key});
  if (!r.ok()) return r.status();
  std::map<std::string, std::int64_t> out;
  for (std::size_t i = 0; i + 1 < r->elements.size(); i += 2) {
    std::int64_t n = 0;
    if (!parse_int(r->elements[i + 1].str, &n)) {
      logger_.log(LogLevel::kWarning, "skipping malformed slot count of '{}' in {}",
                  r->elements[i].str, key);
      continue;
    }
    if (n > 0) out[r->elements[i].str] = n;
  }
  return out;
}

}  // namespace fleet::internal
