// fleet's version.
#ifndef FLEET_VERSION_HPP_
#define FLEET_VERSION_HPP_

#define FLEET_VERSION_MAJOR 0
#define FLEET_VERSION_MINOR 1
#define FLEET_VERSION_PATCH 0

namespace fleet {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace fleet

#endif  // FLEET_VERSION_HPP_
