// Hashing shared by the modules: FNV-1a, and rendezvous (highest random
// weight) choice, where every instance computes the same winner alone.
#ifndef FLEET_SRC_INTERNAL_RENDEZVOUS_HPP_
#define FLEET_SRC_INTERNAL_RENDEZVOUS_HPP_

#include <cstdint>
#include <string_view>

namespace fleet::internal {

inline std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Rendezvous weight of `candidate` for `item`: the highest one is chosen.
inline std::uint64_t rendezvous_weight(std::string_view item,
                                       std::string_view candidate) {
  std::uint64_t h = fnv1a(item) ^ (fnv1a(candidate) * 0x9e3779b97f4a7c15ull);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

}  // namespace fleet::internal

#endif  // FLEET_SRC_INTERNAL_RENDEZVOUS_HPP_
