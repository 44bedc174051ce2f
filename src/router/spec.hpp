// The registry's record of a node: the router's nodes map holds one record
// per node id (src/internal/record.hpp, kind "gn1": address, region name,
// whether it has coordinates, lat and lon if so, capacity, state, the
// number of labels, the labels; docs/redis-keys.md).
#ifndef FLEET_SRC_ROUTER_SPEC_HPP_
#define FLEET_SRC_ROUTER_SPEC_HPP_

#include <optional>
#include <string>

#include "fleet/router.hpp"

namespace fleet::router::internal_router {

std::string encode_spec(const NodeSpec& n);
// nullopt for a malformed record (skipped with a warning by the caller).
std::optional<NodeSpec> decode_spec(const std::string& id, const std::string& text);

}  // namespace fleet::router::internal_router

#endif  // FLEET_SRC_ROUTER_SPEC_HPP_
