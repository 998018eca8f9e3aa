// Checks that the controller declares this host down only after its fence is certain (DESIGN
// "Liveness, fencing and high availability"): host_down_after must exceed fencing_lease plus, with
// a watchdog device, the watchdog's timeout (the backstop stops petting it when the lease runs out
// and the device resets the host at its timeout), plus kFenceTimingMargin. The controller link
// feeds it the values of each heartbeat ack; a violation is logged as an error once per connection
// (and again when a value changes) and shown in `regen-agent status`. Thread-safe.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/thread_annotations.h"

namespace regen {

// Scheduling slack between the agent's lease (counted from when a heartbeat left) and the
// controller's host_down_after (counted from when it arrived).
inline constexpr std::chrono::milliseconds kFenceTimingMargin{250};

// "" when host_down_after leaves room for the fence; else an error naming the three values and
// what to set. watchdog_timeout: nullopt without a watchdog device.
std::string FenceTimingProblem(std::chrono::milliseconds fencing_lease,
                               std::chrono::milliseconds host_down_after,
                               std::optional<std::chrono::milliseconds> watchdog_timeout);

class FenceTimingCheck {
 public:
  // The watchdog device's timeout (agent.yaml watchdog_timeout, or what the device says);
  // nullopt: no watchdog device. Re-checks the last values heard, if any.
  void SetWatchdogTimeout(std::optional<std::chrono::milliseconds> timeout);
  // The values of one heartbeat ack; `new_connection`: the first ack of a connection.
  void Note(std::chrono::milliseconds fencing_lease, std::chrono::milliseconds host_down_after,
            bool new_connection);
  // The current problem, "" if none (or nothing heard yet).
  std::string problem();
  // {fencing_lease_ms, host_down_after_ms, watchdog_timeout_ms?, problem?}; null before a value.
  nlohmann::json StatusJson();

 private:
  void CheckLocked(bool log_anyway) REQUIRES(mu_);

  Mutex mu_;
  std::optional<std::chrono::milliseconds> watchdog_ GUARDED_BY(mu_);
  std::chrono::milliseconds lease_ GUARDED_BY(mu_){0};
  std::chrono::milliseconds down_after_ GUARDED_BY(mu_){0};  // 0: not heard yet
  std::string problem_ GUARDED_BY(mu_);
};

}  // namespace regen
