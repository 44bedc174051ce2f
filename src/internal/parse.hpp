// The one parser of fleet's own text formats: decimal integers, the
// length-prefixed fields "<n>:<bytes>" of binary-safe records, and
// newline-terminated header fields. Every function accepts any bytes and
// answers false (or empty) on malformed input: never a crash, never an
// exception.
#ifndef FLEET_SRC_INTERNAL_PARSE_HPP_
#define FLEET_SRC_INTERNAL_PARSE_HPP_

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

namespace fleet::internal {

// The whole of `text` as a decimal integer of type T (no sign for an
// unsigned T, no spaces, no '+'); false if it is not one or overflows T.
template <typename T>
bool parse_int(std::string_view text, T* out) {
  static_assert(std::is_integral_v<T>, "parse_int parses integers");
  if (text.empty()) return false;
  T v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return false;
  *out = v;
  return true;
}

// parse_int, and min <= value <= max.
template <typename T>
bool parse_int_in(std::string_view text, T min, T max, T* out) {
  T v{};
  if (!parse_int(text, &v) || v < min || v > max) return false;
  *out = v;
  return true;
}

inline bool parse_u64(std::string_view text, std::uint64_t* out) {
  return parse_int(text, out);
}

// A TCP port: 1..65535.
inline bool parse_port(std::string_view text, int* port) {
  return parse_int_in(text, 1, 65535, port);
}

// Appends "<n>:<field>" (n: the field's size in decimal).
void put_field(std::string* out, std::string_view field);

// Takes one "<n>:<bytes>" field from the front of `*in`; false (and `*in`
// unchanged) when the front is not one.
bool take_field(std::string_view* in, std::string_view* field);

// The first `n` newline-terminated fields of `value`, and in `*rest` what
// follows them; empty when `value` has fewer than `n` newlines.
std::vector<std::string_view> split_lines(std::string_view value, std::size_t n,
                                          std::string_view* rest);

}  // namespace fleet::internal

#endif  // FLEET_SRC_INTERNAL_PARSE_HPP_
