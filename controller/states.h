// The controller's typed states: an instance's lifecycle state and the kinds of events it records.
// Stored as their names (store rows, event rows, the wire); parsed back with the Parse functions.
// Pure; any thread. (A host's state, HostState, lives in controller/allocator.h.)
#pragma once

#include <ostream>
#include <string_view>

#include "common/status.h"

namespace regen {

// pending: not placed (no room, or not yet). creating: placed, its host creates the domain.
// running: its host reported it running. failed: found failed, not yet placed again.
// moving: a planned move (failover, drain); the new host creates it once the old one let go.
enum class InstanceState { kPending, kCreating, kRunning, kFailed, kMoving };
const char* InstanceStateName(InstanceState state);
Result<InstanceState> ParseInstanceState(std::string_view text);

// States in which an instance occupies its host and can fail there.
inline bool IsActive(InstanceState s) {
  return s == InstanceState::kCreating || s == InstanceState::kRunning;
}

// What an event records (its `kind` column and JSON field).
enum class EventKind {
  kHostState,           // a host joined, connected, went suspect/down/draining/up
  kService,             // a service was created or changed
  kPlacement,           // an instance was placed for the first time
  kReallocation,        // an instance moved to another host (heal, failover, drain)
  kPending,             // an instance could not be placed
  kRunning,             // an instance runs (after a create, a heal, an upgrade step)
  kFailure,             // an instance failed
  kMoved,               // a planned move's old host let go of the instance
  kTopology,            // a new topology revision
  kUpgrade,             // an upgrade changed state
  kUpgradePreempted,    // an upgrade was pre-empted by healing (its own kind: counted in metrics)
  kUpgradeInstance,     // an instance is re-created with the upgrade's version
  kRollbackInstance,    // an instance is re-created with the version rolled back to
  kStagingFailed,       // a host could not stage an upgrade's image
  kDnsUpdateFailed,     // the DNS server refused or did not answer an update
  kDnsUpdateRecovered,  // DNS updates succeed again
  kFenced,              // a host's agent destroyed an instance for safety (its lease ran out)
  kMaintenance,         // maintenance started or ended (regenctl maintenance)
};
const char* EventKindName(EventKind kind);
Result<EventKind> ParseEventKind(std::string_view text);

// For test failure messages and logs: the state's or kind's name.
inline std::ostream& operator<<(std::ostream& os, InstanceState s) {
  return os << InstanceStateName(s);
}
inline std::ostream& operator<<(std::ostream& os, EventKind k) { return os << EventKindName(k); }

}  // namespace regen
