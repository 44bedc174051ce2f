#include "process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

namespace fleet::testing {

Child spawn(const std::string& binary, const std::vector<std::string>& args,
            bool with_stderr) {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  Child c;
  c.pid = ::fork();
  if (c.pid < 0) return {};
  if (c.pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    ::dup2(fds[1], 1);
    if (with_stderr) ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<std::string> copy = args;
    std::string bin = binary;
    std::vector<char*> argv{bin.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  c.out = fds[0];
  return c;
}

std::string read_line_with(Child& c, const std::string& needle,
                           std::chrono::milliseconds limit) {
  if (c.pid <= 0) return {};
  ::fcntl(c.out, F_SETFL, O_NONBLOCK);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::size_t scanned = 0;
  char buf[4096];
  for (;;) {
    for (std::size_t nl; (nl = c.read.find('\n', scanned)) != std::string::npos;
         scanned = nl + 1) {
      const std::string line = c.read.substr(scanned, nl - scanned);
      if (line.find(needle) != std::string::npos) return line;
    }
    const ssize_t n = ::read(c.out, buf, sizeof buf);
    if (n > 0) {
      c.read.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || std::chrono::steady_clock::now() > deadline) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void signal_child(const Child& c, int signal) {
  if (c.pid > 0) ::kill(c.pid, signal);
}

std::string finish(Child& c, int* exit_code, std::chrono::seconds limit) {
  std::string out = std::move(c.read);
  *exit_code = -1;
  if (c.pid <= 0) return out;
  char buf[4096];
  ::fcntl(c.out, F_SETFL, O_NONBLOCK);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  bool killed = false;
  for (;;) {
    ssize_t n;
    while ((n = ::read(c.out, buf, sizeof buf)) > 0)
      out.append(buf, static_cast<size_t>(n));
    if (::waitpid(c.pid, &status, WNOHANG) == c.pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(c.pid, SIGKILL);
      ::waitpid(c.pid, &status, 0);
      killed = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ssize_t n;
  while ((n = ::read(c.out, buf, sizeof buf)) > 0)
    out.append(buf, static_cast<size_t>(n));
  ::close(c.out);
  if (!killed && WIFEXITED(status)) *exit_code = WEXITSTATUS(status);
  return out;
}

}  // namespace fleet::testing
