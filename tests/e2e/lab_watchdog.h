// Stands in for each lab host's hardware watchdog: agent.yaml's watchdog_device is a FIFO
// (DIR/host-K/watchdog) read here. A host whose agent stopped petting it for `timeout` (the agent
// died, or its fencing backstop withheld the pets) is "reset" as a real watchdog would: every
// process of the host (its qemus and its agent) is killed with SIGKILL. An agent that opens the
// device again in time (a quick restart) resets the count, as with /dev/watchdog. One thread of
// its own; resets() and log() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace regen::testing {

class LabWatchdog {
 public:
  LabWatchdog(std::string lab_dir, int hosts, std::chrono::milliseconds timeout);
  ~LabWatchdog();
  LabWatchdog(const LabWatchdog&) = delete;
  LabWatchdog& operator=(const LabWatchdog&) = delete;

  // The FIFO host `host` (1-based) pets.
  std::string Device(int host) const;
  int resets() const { return resets_; }
  // "unix_ms host-K reset: ..." for every reset.
  std::vector<std::string> log();

 private:
  void Loop();
  void Reset(int host, int64_t silent_ms);
  const std::string dir_;
  const int hosts_;
  const std::chrono::milliseconds timeout_;
  std::vector<int> fds_;  // read ends, index host-1
  std::atomic<bool> stop_{false};
  std::atomic<int> resets_{0};
  std::mutex mu_;
  std::vector<std::string> log_;
  std::thread thread_;
};

}  // namespace regen::testing
