// Helpers shared by the conformance cases (not by the backends).
#ifndef FLEET_TESTS_CONFORMANCE_CASES_HPP_
#define FLEET_TESTS_CONFORMANCE_CASES_HPP_

#include <string>
#include <vector>

#include "fleet/coordinator.hpp"
#include "status.hpp"

namespace fleet::testing {

inline InstanceInfo info(const std::string& id) {
  InstanceInfo i;
  i.id = id;
  i.hostname = "host-" + id;
  i.version = "1.2.3";
  i.metadata["zone"] = "eu-1";
  return i;
}

// Live members' ids, in order (REQUIREs that members() works).
inline std::vector<std::string> member_ids(Coordinator& c) {
  std::vector<std::string> ids;
  for (const auto& m : unwrap(c.members())) ids.push_back(m.info.id);
  return ids;
}

}  // namespace fleet::testing

#endif  // FLEET_TESTS_CONFORMANCE_CASES_HPP_
