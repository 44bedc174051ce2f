// fleet's logging seam.
//
// fleet writes few log lines: warnings when it skips malformed data, falls
// back to the in-process backend, or loses a lease; informational lines on
// connection changes. By default they go to stderr, one line each, tagged
// with the component ("[fleet.local] ...", "[fleet.redis] ..."). A host
// application routes them into its own logging by passing a LogSink:
//
//   class MySink : public fleet::LogSink {
//     void write(fleet::LogLevel level, std::string_view component,
//                std::string_view message) override { my_log(level, message); }
//   };
//   options.log_sink = &my_sink;            // or fleet::quiet_log_sink()
//
// fleet never writes a password, or a URL containing one, to a sink.
#ifndef FLEET_LOG_HPP_
#define FLEET_LOG_HPP_

#include <string_view>

namespace fleet {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning", "error".
std::string_view log_level_name(LogLevel level);

// Receives fleet's log lines. write() may be called from any fleet thread,
// concurrently: implementations must be thread-safe. It must not call back
// into the object that is logging.
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void write(LogLevel level, std::string_view component,
                     std::string_view message) = 0;
};

// Writes "<level> [<component>] <message>\n" to stderr, one write per line.
// Belongs to fleet; never delete it.
LogSink* stderr_log_sink();

// Discards everything (quiet mode). Belongs to fleet; never delete it.
LogSink* quiet_log_sink();

}  // namespace fleet

#endif  // FLEET_LOG_HPP_
