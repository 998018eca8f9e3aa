#include "tests/fakes/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace regen::testing {

namespace {

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

TcpProxy::TcpProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  listen(listen_fd_, 16);
  socklen_t len = sizeof a;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  (void)!pipe2(wake_, O_CLOEXEC | O_NONBLOCK);
  thread_ = std::thread([this] { Loop(); });
}

TcpProxy::~TcpProxy() {
  stop_ = true;
  (void)!write(wake_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  close(wake_[0]);
  close(wake_[1]);
}

void TcpProxy::Cut() { cut_ = 3; }

void TcpProxy::CutOneWay(bool to_target) { cut_ = to_target ? 1 : 2; }

void TcpProxy::Heal() {
  reset_ = true;
  cut_ = 0;
  (void)!write(wake_[1], "x", 1);
}

void TcpProxy::Loop() {
  struct Pair {
    int a;  // accepted (client side)
    int b;  // to the target
  };
  std::vector<Pair> pairs;
  auto close_all = [&] {
    for (auto& p : pairs) {
      // RST rather than FIN: like a peer that lost the connection state.
      linger l{1, 0};
      setsockopt(p.a, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      setsockopt(p.b, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      close(p.a);
      close(p.b);
    }
    pairs.clear();
  };
  char buf[65536];
  while (!stop_) {
    if (reset_.exchange(false)) close_all();
    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    for (auto& p : pairs) {
      fds.push_back({p.a, POLLIN, 0});
      fds.push_back({p.b, POLLIN, 0});
    }
    if (poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) break;
    if (fds[1].revents & POLLIN) {
      while (read(wake_[0], buf, sizeof buf) > 0) {
      }
    }
    const size_t polled = pairs.size();  // fds has entries for these only
    if (fds[0].revents & POLLIN) {
      int a = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (a >= 0) {
        int b = ConnectLoopback(target_port_);
        if (b < 0) {
          close(a);
        } else {
          pairs.push_back({a, b});
        }
      }
    }
    std::vector<size_t> dead;
    for (size_t i = 0; i < polled; ++i) {
      for (int side = 0; side < 2; ++side) {
        short re = fds[2 + 2 * i + side].revents;
        if (!(re & (POLLIN | POLLHUP | POLLERR))) continue;
        int from = side == 0 ? pairs[i].a : pairs[i].b;
        int to = side == 0 ? pairs[i].b : pairs[i].a;
        ssize_t n = read(from, buf, sizeof buf);
        if (n <= 0) {
          dead.push_back(i);
          break;
        }
        if (cut_.load() & (1 << side)) continue;  // partitioned: the bytes are lost
        ssize_t off = 0;
        while (off < n) {
          ssize_t w = write(to, buf + off, static_cast<size_t>(n - off));
          if (w <= 0) break;
          off += w;
        }
      }
    }
    for (auto it = dead.rbegin(); it != dead.rend(); ++it) {
      close(pairs[*it].a);
      close(pairs[*it].b);
      pairs.erase(pairs.begin() + static_cast<long>(*it));
    }
  }
  close_all();
}

}  // namespace regen::testing
