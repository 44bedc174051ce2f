// A Redis reply as fleet reads it (copied out of hiredis, whose types stay
// in connection.cpp), a command's argv, and what a Redis error reply means
// for a fleet caller.
#ifndef FLEET_SRC_REDIS_REPLY_HPP_
#define FLEET_SRC_REDIS_REPLY_HPP_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "redis/directory.hpp"

namespace fleet::internal {

struct Reply {
  enum class Type { kString, kArray, kInteger, kNil, kStatus, kError };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus, kError
  long long integer = 0;
  std::vector<Reply> elements;

  bool is_error() const { return type == Type::kError; }
  bool is_nil() const { return type == Type::kNil; }
};

// Maps a Redis error reply to the status a fleet caller should see.
absl::Status status_from_error(std::string_view error);

using Argv = std::vector<std::string_view>;

// Redis Cluster's redirections, "MOVED <slot> <host>:<port>" and
// "ASK <slot> <host>:<port>": the node named. False for anything else.
bool redirect_target(std::string_view error, HostPort* to);

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_REPLY_HPP_
