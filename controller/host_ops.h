// The operator's host states beyond drain (regenctl host undrain, cordon, uncordon): undrain and
// uncordon make a host take new instances again (state up); cordon keeps what runs there and
// places nothing new (state cordoned). Each is idempotent by its operation id and stored in one
// commit with its event. Main loop thread only.
#pragma once

#include <string>

#include "controller/controller_core.h"

namespace regen {

enum class HostVerb { kUndrain, kCordon, kUncordon };
const char* HostVerbName(HostVerb verb);  // "undrain", "cordon", "uncordon"

class HostOps {
 public:
  explicit HostOps(ControllerCore& core) : core_(core) {}

  // OK when the host changed state, or when `request.operation_id()` was applied before (then
  // nothing changes). Unknown host: NOT_FOUND; a host in a state the verb does not apply to:
  // FAILED_PRECONDITION naming the host, its state and what to do. Nothing changes on an error.
  Status Apply(const v1::HostRequest& request, HostVerb verb);

 private:
  ControllerCore& core_;
};

}  // namespace regen
