#include "redis/scripts.hpp"

#include <utility>

#include "fmt/format.h"

namespace fleet::internal {
namespace {

struct Source {
  std::string_view name;
  std::string_view text;
};

constexpr Source kSources[] = {
#include "lua_sources.inc"
};

std::string_view source(std::string_view name) {
  for (const auto& s : kSources) {
    if (s.name == name) return s.text;
  }
  return {};
}

constexpr std::string_view kNames[kScriptCount] = {
    "heartbeat",    "join",          "leave",    "members", "node_state",
    "aggregate",    "owned_counter", "acquire",  "release", "renew",
    "map_write",    "map_delete",    "map_read", "sweep",   "slot_acquire",
    "slot_release", "sync",          "map_batch"};

}  // namespace

Scripts::Scripts(bool sharded) {
  // common.lua defines helpers as locals, which costs every call to create;
  // a hot script that needs none of them starts with "-- standalone".
  const std::string common(source("common"));
  for (std::size_t i = 0; i < kScriptCount; ++i) {
    const std::string_view body = source(kNames[i]);
    bodies_[i] = body.rfind("-- standalone", 0) == 0 ? std::string(body)
                                                     : common + "\n" + std::string(body);
    if (sharded) {
      // Every channel a script publishes to has the namespace's hash tag.
      constexpr std::string_view from = "redis.call('PUBLISH',", to = "redis.call('SPUBLISH',";
      for (auto at = bodies_[i].find(from); at != std::string::npos;
           at = bodies_[i].find(from, at + to.size())) {
        bodies_[i].replace(at, from.size(), to);
      }
    }
  }
}

absl::Status Scripts::load(RedisConnection& conn) {
  for (std::size_t i = 0; i < kScriptCount; ++i) {
    auto reply = conn.command({"SCRIPT", "LOAD", bodies_[i]});
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      absl::Status st = status_from_error(reply->str);
      return absl::Status(st.code(), fmt::format("loading script {}: {}", kNames[i],
                                                 std::string(st.message())));
    }
    shas_[i] = reply->str;
  }
  return absl::OkStatus();
}

absl::StatusOr<Reply> Scripts::run(const Send& send, Script script, const Argv& keys,
                                   const Argv& args) const {
  const auto i = static_cast<std::size_t>(script);
  const std::string numkeys = std::to_string(keys.size());
  Argv argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(shas_[i]);
  argv.push_back(numkeys);
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  for (int attempt = 0;; ++attempt) {
    auto reply = send(argv);
    if (!reply.ok()) return reply.status();
    if (!reply->is_error()) return reply;
    if (attempt == 0 && reply->str.compare(0, 8, "NOSCRIPT") == 0) {
      auto loaded = send({"SCRIPT", "LOAD", bodies_[i]});
      if (!loaded.ok()) return loaded.status();
      if (loaded->is_error()) return status_from_error(loaded->str);
      continue;
    }
    absl::Status st = status_from_error(reply->str);
    return absl::Status(
        st.code(), fmt::format("script {}: {}", kNames[i], std::string(st.message())));
  }
}

}  // namespace fleet::internal
