#include "fleet/types.hpp"

#include <utility>

namespace fleet {

std::string_view to_string(MemberEventType type) {
  switch (type) {
    case MemberEventType::kJoined:
      return "joined";
    case MemberEventType::kLeft:
      return "left";
    case MemberEventType::kExpired:
      return "expired";
  }
  return "unknown";
}

std::string_view to_string(Aggregation aggregation) {
  switch (aggregation) {
    case Aggregation::kSum:
      return "sum";
    case Aggregation::kAvg:
      return "avg";
    case Aggregation::kMin:
      return "min";
    case Aggregation::kMax:
      return "max";
  }
  return "unknown";
}

std::string_view to_string(LeaseKind kind) {
  switch (kind) {
    case LeaseKind::kLock:
      return "lock";
    case LeaseKind::kLeadership:
      return "leadership";
  }
  return "unknown";
}

std::string_view to_string(WatchEventType type) {
  switch (type) {
    case WatchEventType::kSet:
      return "set";
    case WatchEventType::kDeleted:
      return "deleted";
    case WatchEventType::kExpired:
      return "expired";
  }
  return "unknown";
}

MapOp MapOp::claim(std::string key, std::string value, std::chrono::milliseconds ttl) {
  return MapOp{MapOpType::kClaim, std::move(key), std::move(value), {}, ttl};
}
MapOp MapOp::put(std::string key, std::string value, std::chrono::milliseconds ttl) {
  return MapOp{MapOpType::kPut, std::move(key), std::move(value), {}, ttl};
}
MapOp MapOp::compare_and_set(std::string key, std::string expected, std::string value,
                             std::chrono::milliseconds ttl) {
  return MapOp{MapOpType::kCompareAndSet, std::move(key), std::move(value),
               std::move(expected), ttl};
}
MapOp MapOp::compare_and_delete(std::string key, std::string expected) {
  return MapOp{MapOpType::kCompareAndDelete, std::move(key), {}, std::move(expected), {}};
}
MapOp MapOp::erase(std::string key) {
  return MapOp{MapOpType::kErase, std::move(key), {}, {}, {}};
}

std::string_view to_string(ConnectionState state) {
  switch (state) {
    case ConnectionState::kConnected:
      return "CONNECTED";
    case ConnectionState::kSuspended:
      return "SUSPENDED";
    case ConnectionState::kLost:
      return "LOST";
    case ConnectionState::kReconnected:
      return "RECONNECTED";
  }
  return "unknown";
}

}  // namespace fleet
