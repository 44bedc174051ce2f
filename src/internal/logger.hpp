// Formats log lines with fmt and hands them to the configured LogSink.
#ifndef FLEET_SRC_INTERNAL_LOGGER_HPP_
#define FLEET_SRC_INTERNAL_LOGGER_HPP_

#include <string>
#include <utility>

#include "fleet/log.hpp"
#include "fmt/format.h"

namespace fleet::internal {

class Logger {
 public:
  Logger(LogSink* sink, LogLevel min_level, std::string component)
      : sink_(sink != nullptr ? sink : stderr_log_sink()),
        min_level_(min_level),
        component_(std::move(component)) {}

  template <typename... Args>
  void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) const {
    if (level < min_level_) return;
    sink_->write(level, component_, fmt::format(format, std::forward<Args>(args)...));
  }
  template <typename... Args>
  void info(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kInfo, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kWarning, format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void error(fmt::format_string<Args...> format, Args&&... args) const {
    log(LogLevel::kError, format, std::forward<Args>(args)...);
  }

  LogSink* sink() const { return sink_; }
  LogLevel min_level() const { return min_level_; }

 private:
  LogSink* sink_;
  LogLevel min_level_;
  std::string component_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_INTERNAL_LOGGER_HPP_
