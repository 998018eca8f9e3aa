// Maintenance of the controller's machine (`regenctl maintenance start --for D`): while it runs,
// every heartbeat ack grants the agents a hold (they keep their domains even with no controller
// at all) and the controller heals nothing: no host is declared down, failures are recorded and
// healed when it ends. Bounded (maintenance_max), stored (meta key "maintenance"), evented.
// MaintenanceRecord and its codec are pure; Maintenance is the controller's main loop's.
#pragma once

#include <cstdint>
#include <string>

#include "common/clock.h"
#include "common/proto/regen.pb.h"
#include "common/status.h"

namespace regen {

struct MaintenanceRecord {
  int64_t started_unix_ms = 0;  // 0: never started
  int64_t until_unix_ms = 0;    // it ends by itself then
  int64_t ended_unix_ms = 0;    // 0 while it runs
  // The latest end ever granted to agents (a start that shortens a running maintenance, or an
  // early end, does not take back holds already granted).
  int64_t holds_until_unix_ms = 0;
  std::string reason;
  bool operator==(const MaintenanceRecord&) const = default;

  bool Active(int64_t now_unix_ms) const {
    return started_unix_ms > 0 && ended_unix_ms == 0 && now_unix_ms < until_unix_ms;
  }
  // Holds granted while it ran may last until until_unix_ms, even after an early end: no host
  // is declared down before then (plus host_down_after) unless its agent said it let go.
  int64_t HoldsUntil(int64_t now_unix_ms) const {
    return holds_until_unix_ms > now_unix_ms ? holds_until_unix_ms : 0;
  }
};

inline constexpr const char* kMaintenanceKey = "maintenance";
std::string MaintenanceToJson(const MaintenanceRecord& m);
Result<MaintenanceRecord> ParseMaintenanceJson(const std::string& text);
v1::MaintenanceStatus MaintenanceStatusOf(const MaintenanceRecord& m, int64_t now_unix_ms);

// A wall-clock time as the steady clock's time point (for deadlines kept in memory).
Clock::TimePoint SteadyFromUnixMs(const Clock& clock, int64_t unix_ms);

}  // namespace regen
