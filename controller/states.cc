#include "controller/states.h"

#include <array>
#include <string>
#include <utility>

#include "common/names.h"

namespace regen {

namespace {

constexpr std::array<std::pair<InstanceState, const char*>, 5> kInstanceStates{{
    {InstanceState::kPending, "pending"},
    {InstanceState::kCreating, "creating"},
    {InstanceState::kRunning, "running"},
    {InstanceState::kFailed, "failed"},
    {InstanceState::kMoving, "moving"},
}};

constexpr std::array<std::pair<EventKind, const char*>, 18> kEventKinds{{
    {EventKind::kHostState, "host_state"},
    {EventKind::kService, "service"},
    {EventKind::kPlacement, "placement"},
    {EventKind::kReallocation, "reallocation"},
    {EventKind::kPending, "pending"},
    {EventKind::kRunning, "running"},
    {EventKind::kFailure, "failure"},
    {EventKind::kMoved, "moved"},
    {EventKind::kTopology, "topology"},
    {EventKind::kUpgrade, "upgrade"},
    {EventKind::kUpgradePreempted, "upgrade_preempted"},
    {EventKind::kUpgradeInstance, "upgrade_instance"},
    {EventKind::kRollbackInstance, "rollback_instance"},
    {EventKind::kStagingFailed, "staging_failed"},
    {EventKind::kDnsUpdateFailed, "dns_update_failed"},
    {EventKind::kDnsUpdateRecovered, "dns_update_recovered"},
    {EventKind::kFenced, "fenced"},
    {EventKind::kMaintenance, "maintenance"},
}};

template <typename Table>
std::string Known(const Table& table) {
  std::string out;
  for (const auto& [value, name] : table) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

}  // namespace

const char* InstanceStateName(InstanceState state) {
  for (const auto& [value, name] : kInstanceStates) {
    if (value == state) return name;
  }
  return "unknown";
}

Result<InstanceState> ParseInstanceState(std::string_view text) {
  for (const auto& [value, name] : kInstanceStates) {
    if (text == name) return value;
  }
  return InvalidArgument("instance state: unknown value " + QuoteValue(text) + " (one of " +
                         Known(kInstanceStates) + ")");
}

const char* EventKindName(EventKind kind) {
  for (const auto& [value, name] : kEventKinds) {
    if (value == kind) return name;
  }
  return "unknown";
}

Result<EventKind> ParseEventKind(std::string_view text) {
  for (const auto& [value, name] : kEventKinds) {
    if (text == name) return value;
  }
  return InvalidArgument("event kind: unknown value " + QuoteValue(text) + " (one of " +
                         Known(kEventKinds) + ")");
}

}  // namespace regen
