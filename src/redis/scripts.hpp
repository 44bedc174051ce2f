// The Lua scripts of the Redis backend (src/redis/lua/*.lua, embedded at
// build time) and how they run: EVALSHA, and on NOSCRIPT — Redis restarted
// or flushed its script cache — SCRIPT LOAD and one retry.
#ifndef FLEET_SRC_REDIS_SCRIPTS_HPP_
#define FLEET_SRC_REDIS_SCRIPTS_HPP_

#include <array>
#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "internal/mutex.hpp"
#include "lua_scripts.hpp"
#include "redis/connection.hpp"

namespace fleet::internal {

// Script, kScriptCount and kScriptNames come from the .lua files
// (cmake/FleetEmbedLua.cmake): one Script per file, kSlotAcquire for
// slot_acquire.lua.

class Scripts {
 public:
  // Assembles the bodies: a first line that says whether this is a Redis
  // Cluster ("local fleet_cluster = true": every key a script touches must
  // be in KEYS, and publish() uses sharded pub/sub), then common.lua, then
  // the script. A script that starts with "-- standalone" gets neither.
  explicit Scripts(bool cluster = false);

  // SCRIPT LOAD of every script; remembers their SHA1s.
  absl::Status load(RedisConnection& conn);
  // SCRIPT LOAD of every script on another server (their SHA1s are known).
  absl::Status preload(RedisConnection& conn) const;

  // Sends one command and returns its reply (ConnectionPool::command, or
  // RedisConnection::command).
  using Send = std::function<absl::StatusOr<Reply>(const Argv&)>;

  // Runs a script. Redis error replies become statuses (status_from_error).
  // In a cluster, a script that answers {'fleet:keys', ...} (it needs keys
  // it was not given: common.lua) runs again with them; the keys are
  // remembered for that script's next calls (a few dozen at most).
  absl::StatusOr<Reply> run(const Send& send, Script script, const Argv& keys,
                            const Argv& args) const;
  const std::string& sha(Script script) const {
    return shas_[static_cast<std::size_t>(script)];
  }
  const std::string& body(Script script) const {
    return bodies_[static_cast<std::size_t>(script)];
  }

  absl::StatusOr<Reply> run(RedisConnection& conn, Script script, const Argv& keys,
                            const Argv& args) const {
    return run([&conn](const Argv& argv) { return conn.command(argv); }, script, keys,
               args);
  }

 private:
  std::array<std::string, kScriptCount> bodies_;
  std::array<std::string, kScriptCount> shas_;
  const bool strict_keys_;  // a cluster: scripts may ask for keys
  // Cluster: keys scripts asked for, given up front next time.
  mutable Mutex extra_mu_;
  mutable std::array<std::vector<std::string>, kScriptCount> extra_keys_
      ABSL_GUARDED_BY(extra_mu_);
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_SCRIPTS_HPP_
