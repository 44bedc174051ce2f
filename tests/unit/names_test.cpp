#include <string>

#include "catch.hpp"
#include "fleet/names.hpp"

namespace fleet::testing {
namespace {

TEST_CASE("validate_name accepts identifiers and rejects the rest", "[names]") {
  CHECK(validate_name("lock name", "a").ok());
  CHECK(validate_name("lock name", "room 42 {eu} \xe2\x9c\x93").ok());
  CHECK(validate_name("lock name", std::string(kMaxNameBytes, 'x')).ok());

  auto empty = validate_name("lock name", "");
  CHECK(empty.code() == absl::StatusCode::kInvalidArgument);
  CHECK(empty.message() == "lock name must not be empty");

  auto long_name = validate_name("node id", std::string(kMaxNameBytes + 1, 'x'));
  CHECK(long_name.code() == absl::StatusCode::kInvalidArgument);
  CHECK(long_name.message() == "node id is 201 bytes long; the limit is 200");

  auto control = validate_name("map name", "ab\ncd");
  CHECK(control.code() == absl::StatusCode::kInvalidArgument);
  CHECK(control.message() == "map name has a control character (0x0a) at byte 2");
}

TEST_CASE("keys and values take any bytes within their limits", "[names]") {
  CHECK(validate_key("map key", std::string("\n\0\x01", 3)).ok());
  CHECK(validate_key("map key", "").code() == absl::StatusCode::kInvalidArgument);
  CHECK(validate_key("map key", std::string(kMaxKeyBytes + 1, 'k')).code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(validate_value("payload", "").ok());
  CHECK(validate_value("payload", std::string(kMaxValueBytes, 'v')).ok());
  CHECK(validate_value("payload", std::string(kMaxValueBytes + 1, 'v')).code() ==
        absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fleet::testing
