#include "agent/health_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "common/text.h"

namespace regen {

namespace {

using Steady = std::chrono::steady_clock;

// Closes the descriptor on every path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int RemainingMs(Steady::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Steady::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits until `fd` has `events` or the deadline passes. OK, DEADLINE_EXCEEDED or UNAVAILABLE.
Status WaitFd(int fd, short events, Steady::time_point deadline, const std::string& what) {
  while (true) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, RemainingMs(deadline));
    if (n > 0) return Status::Ok();
    if (n == 0) return DeadlineExceeded(what + ": no answer within the health check's timeout");
    if (errno != EINTR) return Unavailable(what + ": poll: " + std::strerror(errno));
  }
}

std::string ReadStatusLine(int fd, Steady::time_point deadline, const std::string& what,
                           Status* status) {
  std::string got;
  char buf[512];
  while (got.find("\r\n") == std::string::npos && got.size() < 4096) {
    *status = WaitFd(fd, POLLIN, deadline, what);
    if (!status->ok()) return "";
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      *status = Unavailable(what + ": recv: " + std::strerror(errno));
      return "";
    }
    if (n == 0) break;  // closed: whatever came is all there is
    got.append(buf, static_cast<size_t>(n));
  }
  *status = Status::Ok();
  return got.substr(0, got.find("\r\n"));
}

}  // namespace

Status ProbeOnce(const std::string& ip, const HealthCheck& check) {
  const bool http = check.type == "http";
  if (!http && check.type != "tcp") {
    return InvalidArgument("health check type \"" + check.type +
                           "\" cannot be probed (tcp or http)");
  }
  if (check.port < 1 || check.port > 65535) {
    return InvalidArgument("health check port " + std::to_string(check.port) +
                           " is out of range (1-65535)");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(check.port));
  if (inet_pton(AF_INET, ip.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("health check address \"" + ip + "\" is not an IPv4 address");
  }
  const std::string target = ip + ":" + std::to_string(check.port);
  const std::string what = (http ? "http GET " + target + check.path : "tcp connect " + target);
  const auto deadline = Steady::now() + check.timeout;

  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Unavailable(what + ": socket: " + std::strerror(errno));
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) return Unavailable(what + ": " + std::strerror(errno));
    RETURN_IF_ERROR(WaitFd(fd.get(), POLLOUT, deadline, what));
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return Unavailable(what + ": " + std::strerror(err));
  }
  if (!http) return Status::Ok();

  std::string request = "GET " + check.path + " HTTP/1.0\r\nHost: " + target +
                        "\r\nUser-Agent: regen-agent\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    RETURN_IF_ERROR(WaitFd(fd.get(), POLLOUT, deadline, what));
    ssize_t n = send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Unavailable(what + ": send: " + std::strerror(errno));
    }
    sent += static_cast<size_t>(n);
  }
  Status read_status;
  std::string line = ReadStatusLine(fd.get(), deadline, what, &read_status);
  RETURN_IF_ERROR(read_status);
  // "HTTP/1.1 204 No Content"
  int code = 0;
  if (line.rfind("HTTP/", 0) == 0) {
    size_t space = line.find(' ');
    if (space != std::string::npos) code = std::atoi(line.c_str() + space + 1);
  }
  if (code == 0) {
    // The guest's bytes: made valid UTF-8 and bounded here, since this text goes into the
    // report's proto3 strings (issue 15: raw bytes once broke every report of the host).
    return Unavailable(what + ": not an HTTP answer: \"" + SanitizeText(line, 120) + "\"");
  }
  if (code < 200 || code > 299) {
    return Unavailable(what + ": HTTP status " + std::to_string(code) + " (2xx expected)");
  }
  return Status::Ok();
}

SocketProber::SocketProber(size_t max_threads) : max_threads_(std::max<size_t>(max_threads, 1)) {}

SocketProber::~SocketProber() {
  std::vector<std::thread> threads;
  {
    MutexLock lock(mu_);
    stop_ = true;
    queue_.clear();
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
}

void SocketProber::Probe(const std::string& ip, const HealthCheck& check, Done done) {
  MutexLock lock(mu_);
  if (stop_) return;
  queue_.push_back([ip, check, done = std::move(done)] { done(ProbeOnce(ip, check)); });
  if (idle_ == 0 && threads_.size() < max_threads_) {
    threads_.emplace_back([this] { Work(); });
  } else {
    cv_.notify_one();
  }
}

void SocketProber::Work() {
  MutexLock lock(mu_);
  while (true) {
    ++idle_;
    while (!(stop_ || !queue_.empty())) cv_.wait(lock.native());
    --idle_;
    if (stop_) return;
    auto job = std::move(queue_.front());
    queue_.pop_front();
    lock.native().unlock();
    job();
    lock.native().lock();
  }
}

}  // namespace regen
