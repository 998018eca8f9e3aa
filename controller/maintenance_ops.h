// regenctl maintenance start/end/status, and the maintenance's effect on the leases: while it
// runs, the lease keeper grants every agent a hold until its end. Main loop thread only.
#pragma once

#include "controller/controller_core.h"

namespace regen {

class MaintenanceOps {
 public:
  explicit MaintenanceOps(ControllerCore& core) : core_(core) {}

  // After a load: a running maintenance goes on granting holds, and holds granted before the
  // restart bound every host's down judgement.
  void Load();
  // Starts it for request.duration_ms (1 s .. maintenance_max), or moves the end of a running
  // one. Idempotent with an operation id.
  Result<v1::MaintenanceStatus> Start(const v1::MaintenanceStartRequest& request);
  // Ends a running maintenance now (holds already granted still bound the down judgement).
  Result<v1::MaintenanceStatus> End(const v1::MaintenanceEndRequest& request);
  v1::MaintenanceStatus Status() const;
  // Ends a maintenance whose time is up; true when it ended now.
  bool Expire();

 private:
  // Stores `next` with its event (and the operation id), then tells the lease keeper.
  void Commit(const MaintenanceRecord& next, const std::string& message,
              const std::string& operation_id);

  ControllerCore& core_;
};

}  // namespace regen
