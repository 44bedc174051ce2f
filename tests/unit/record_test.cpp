// The modules' one record format (src/internal/record.hpp) and the parser
// under it (src/internal/parse.hpp): any bytes round-trip; anything
// malformed is refused, never a crash.
#include <limits>
#include <string>

#include "catch.hpp"
#include "internal/parse.hpp"
#include "internal/record.hpp"

namespace fleet::testing {
namespace {

using internal::RecordReader;
using internal::RecordWriter;

TEST_CASE("a record round-trips any bytes, numbers and doubles exactly",
          "[unit][record]") {
  const std::string binary("a\nb\0c:1:", 8);
  const double third = 1.0 / 3.0;
  std::string v = RecordWriter("kx1")
                      .add(binary)
                      .add(std::string())
                      .add(std::uint64_t{18446744073709551615ull})
                      .add(std::int64_t{-42})
                      .add(third)
                      .add(true)
                      .str();
  RecordReader r(v, "kx1");
  std::string s, empty;
  std::uint64_t big = 0;
  std::int64_t neg = 0;
  double d = 0;
  bool flag = false;
  REQUIRE(r.next(&s));
  REQUIRE(r.next(&empty));
  REQUIRE(r.next(&big));
  REQUIRE(r.next(&neg));
  REQUIRE(r.next(&d));
  REQUIRE(r.next(&flag));
  CHECK(r.done());
  CHECK(s == binary);
  CHECK(empty.empty());
  CHECK(big == std::numeric_limits<std::uint64_t>::max());
  CHECK(neg == -42);
  CHECK(d == third);  // exactly
  CHECK(flag);
}

TEST_CASE("a malformed record is refused", "[unit][record]") {
  std::string_view f;
  std::uint64_t n = 0;
  double d = 0;
  CHECK_FALSE(RecordReader("kx2\n1:a", "kx1").ok());  // another kind
  CHECK_FALSE(RecordReader("kx1", "kx1").ok());       // no magic line
  RecordReader truncated("kx1\n5:ab", "kx1");
  CHECK_FALSE(truncated.next(&f));
  CHECK_FALSE(truncated.ok());
  RecordReader extra("kx1\n1:ax", "kx1");
  CHECK(extra.next(&f));
  CHECK_FALSE(extra.done());  // trailing bytes
  RecordReader not_number("kx1\n2:1x", "kx1");
  CHECK_FALSE(not_number.next(&n));
  RecordReader nan("kx1\n3:nan", "kx1");
  CHECK_FALSE(nan.next(&d));
  RecordReader huge_length("kx1\n99999999999:a", "kx1");  // over 10 digits
  CHECK_FALSE(huge_length.next(&f));
  RecordReader negative_unsigned("kx1\n2:-1", "kx1");
  CHECK_FALSE(negative_unsigned.next(&n));
}

TEST_CASE("the parser takes whole decimal integers and length-prefixed fields only",
          "[unit][record]") {
  int port = 0;
  CHECK(internal::parse_port("6379", &port));
  CHECK(port == 6379);
  CHECK_FALSE(internal::parse_port("0", &port));
  CHECK_FALSE(internal::parse_port("65536", &port));
  CHECK_FALSE(internal::parse_port(" 80", &port));
  std::uint64_t u = 0;
  CHECK_FALSE(internal::parse_u64("", &u));
  CHECK_FALSE(internal::parse_u64("+1", &u));
  CHECK_FALSE(internal::parse_u64("18446744073709551616", &u));  // overflow
  std::string out;
  internal::put_field(&out, "ab");
  internal::put_field(&out, "");
  CHECK(out == "2:ab0:");
  std::string_view in = out, field;
  CHECK(internal::take_field(&in, &field));
  CHECK(field == "ab");
  CHECK(internal::take_field(&in, &field));
  CHECK(field.empty());
  CHECK(in.empty());
  std::string_view rest;
  auto lines = internal::split_lines("a\nb\nrest", 2, &rest);
  REQUIRE(lines.size() == 2);
  CHECK(lines[1] == "b");
  CHECK(rest == "rest");
  CHECK(internal::split_lines("a\nb", 2, &rest).empty());
}

}  // namespace
}  // namespace fleet::testing
