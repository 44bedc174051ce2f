// A LogSink that keeps every line, so tests can check what fleet logged
// (and that no password appears anywhere).
#ifndef FLEET_TESTS_SUPPORT_CAPTURE_SINK_HPP_
#define FLEET_TESTS_SUPPORT_CAPTURE_SINK_HPP_

#include <mutex>
#include <string>
#include <vector>

#include "fleet/log.hpp"

namespace fleet::testing {

class CaptureSink final : public LogSink {
 public:
  void write(LogLevel level, std::string_view component,
             std::string_view message) override {
    std::lock_guard<std::mutex> lock(mu_);
    lines_.push_back(std::string(log_level_name(level)) + " [" + std::string(component) +
                     "] " + std::string(message));
  }
  std::vector<std::string> lines() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }
  bool contains(const std::string& needle) const {
    for (const auto& l : lines()) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
};

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_CAPTURE_SINK_HPP_
