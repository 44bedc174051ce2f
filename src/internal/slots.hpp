// Slot pools, shared by both backends: argument checks, and the choice of
// SlotRequest's documented rule. The Redis backend runs the same rule in
// Lua (src/redis/lua/slot_acquire.lua); the conformance suite holds the two
// to the same answers.
#ifndef FLEET_SRC_INTERNAL_SLOTS_HPP_
#define FLEET_SRC_INTERNAL_SLOTS_HPP_

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "fleet/types.hpp"

namespace fleet::internal {

absl::Status validate_slot_request(std::string_view pool, const SlotRequest& request);

// The index of the chosen candidate, or nullopt if none has room. `used`
// returns the slots in use on a target.
std::optional<std::size_t> choose_slot(
    const SlotRequest& request,
    const std::function<std::int64_t(const std::string&)>& used);

}  // namespace fleet::internal

#endif  // FLEET_SRC_INTERNAL_SLOTS_HPP_
