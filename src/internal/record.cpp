#include "internal/record.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "fmt/format.h"

namespace fleet::internal {

std::string RecordWriter::format_number(double v) {
  return fmt::format("{}", v);  // the shortest text that reads back exactly
}

RecordReader::RecordReader(std::string_view record, std::string_view magic) {
  if (record.size() <= magic.size() || record.substr(0, magic.size()) != magic ||
      record[magic.size()] != '\n') {
    ok_ = false;
    return;
  }
  rest_ = record.substr(magic.size() + 1);
}

bool RecordReader::next(std::string_view* field) {
  if (!ok_ || !take_field(&rest_, field)) return ok_ = false;
  return true;
}

bool RecordReader::next(std::string* field) {
  std::string_view f;
  if (!next(&f)) return false;
  field->assign(f);
  return true;
}

bool RecordReader::next(bool* value) {
  std::string_view f;
  if (!next(&f) || (f != "0" && f != "1")) return ok_ = false;
  *value = f == "1";
  return true;
}

bool RecordReader::next(double* value) {
  std::string_view f;
  if (!next(&f) || f.empty() || f.size() > 64) return ok_ = false;
  double v = 0;
#if defined(__cpp_lib_to_chars)
  // Locale-independent, like the writer's fmt.
  auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
  if (ec != std::errc() || end != f.data() + f.size() || !std::isfinite(v)) {
    return ok_ = false;
  }
#else
  const std::string text(f);
  char* end = nullptr;
  errno = 0;
  v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v)) {
    return ok_ = false;
  }
#endif
  *value = v;
  return true;
}

}  // namespace fleet::internal
