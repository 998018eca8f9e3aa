// The chaos runner (scripts/chaos.sh, chaos_test): each run starts a lab (tests/e2e/lab_harness),
// deploys a service, injects random faults at random moments for a while (kill -9 of the
// controller, of agents, of VMs; partitions in both and in one direction; link flaps shorter than
// the lease; the controller's disk full; the SQLite lock held; an agent hung or its main loop
// stalled), heals everything and checks against what really runs (RunningTruth): no instance ran
// twice, no IP or MAC is held twice, none is lost, and no fault of the controller alone (or link
// flap shorter than the lease) made an agent fence. The test thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace regen::testing {

struct ChaosOptions {
  std::string driver = "qemu";  // qemu | test
  int hosts = 3;
  int instances = 6;
  int fault_seconds = 20;           // how long each run injects faults
  bool disk_full = true;            // needs root (a tmpfs for the controller's database)
  int converge_timeout_s = 60;      // after the last fault, everything must be back within this
  std::vector<std::string> faults;  // the kinds to draw from (ChaosFaultKinds()); empty = all
};

// Every fault kind the runner knows.
const std::vector<std::string>& ChaosFaultKinds();

struct ChaosRunResult {
  int run = 0;
  uint64_t seed = 0;
  bool never_ran = false;  // the service never ran before the first fault: no fault injected
  std::map<std::string, int> faults;  // fault kind -> times injected
  int fences = 0;                     // "fenced" events (a domain destroyed for safety)
  int failures = 0;                   // "failure" events
  int reallocations = 0;              // heals and moves onto another host
  int64_t max_converge_ms = 0;        // longest fault end -> all running once, agents agree
  int duplicates = 0;                 // from RunningTruth: must be 0
  int ips_twice = 0;                  // must be 0
  int macs_twice = 0;                 // must be 0
  int lost = 0;                       // instances not running (exactly once) at the end: 0
  int watchdog_resets = 0;            // hosts reset by their (stand-in) watchdog
  int flap_fences = 0;
  // Fences after a fault of the controller alone (kill -9, full disk, SQLite lock): must be 0.
  int controller_fences = 0;
  int sanitizer_reports = 0;  // daemon logs with an ASan or UBSan report: must be 0
  // Resets the lab's stand-in watchdog sent more than LabWatchdog::kLateMs after its timeout (a
  // loaded machine; a real watchdog is not late): the harness's problem, reported apart.
  int watchdog_late = 0;
  int64_t watchdog_max_late_ms = 0;
  std::vector<std::string> problems;  // what went wrong, in words (empty: a clean run)
  std::vector<std::string> timeline;  // "unix_ms kind [host]" of every fault, and its end
  std::string logs;                   // log tails when there were problems
};

// One run with its own lab and random generator seeded with `seed`.
ChaosRunResult ChaosRun(const ChaosOptions& options, int run, uint64_t seed);

// The table the runner prints: one line per run, then the totals.
std::string ChaosTable(const std::vector<ChaosRunResult>& runs);

}  // namespace regen::testing
