// Stands in for each lab host's hardware watchdog: agent.yaml's watchdog_device is a FIFO
// (DIR/host-K/watchdog) read here. A host whose agent stopped petting it for `timeout` (the agent
// died, or its fencing backstop withheld the pets) is "reset" as a real watchdog would: every
// process of the host (its qemus and its agent) is killed with SIGKILL. An agent that opens the
// device again in time (a quick restart) resets the count, as with /dev/watchdog. The reset only
// sends the signals (the polling thread never waits for a host's processes to go, which made one
// host's reset 2 s late behind another's in chaos run 53; their owners reap them),
// and how late each reset was after its timeout is recorded: a stand-in that is late (a loaded
// machine) is the harness's problem, not the product's, and the chaos runner says so. One thread
// of its own; resets(), late_resets(), max_late_ms() and log() from any thread.
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
  // Resets that came more than kLateMs after the timeout, and the latest of all resets so far.
  static constexpr int64_t kLateMs = 250;
  int late_resets() const { return late_resets_; }
  int64_t max_late_ms() const { return max_late_ms_; }
  // "unix_ms host-K reset: ..." for every reset.
  std::vector<std::string> log();

 private:
  void Loop();
  void Reset(int host, std::chrono::steady_clock::time_point last_pet);
  const std::string dir_;
  const int hosts_;
  const std::chrono::milliseconds timeout_;
  std::vector<int> fds_;  // read ends, index host-1
  std::atomic<bool> stop_{false};
  std::atomic<int> resets_{0};
  std::atomic<int> late_resets_{0};
  std::atomic<int64_t> max_late_ms_{0};
  std::mutex mu_;
  std::vector<std::string> log_;
  std::thread thread_;
};

}  // namespace regen::testing
