// A loopback TCP proxy for partition tests: forwards 127.0.0.1:port() to a target, and can cut the
// link (every byte in both directions is dropped, connections stay open: what a network partition
// looks like to both ends) and heal it (open connections are reset so both ends reconnect). One
// thread; Cut/Heal from any thread.
#pragma once

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace regen::testing {

class TcpProxy {
 public:
  explicit TcpProxy(int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  void Cut();
  // Drops the bytes of one direction only (to the target, or from it): a one-way partition.
  void CutOneWay(bool to_target);
  void Heal();
  bool cut() const { return cut_.load() != 0; }

 private:
  void Loop();
  int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  int wake_[2] = {-1, -1};
  std::atomic<int> cut_{0};  // bit 0: to the target dropped, bit 1: from it
  std::atomic<bool> reset_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace regen::testing
