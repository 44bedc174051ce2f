#include "internal/parse.hpp"

namespace fleet::internal {

void put_field(std::string* out, std::string_view field) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, field.size());
  (void)ec;  // 24 digits hold any size_t
  out->append(digits, end);
  out->push_back(':');
  out->append(field);
}

bool take_field(std::string_view* in, std::string_view* field) {
  const std::size_t colon = in->find(':');
  // At most 10 digits: no field of fleet's is 10 GB, and a long run of
  // digits is garbage, not a length.
  if (colon == std::string_view::npos || colon == 0 || colon > 10) return false;
  std::uint64_t n = 0;
  if (!parse_u64(in->substr(0, colon), &n) || n > in->size() - colon - 1) return false;
  *field = in->substr(colon + 1, n);
  in->remove_prefix(colon + 1 + n);
  return true;
}

std::vector<std::string_view> split_lines(std::string_view value, std::size_t n,
                                          std::string_view* rest) {
  std::vector<std::string_view> out;
  out.reserve(n);
  std::size_t pos = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t nl = value.find('\n', pos);
    if (nl == std::string_view::npos) return {};
    out.push_back(value.substr(pos, nl - pos));
    pos = nl + 1;
  }
  *rest = value.substr(pos);
  return out;
}

}  // namespace fleet::internal
