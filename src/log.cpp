#include "fleet/log.hpp"

#include <cstdio>
#include <string>

namespace fleet {
namespace {

class StderrSink final : public LogSink {
 public:
  void write(LogLevel level, std::string_view component,
             std::string_view message) override {
    std::string line;
    line.reserve(message.size() + component.size() + 16);
    line.append(log_level_name(level)).append(" [").append(component).append("] ");
    line.append(message).push_back('\n');
    // One fwrite per line: stdio locks the stream, so lines never interleave.
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
};

class QuietSink final : public LogSink {
 public:
  void write(LogLevel, std::string_view, std::string_view) override {}
};

}  // namespace

std::string_view log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

LogSink* stderr_log_sink() {
  static StderrSink* sink = new StderrSink();
  return sink;
}

LogSink* quiet_log_sink() {
  static QuietSink* sink = new QuietSink();
  return sink;
}

}  // namespace fleet
