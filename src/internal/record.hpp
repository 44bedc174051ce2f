// fleet's one format for the records modules store in Coordinator maps
// (router nodes, rooms nodes, placements and participants, relay
// sessions): a magic line that names the kind and its version, then
// length-prefixed fields,
//
//   "<magic>\n<n>:<bytes><n>:<bytes>..."
//
// so any field may hold any bytes (a session document, an address with a
// newline), and a reader finds a wrong kind, a truncated record or a bad
// length without guessing. Numbers are decimal; doubles round-trip exactly.
//
//   std::string v = RecordWriter("rp2").add(node).add(generation).str();
//   RecordReader r(v, "rp2");
//   std::string_view node;
//   std::uint64_t generation = 0;
//   if (!r.next(&node) || !r.next(&generation) || !r.done()) return skip();
#ifndef FLEET_SRC_INTERNAL_RECORD_HPP_
#define FLEET_SRC_INTERNAL_RECORD_HPP_

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "internal/parse.hpp"

namespace fleet::internal {

class RecordWriter {
 public:
  explicit RecordWriter(std::string_view magic) {
    out_.append(magic);
    out_.push_back('\n');
  }
  RecordWriter& add(std::string_view field) {
    put_field(&out_, field);
    return *this;
  }
  RecordWriter& add(const std::string& field) { return add(std::string_view(field)); }
  RecordWriter& add(const char* field) { return add(std::string_view(field)); }
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  RecordWriter& add(T number) {
    return add(std::string_view(format_number(number)));
  }
  // The record (once: the writer is empty afterwards).
  std::string str() { return std::move(out_); }

 private:
  static std::string format_number(double v);
  template <typename T>
  static std::string format_number(T v) {
    if constexpr (std::is_same_v<T, bool>) {
      return v ? "1" : "0";
    } else if constexpr (std::is_floating_point_v<T>) {
      return format_number(static_cast<double>(v));
    } else {
      return std::to_string(v);
    }
  }
  std::string out_;
};

class RecordReader {
 public:
  // ok() is false when `record` does not start with the magic line.
  RecordReader(std::string_view record, std::string_view magic);
  bool ok() const { return ok_; }
  // The next field; false (and ok() false from then on) when there is none
  // or it is malformed.
  bool next(std::string_view* field);
  bool next(std::string* field);
  bool next(bool* value);
  bool next(double* value);
  template <typename T, typename = std::enable_if_t<std::is_integral_v<T> &&
                                                    !std::is_same_v<T, bool>>>
  bool next(T* value) {
    std::string_view f;
    if (!next(&f) || !parse_int(f, value)) return ok_ = false;
    return true;
  }
  // Every field was read.
  bool done() const { return ok_ && rest_.empty(); }

 private:
  std::string_view rest_;
  bool ok_ = true;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_INTERNAL_RECORD_HPP_
