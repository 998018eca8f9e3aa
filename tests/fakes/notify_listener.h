// NotifyListener: the service manager's side of sd_notify(3) for tests. It binds a unix datagram
// socket (pass path() as NOTIFY_SOCKET to a daemon) and a thread of its own records every message
// with the time it arrived. Public methods are thread-safe.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"

namespace regen::testing {

class NotifyListener {
 public:
  struct Message {
    std::string state;  // e.g. "READY=1\nSTATUS=..." (one datagram)
    std::chrono::steady_clock::time_point at;
  };

  // Binds `path` (at most 107 bytes; an existing file there is replaced).
  explicit NotifyListener(std::string path) : path_(std::move(path)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path_.size() >= sizeof(addr.sun_path)) {
      throw std::runtime_error("NotifyListener: cannot make a socket at " + path_);
    }
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    unlink(path_.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::runtime_error("NotifyListener: bind " + path_ + ": " + std::strerror(errno));
    }
    thread_ = std::thread([this] { Run(); });
  }
  ~NotifyListener() {
    stop_ = true;
    thread_.join();
    close(fd_);
    unlink(path_.c_str());
  }
  NotifyListener(const NotifyListener&) = delete;
  NotifyListener& operator=(const NotifyListener&) = delete;

  const std::string& path() const { return path_; }
  std::vector<Message> messages() {
    MutexLock lock(mu_);
    return messages_;
  }
  // Arrival times of the messages whose state contains the line `line` (e.g. "WATCHDOG=1").
  std::vector<std::chrono::steady_clock::time_point> Times(const std::string& line) {
    std::vector<std::chrono::steady_clock::time_point> times;
    for (const auto& m : messages()) {
      if (HasLine(m.state, line)) times.push_back(m.at);
    }
    return times;
  }
  static bool HasLine(const std::string& state, const std::string& line) {
    size_t start = 0;
    while (start <= state.size()) {
      size_t end = state.find('\n', start);
      if (end == std::string::npos) end = state.size();
      if (state.compare(start, end - start, line) == 0) return true;
      start = end + 1;
    }
    return false;
  }

 private:
  void Run() {
    char buf[4096];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n < 0) continue;
      MutexLock lock(mu_);
      messages_.push_back({std::string(buf, n), std::chrono::steady_clock::now()});
    }
  }

  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  Mutex mu_;
  std::vector<Message> messages_ GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace regen::testing
