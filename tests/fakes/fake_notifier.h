// FakeNotifier: a Notifier (common/notify.h) that records every message, with the thread that
// sent it, and a watchdog timeout the test chooses. Thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/notify.h"
#include "common/thread_annotations.h"

namespace regen::testing {

class FakeNotifier : public Notifier {
 public:
  struct Message {
    std::string state;
    std::thread::id thread;
    std::chrono::steady_clock::time_point at;
  };

  explicit FakeNotifier(std::chrono::microseconds watchdog_timeout = {})
      : watchdog_timeout_(watchdog_timeout) {}

  void Notify(const std::string& state) override {
    MutexLock lock(mu_);
    messages_.push_back({state, std::this_thread::get_id(), std::chrono::steady_clock::now()});
  }
  std::chrono::microseconds WatchdogTimeout() const override { return watchdog_timeout_; }

  std::vector<Message> messages() {
    MutexLock lock(mu_);
    return messages_;
  }
  // How many messages equal `state` exactly.
  int Count(const std::string& state) {
    MutexLock lock(mu_);
    int n = 0;
    for (const auto& m : messages_) n += m.state == state ? 1 : 0;
    return n;
  }

 private:
  const std::chrono::microseconds watchdog_timeout_;
  Mutex mu_;
  std::vector<Message> messages_ GUARDED_BY(mu_);
};

}  // namespace regen::testing
