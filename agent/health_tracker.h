// Health checks of the instances an agent runs, as pure state: HealthTracker turns one instance
// generation's probe results into its health and, while max_failed or more failed in a row, the
// verdict "failed" (level-triggered: probing goes on, a pass clears it); HealthMonitor keeps one tracker per probed instance and says which probes are due
// when (time is passed in). No I/O, no clock, no threads: the agent's main loop owns one monitor;
// the probes themselves run elsewhere (agent/health_probe.h). Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "config/service_spec.h"

namespace regen {

enum class HealthState { kUnknown, kPassing, kFailing };
const char* HealthStateName(HealthState state);  // "unknown", "passing", "failing"

// True when `check` makes the agent probe an instance at `ip`: type tcp or http and an address.
bool HealthCheckApplies(const HealthCheck& check, const std::string& ip);

// One instance generation's probe results.
class HealthTracker {
 public:
  explicit HealthTracker(int64_t max_failed);

  // Records one probe's result (`detail`: what failed, ignored on success). Returns true for the
  // result that makes the failures in a row reach max_failed (the edge, for an event). failed()
  // is the level: true while the failures in a row are at least max_failed; a pass clears it
  // (and a new run of failures reaches the verdict again).
  bool Record(bool ok, const std::string& detail);

  HealthState state() const { return state_; }
  bool failed() const { return failed_; }
  bool passed_once() const { return passed_once_; }  // a probe of this generation passed
  int64_t consecutive_failures() const { return consecutive_failures_; }
  int64_t probes() const { return probes_; }
  const std::string& last_error() const { return last_error_; }  // "" after a pass
  int64_t max_failed() const { return max_failed_; }

 private:
  int64_t max_failed_;
  HealthState state_ = HealthState::kUnknown;
  bool failed_ = false;
  bool passed_once_ = false;
  int64_t consecutive_failures_ = 0;
  int64_t probes_ = 0;
  std::string last_error_;
};

// An instance the agent should probe now: desired here, its domain running at this generation.
struct HealthTarget {
  std::string instance;
  int64_t generation = 0;
  std::string ip;
  HealthCheck check;
};

// What the agent reports about one probed instance.
struct InstanceHealth {
  int64_t generation = 0;
  HealthState state = HealthState::kUnknown;
  bool passed_once = false;
  int64_t consecutive_failures = 0;
  std::string last_error;
  bool failed = false;  // the verdict holds now: max_failed or more failures in a row
  bool operator==(const InstanceHealth&) const = default;
};
using HealthReport = std::map<std::string, InstanceHealth>;  // instance -> health

// The verdict for one instance generation: max_failed probes failed in a row.
struct HealthVerdict {
  std::string instance;
  int64_t generation = 0;
  int64_t failures = 0;
  std::string last_error;
};

class HealthMonitor {
 public:
  // Sets the instances to probe. A new instance, or a new generation of one, starts unknown and
  // is first probed one interval after `now` (its domain has just started); a changed check
  // starts over the same way. Instances no longer listed are dropped with their results (and
  // results still in flight for them are ignored).
  void Sync(const std::vector<HealthTarget>& targets, Clock::TimePoint now);

  // The probes due at `now`: each is marked in flight (never two at once for one instance) and
  // its next probe is scheduled one interval later. Instances with a verdict are probed on (their
  // health is reported as it is until the controller heals them).
  std::vector<HealthTarget> TakeDue(Clock::TimePoint now);

  // The result of a probe handed out by TakeDue. Stale results (another generation, an instance
  // dropped meanwhile, nothing in flight) are ignored. Returns the verdict when this result
  // reached it.
  std::optional<HealthVerdict> OnResult(const std::string& instance, int64_t generation, bool ok,
                                        const std::string& detail);

  // The earliest time a probe is due (nullopt: none is).
  std::optional<Clock::TimePoint> NextDue() const;

  HealthReport Report() const;
  bool empty() const { return entries_.empty(); }

 private:
  struct Entry {
    HealthTarget target;
    HealthTracker tracker;
    Clock::TimePoint next_due{};
    bool in_flight = false;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace regen
