// Planned moves (the operator's failover and drain): an instance leaves a live host, so the new
// host creates it only once the old one no longer runs it (state moving, moving_from set; never
// two copies). FinishMove is the step that lets the new host go ahead. Main loop thread only.
#pragma once

#include <set>
#include <string>

#include "controller/controller_core.h"
#include "controller/desired_state.h"
#include "controller/healer.h"

namespace regen {

// The instance once its old host let go of it: state creating on its new host.
InstanceRecord FinishMove(const InstanceRecord& inst);

class Moves {
 public:
  Moves(ControllerCore& core, DesiredState& desired, Healer& healer)
      : core_(core), desired_(desired), healer_(healer) {}

  Result<v1::FailoverResponse> Failover(const v1::FailoverRequest& request);
  Result<v1::DrainResponse> Drain(const v1::DrainRequest& request);
  // Sets a host's state with its event (stored together, and in the allocator).
  void SetHostState(const std::string& host, HostState state, const std::string& why);

 private:
  ControllerCore& core_;
  DesiredState& desired_;
  Healer& healer_;
};

}  // namespace regen
