#include "redis/scripts.hpp"

#include <utility>

#include "fmt/format.h"
#include "internal/validate.hpp"

namespace fleet::internal {
#include "lua_sources.inc"

Scripts::Scripts(bool cluster) : strict_keys_(cluster) {
  // common.lua defines helpers as locals, which costs every call to create;
  // a hot script that needs none of them starts with "-- standalone".
  const std::string prelude = std::string(cluster ? "local fleet_cluster = true\n"
                                                  : "local fleet_cluster = false\n") +
                              std::string(kCommonLua) + "\n";
  for (std::size_t i = 0; i < kScriptCount; ++i) {
    const std::string_view body = kScriptSources[i];
    bodies_[i] = body.rfind("-- standalone", 0) == 0 ? std::string(body)
                                                     : prelude + std::string(body);
  }
}

absl::Status Scripts::load(RedisConnection& conn) {
  for (std::size_t i = 0; i < kScriptCount; ++i) {
    auto reply = conn.command({"SCRIPT", "LOAD", bodies_[i]});
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      absl::Status st = status_from_error(reply->str);
      return absl::Status(st.code(), fmt::format("loading script {}: {}", kScriptNames[i],
                                                 std::string(st.message())));
    }
    shas_[i] = reply->str;
  }
  return absl::OkStatus();
}

absl::Status Scripts::preload(RedisConnection& conn) const {
  for (std::size_t i = 0; i < kScriptCount; ++i) {
    FLEET_RETURN_IF_ERROR(conn.append({"SCRIPT", "LOAD", bodies_[i]}));
  }
  FLEET_RETURN_IF_ERROR(conn.flush());
  for (std::size_t i = 0; i < kScriptCount; ++i) {
    auto reply = conn.read();
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) return status_from_error(reply->str);
  }
  return absl::OkStatus();
}

namespace {

// How many keys one call may add (nodes or counters of a namespace, dead
// sessions swept at once), and how many are remembered for the next call.
constexpr std::size_t kMaxExtraKeys = 4096;
constexpr std::size_t kMaxRememberedKeys = 256;
constexpr int kMaxKeyRounds = 6;

bool asks_for_keys(const Reply& r) {
  return r.type == Reply::Type::kArray && !r.elements.empty() &&
         r.elements[0].type == Reply::Type::kString && r.elements[0].str == "fleet:keys";
}

}  // namespace

absl::StatusOr<Reply> Scripts::run(const Send& send, Script script, const Argv& keys,
                                   const Argv& args) const {
  const auto i = static_cast<std::size_t>(script);
  std::vector<std::string> extra;  // given beyond `keys` (only in a cluster)
  if (strict_keys_) {
    MutexLock lock(extra_mu_);
    extra = extra_keys_[i];
  }
  std::vector<std::string> asked;  // what this call's rounds asked for
  bool loaded = false;
  for (int round = 0;; ++round) {
    const std::string numkeys = std::to_string(keys.size() + extra.size());
    Argv argv;
    argv.reserve(3 + keys.size() + extra.size() + args.size());
    argv.push_back("EVALSHA");
    argv.push_back(shas_[i]);
    argv.push_back(numkeys);
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(), args.begin(), args.end());
    auto reply = send(argv);
    if (!reply.ok()) return reply.status();
    if (!reply->is_error()) {
      if (!asks_for_keys(*reply)) return reply;
      for (std::size_t k = 1; k < reply->elements.size(); ++k) {
        asked.push_back(reply->elements[k].str);
      }
      if (round + 1 >= kMaxKeyRounds || asked.size() > kMaxExtraKeys) {
        return absl::ResourceExhaustedError(fmt::format(
            "script {} needs more keys than fleet passes one script call in a cluster "
            "({}): too many nodes, counters or expiries in one namespace",
            kScriptNames[i], kMaxExtraKeys));
      }
      // Remembered keys may be stale (a node gone, a session swept): when
      // they grow too many, only this call's are kept.
      const std::size_t added = reply->elements.size() - 1;
      if (extra.size() + added > kMaxRememberedKeys) {
        extra = asked;
      } else {
        extra.insert(extra.end(), asked.end() - static_cast<std::ptrdiff_t>(added),
                     asked.end());
      }
      MutexLock lock(extra_mu_);
      extra_keys_[i] =
          extra.size() <= kMaxRememberedKeys ? extra : std::vector<std::string>{};
      continue;
    }
    if (!loaded && reply->str.compare(0, 8, "NOSCRIPT") == 0) {
      loaded = true;
      auto load = send({"SCRIPT", "LOAD", bodies_[i]});
      if (!load.ok()) return load.status();
      if (load->is_error()) return status_from_error(load->str);
      continue;
    }
    absl::Status st = status_from_error(reply->str);
    return absl::Status(st.code(), fmt::format("script {}: {}", kScriptNames[i],
                                               std::string(st.message())));
  }
}

}  // namespace fleet::internal
