#include "fault_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace fleet::testing {
namespace {

using SteadyClock = std::chrono::steady_clock;

sockaddr_in loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  return addr;
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Closes with RST rather than FIN: the peer sees "connection reset".
void reset_close(int fd) {
  if (fd < 0) return;
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

// Appends what `fd` has to `got`; false at EOF or error.
bool pull(int fd, std::string* got) {
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      got->append(buf, static_cast<std::size_t>(n));
      if (static_cast<std::size_t>(n) < sizeof buf) return true;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;  // EOF, or the connection failed
  }
}

// Writes what it can of `pending` (removing it); false if the connection failed.
bool push(int fd, std::string* pending) {
  while (!pending->empty()) {
    const ssize_t n = ::send(fd, pending->data(), pending->size(), MSG_NOSIGNAL);
    if (n > 0) {
      pending->erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FaultProxy>> FaultProxy::start(int target_port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("fault proxy: socket failed");
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr = loopback(0);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, 128) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return absl::InternalError("fault proxy: cannot listen on 127.0.0.1");
  }
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    ::close(fd);
    return absl::InternalError("fault proxy: pipe failed");
  }
  return std::unique_ptr<FaultProxy>(
      new FaultProxy(fd, ntohs(addr.sin_port), target_port, wake[0], wake[1]));
}

FaultProxy::FaultProxy(int listen_fd, int port, int target_port, int wake_read,
                       int wake_write)
    : listen_fd_(listen_fd),
      port_(port),
      target_port_(target_port),
      wake_read_(wake_read),
      wake_write_(wake_write) {
  thread_ = std::thread([this] { run(); });
}

FaultProxy::~FaultProxy() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake();
  thread_.join();
  for (auto& p : pipes_) close_pipe(p, true);
  ::close(listen_fd_);
  ::close(wake_read_);
  ::close(wake_write_);
}

void FaultProxy::wake() const {
  const char b = 1;
  (void)!::write(wake_write_, &b, 1);
}

void FaultProxy::stall(bool on) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stalled_ = on;
  }
  wake();
}

void FaultProxy::drop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    drop_ = true;
  }
  wake();
  // Done once the proxy thread has reset them (bounded: it is woken now).
  for (int i = 0; i < 1000; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!drop_) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void FaultProxy::delay(std::chrono::milliseconds d) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    delay_ = d;
  }
  wake();
}

void FaultProxy::close_pipe(Pipe& p, bool reset) {
  if (reset) {
    reset_close(p.client);
    reset_close(p.upstream);
  } else {
    if (p.client >= 0) ::close(p.client);
    if (p.upstream >= 0) ::close(p.upstream);
  }
  p.client = p.upstream = -1;
}

bool FaultProxy::serve(Pipe& p, short client_events, short upstream_events,
                       std::chrono::milliseconds delay) {
  const auto now = SteadyClock::now();
  auto read_side = [&](int fd, short events, bool* eof, std::deque<Chunk>* into) {
    if (*eof || (events & (POLLIN | POLLHUP | POLLERR)) == 0) return;
    std::string got;
    if (!pull(fd, &got)) *eof = true;
    if (!got.empty()) into->push_back(Chunk{now + delay, std::move(got)});
  };
  read_side(p.client, client_events, &p.client_eof, &p.to_upstream);
  read_side(p.upstream, upstream_events, &p.upstream_eof, &p.to_client);
  auto write_side = [&](int fd, bool* peer_eof, std::deque<Chunk>* from) {
    while (!from->empty() && from->front().ready <= now) {
      if (!push(fd, &from->front().bytes)) {
        *peer_eof = true;  // the receiving side is gone
        from->clear();
        return;
      }
      if (!from->front().bytes.empty()) return;  // socket full: later
      from->pop_front();
    }
  };
  write_side(p.upstream, &p.upstream_eof, &p.to_upstream);
  write_side(p.client, &p.client_eof, &p.to_client);
  // A side that closed gets what it sent delivered first, then the other
  // side is closed too: nobody is left to answer or to read the answer.
  if ((p.client_eof && p.to_upstream.empty()) ||
      (p.upstream_eof && p.to_client.empty())) {
    close_pipe(p, false);
    return false;
  }
  return true;
}

void FaultProxy::run() {
  for (;;) {
    bool stalled = false, drop = false;
    std::chrono::milliseconds delay{0};
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      stalled = stalled_;
      drop = drop_;
      delay = delay_;
    }
    if (drop) {
      for (auto& p : pipes_) close_pipe(p, true);
      pipes_.clear();
      std::lock_guard<std::mutex> lock(mu_);
      drop_ = false;
    }
    std::vector<pollfd> fds = {{wake_read_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    int timeout_ms = -1;
    const auto now = SteadyClock::now();
    for (const auto& p : pipes_) {
      short c = 0, u = 0;
      if (!stalled) {
        if (!p.client_eof) c |= POLLIN;
        if (!p.upstream_eof) u |= POLLIN;
        for (const auto* q : {&p.to_upstream, &p.to_client}) {
          if (q->empty()) continue;
          const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                                q->front().ready - now)
                                .count();
          const int wait = static_cast<int>(std::max<long long>(0, left) + 1);
          if (left <= 0) {
            (q == &p.to_upstream ? u : c) |= POLLOUT;
          }
          timeout_ms = timeout_ms < 0 ? wait : std::min(timeout_ms, wait);
        }
      }
      fds.push_back({p.client, c, 0});
      fds.push_back({p.upstream, u, 0});
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) {
      char buf[64];
      while (::read(wake_read_, buf, sizeof buf) > 0) {
      }
    }
    if (fds[1].revents & POLLIN) {
      for (;;) {
        const int client =
            ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client < 0) break;
        const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr = loopback(target_port_);
        if (up < 0 ||
            ::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
          if (up >= 0) ::close(up);
          reset_close(client);  // the server is down: so is the proxy
          continue;
        }
        set_nonblocking(up);
        const int one = 1;
        ::setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        Pipe p;
        p.client = client;
        p.upstream = up;
        pipes_.push_back(std::move(p));
      }
    }
    if (!stalled) {
      std::vector<Pipe> alive;
      alive.reserve(pipes_.size());
      for (std::size_t i = 0; i < pipes_.size(); ++i) {
        // Pipes accepted in this round have no pollfd entries yet.
        const std::size_t at = 2 + 2 * i;
        const short c = at < fds.size() ? fds[at].revents : 0;
        const short u = at + 1 < fds.size() ? fds[at + 1].revents : 0;
        if (serve(pipes_[i], c, u, delay)) alive.push_back(std::move(pipes_[i]));
      }
      pipes_ = std::move(alive);
    }
  }
}

}  // namespace fleet::testing
