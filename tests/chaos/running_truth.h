// What really runs in a lab, never what an agent or the controller says: the qemu processes of
// the lab's hosts by their `guest=NAME` argument (driver qemu), or each agent's fresh libvirt
// listing (driver test, whose domains live inside the agent process: a dead agent runs nothing,
// one that does not answer keeps its last listing). Sampled every 20 ms on its own thread; an
// instance seen on two hosts (or twice on one) is a duplicate once a second look confirms that
// the first copy still runs after the second was seen. Methods from any thread.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace regen::testing {

// One running copy of an instance: the host, and the qemu PID (driver qemu) or libvirt id.
struct RunningCopy {
  std::string host;
  int64_t id = -1;
  bool operator<(const RunningCopy& o) const { return host != o.host ? host < o.host : id < o.id; }
};

class RunningTruth {
 public:
  // `lab_dir`: the lab's directory (qemu command lines name DIR/host-K/root; control sockets are
  // DIR/host-K/agent.sock); `hosts`: host-1..host-N; `driver`: qemu | test.
  RunningTruth(std::string lab_dir, int hosts, std::string driver);
  ~RunningTruth();
  RunningTruth(const RunningTruth&) = delete;
  RunningTruth& operator=(const RunningTruth&) = delete;

  void Stop();
  // One fresh look: instance -> its running copies.
  std::map<std::string, std::vector<RunningCopy>> Look();
  // Confirmed duplicates so far ("web-3 on host-1 (pid 123) and host-2 (pid 456)").
  std::vector<std::string> duplicates();
  int samples() const { return samples_; }

 private:
  void Loop();
  std::map<std::string, std::vector<RunningCopy>> LookQemu();
  std::map<std::string, std::vector<RunningCopy>> LookLibvirt();
  // The copy still runs (same qemu PID with the same guest name / same libvirt id).
  bool StillRuns(const std::string& instance, const RunningCopy& copy);

  const std::string dir_;
  const int hosts_;
  const std::string driver_;
  std::mutex mu_;
  std::vector<std::string> duplicates_;
  std::set<std::string> reported_;  // "instance host id host id": each duplicate once
  // driver test: each host's last listing (kept while its agent does not answer).
  std::map<int, std::map<std::string, int64_t>> last_listing_;
  std::atomic<bool> stop_{false};
  std::atomic<int> samples_{0};
  std::thread thread_;
};

}  // namespace regen::testing
