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
  std::string read;  // stdout read so far by read_line_with()
};

// Starts `binary` with `args`; its stdout is captured.
// `with_stderr`: its standard error goes to the same pipe (read what it
// logs; only for a child that logs little, as the pipe is read at the end).
Child spawn(const std::string& binary, const std::vector<std::string>& args,
            bool with_stderr = false);

// Reads the child's stdout up to the first line containing `needle` and
// returns that line; empty if the child closed stdout or `limit` passed.
// What was read before stays available to finish().
std::string read_line_with(Child& child, const std::string& needle,
                           std::chrono::milliseconds limit);

// Sends `signal` to the child (by its PID).
void signal_child(const Child& child, int signal);

// Waits for it (killing it after `limit`), returns its stdout; *exit_code
// is its exit status, or -1 if it was killed or crashed.
std::string finish(Child& child, int* exit_code,
                   std::chrono::seconds limit = std::chrono::seconds(60));

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_PROCESS_HPP_
