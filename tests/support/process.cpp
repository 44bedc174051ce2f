#include "process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

namespace fleet::testing {

Child spawn(const std::string& binary, const std::vector<std::string>& args) {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  Child c;
  c.pid = ::fork();
  if (c.pid < 0) return {};
  if (c.pid == 0) {
    ::dup2(fds[1], 1);
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

std::string finish(Child& c, int* exit_code, std::chrono::seconds limit) {
  std::string out;
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
