// Integer flags of the example programs.
#ifndef FLEET_EXAMPLES_FLAGS_HPP_
#define FLEET_EXAMPLES_FLAGS_HPP_

#include <cstdlib>
#include <string>

// The integer in `text` if it is one in [min, max]; otherwise calls
// `usage` (which must exit) with a message that names `flag`.
inline long flag_integer(const std::string& flag, const std::string& text, long min,
                         long max, void (*usage)(const std::string&)) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < min || v > max) {
    usage(flag + " needs an integer in [" + std::to_string(min) + ", " +
          std::to_string(max) + "], not '" + text + "'");
  }
  return v;
}

#endif  // FLEET_EXAMPLES_FLAGS_HPP_
