// Catch2 2.x (Debian) and 3.x (Conan/vcpkg) behind one include.
#ifndef FLEET_TESTS_SUPPORT_CATCH_HPP_
#define FLEET_TESTS_SUPPORT_CATCH_HPP_

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
// Catch2 2.x puts Approx in the global namespace; 3.x only in Catch.
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif

#include <string>

#include "absl/status/status.h"

namespace Catch {
template <>
struct StringMaker<absl::StatusCode> {
  static std::string convert(absl::StatusCode code) {
    return absl::StatusCodeToString(code);
  }
};
template <>
struct StringMaker<absl::Status> {
  static std::string convert(const absl::Status& status) { return status.ToString(); }
};
}  // namespace Catch

#endif  // FLEET_TESTS_SUPPORT_CATCH_HPP_
