#include "agent/fence_timing.h"

#include "common/log.h"
#include "config/fields.h"

namespace regen {

using std::chrono::milliseconds;

std::string FenceTimingProblem(milliseconds fencing_lease, milliseconds host_down_after,
                               std::optional<milliseconds> watchdog_timeout) {
  milliseconds needed = fencing_lease + watchdog_timeout.value_or(milliseconds(0));
  if (host_down_after > needed + kFenceTimingMargin) return "";
  std::string have = "host_down_after " + FormatDuration(host_down_after) +
                     " (controller) is not longer than fencing_lease " +
                     FormatDuration(fencing_lease);
  if (watchdog_timeout) {
    have += " + watchdog timeout " + FormatDuration(*watchdog_timeout) +
            " (the watchdog resets this host that long after the lease runs out)";
  }
  return have + " + margin " + FormatDuration(kFenceTimingMargin) +
         ": the controller may heal this host's instances elsewhere before this host has "
         "certainly stopped them (two copies). Set host_down_after in controller.yaml above " +
         FormatDuration(needed + kFenceTimingMargin) +
         (watchdog_timeout ? ", or lower fencing_lease or watchdog_timeout"
                           : ", or lower fencing_lease");
}

void FenceTimingCheck::SetWatchdogTimeout(std::optional<milliseconds> timeout) {
  MutexLock lock(mu_);
  if (watchdog_ == timeout) return;
  watchdog_ = timeout;
  CheckLocked(false);
}

void FenceTimingCheck::Note(milliseconds fencing_lease, milliseconds host_down_after,
                            bool new_connection) {
  MutexLock lock(mu_);
  bool changed = fencing_lease != lease_ || host_down_after != down_after_;
  lease_ = fencing_lease;
  down_after_ = host_down_after;
  if (changed || new_connection) CheckLocked(true);
}

void FenceTimingCheck::CheckLocked(bool log_anyway) {
  if (down_after_ <= milliseconds(0)) return;
  std::string problem = FenceTimingProblem(lease_, down_after_, watchdog_);
  if (!problem.empty() && (log_anyway || problem != problem_)) spdlog::error("{}", problem);
  problem_ = std::move(problem);
}

std::string FenceTimingCheck::problem() {
  MutexLock lock(mu_);
  return problem_;
}

nlohmann::json FenceTimingCheck::StatusJson() {
  MutexLock lock(mu_);
  if (down_after_ <= milliseconds(0)) return nullptr;
  nlohmann::json j{{"fencing_lease_ms", lease_.count()},
                   {"host_down_after_ms", down_after_.count()}};
  if (watchdog_) j["watchdog_timeout_ms"] = watchdog_->count();
  if (!problem_.empty()) j["problem"] = problem_;
  return j;
}

}  // namespace regen
