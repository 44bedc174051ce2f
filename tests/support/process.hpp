// Runs a program of the project as a child process and collects its stdout,
// bounded in time (killed by PID after the limit).
#ifndef FLEET_TESTS_SUPPORT_PROCESS_HPP_
#define FLEET_TESTS_SUPPORT_PROCESS_HPP_

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace fleet::testing {

struct Child {
  pid_t pid = -1;
  int out = -1;
};

// Starts `binary` with `args`; its stdout is captured.
Child spawn(const std::string& binary, const std::vector<std::string>& args);

// Waits for it (killing it after `limit`), returns its stdout; *exit_code
// is its exit status, or -1 if it was killed or crashed.
std::string finish(Child& child, int* exit_code,
                   std::chrono::seconds limit = std::chrono::seconds(60));

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_PROCESS_HPP_
