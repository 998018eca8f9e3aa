// Host liveness: how long a host's agent has been silent decides whether it is suspect (missed a
// heartbeat) or down (past host_down_after, longer than the agent's fencing lease: by then it has
// destroyed its own domains), and whether a new agent session may replace an existing one. Pure
// functions; any thread.
#pragma once

#include "common/clock.h"
#include "config/controller_config.h"
#include "controller/allocator.h"

namespace regen {

enum class LivenessVerdict {
  kNoChange,  // nothing to do
  kSuspect,   // an up host missed a heartbeat (more than 1.5 heartbeat intervals of silence)
  kDown,      // silent for longer than host_down_after: heal its instances elsewhere
};

// What `silent` (time since the host's last heartbeat) means for a host in `state`.
LivenessVerdict JudgeHost(HostState state, Clock::Duration silent, const ControllerConfig& config);

// A session that heartbeat within 1.5 intervals belongs to a live agent: a second session for the
// same host is refused. A silent one is a dead connection nobody closed (host rebooted, link
// cut): a newcomer replaces it.
bool SessionIsLive(Clock::Duration since_last_heartbeat, const ControllerConfig& config);

}  // namespace regen
