#include "controller/host_liveness.h"

namespace regen {

LivenessVerdict JudgeHost(HostState state, Clock::Duration silent, const ControllerConfig& config) {
  if (state == HostState::kDown) return LivenessVerdict::kNoChange;
  if (silent > config.host_down_after) return LivenessVerdict::kDown;
  if (state == HostState::kUp && silent > config.heartbeat_interval * 3 / 2) {
    return LivenessVerdict::kSuspect;
  }
  return LivenessVerdict::kNoChange;
}

bool SessionIsLive(Clock::Duration since_last_heartbeat, const ControllerConfig& config) {
  return since_last_heartbeat < config.heartbeat_interval * 3 / 2;
}

}  // namespace regen
