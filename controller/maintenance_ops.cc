#include "controller/maintenance_ops.h"

#include "common/log.h"
#include "config/fields.h"

namespace regen {

namespace {

std::string Seconds(int64_t ms) { return FormatDuration(std::chrono::milliseconds(ms)); }

}  // namespace

void MaintenanceOps::Load() {
  const MaintenanceRecord& m = core_.state.maintenance();
  int64_t now = core_.clock.WallMillis();
  if (m.Active(now)) {
    core_.leases.SetHold(SteadyFromUnixMs(core_.clock, m.until_unix_ms));
    spdlog::warn("maintenance runs until {} ms from now ({}): nothing is healed until it ends",
                 m.until_unix_ms - now, m.reason);
  }
  if (int64_t holds = m.HoldsUntil(now); holds > 0) {
    core_.leases.SeedHoldBound(SteadyFromUnixMs(core_.clock, holds));
  }
}

v1::MaintenanceStatus MaintenanceOps::Status() const {
  return MaintenanceStatusOf(core_.state.maintenance(), core_.clock.WallMillis());
}

Result<v1::MaintenanceStatus> MaintenanceOps::Start(const v1::MaintenanceStartRequest& request) {
  if (!request.operation_id().empty()) {
    ASSIGN_OR_RETURN(auto done, core_.state.FindOperation(request.operation_id()));
    if (done) return Status();
  }
  const int64_t max_ms = core_.config.maintenance_max.count();
  if (request.duration_ms() < 1000 || request.duration_ms() > max_ms) {
    return InvalidArgument("maintenance duration must be between 1s and " + Seconds(max_ms) +
                           " (maintenance_max in controller.yaml), got " +
                           std::to_string(request.duration_ms()) + " ms");
  }
  int64_t now = core_.clock.WallMillis();
  MaintenanceRecord next = core_.state.maintenance();
  bool running = next.Active(now);
  if (!running) {
    next = MaintenanceRecord{};
    next.started_unix_ms = now;
    next.holds_until_unix_ms = core_.state.maintenance().holds_until_unix_ms;
  }
  next.until_unix_ms = now + request.duration_ms();
  next.holds_until_unix_ms = std::max(next.holds_until_unix_ms, next.until_unix_ms);
  if (!request.reason().empty()) next.reason = request.reason();
  std::string message = std::string(running ? "maintenance now ends" : "maintenance started") +
                        " in " + Seconds(request.duration_ms()) +
                        (next.reason.empty() ? "" : " (" + next.reason + ")") +
                        ": agents hold their domains, nothing is healed until it ends";
  Commit(next, message, request.operation_id());
  return Status();
}

Result<v1::MaintenanceStatus> MaintenanceOps::End(const v1::MaintenanceEndRequest& request) {
  if (!request.operation_id().empty()) {
    ASSIGN_OR_RETURN(auto done, core_.state.FindOperation(request.operation_id()));
    if (done) return Status();
  }
  int64_t now = core_.clock.WallMillis();
  MaintenanceRecord next = core_.state.maintenance();
  if (!next.Active(now)) {
    return FailedPrecondition("no maintenance is running (regenctl maintenance status)");
  }
  next.ended_unix_ms = now;
  Commit(next, "maintenance ended by the operator; healing resumes", request.operation_id());
  return Status();
}

bool MaintenanceOps::Expire() {
  MaintenanceRecord next = core_.state.maintenance();
  int64_t now = core_.clock.WallMillis();
  if (next.started_unix_ms == 0 || next.ended_unix_ms != 0 || now < next.until_unix_ms) {
    return false;
  }
  next.ended_unix_ms = now;
  Commit(next, "maintenance ended (its time was up); healing resumes", "");
  return true;
}

void MaintenanceOps::Commit(const MaintenanceRecord& next, const std::string& message,
                            const std::string& operation_id) {
  StateChange change;
  change.maintenance = next;
  change.events.push_back(core_.MakeEvent(EventKind::kMaintenance, nullptr, "", message));
  if (!operation_id.empty()) {
    int64_t now = core_.clock.WallMillis();
    change.operations.push_back({operation_id, "maintenance", "cluster", "{}", "done", now, now});
  }
  core_.Commit(std::move(change));
  spdlog::warn("{}", message);
  if (next.Active(core_.clock.WallMillis())) {
    core_.leases.SetHold(SteadyFromUnixMs(core_.clock, next.until_unix_ms));
  } else {
    core_.leases.SetHold(std::nullopt);
  }
}

}  // namespace regen
