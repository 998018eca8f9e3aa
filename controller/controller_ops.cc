// Controller's entry points for regenctl service delete and host undrain/cordon/uncordon (kept
// out of controller.cc, which holds the agent paths). Main loop thread only.
#include "controller/controller.h"

namespace regen {

Result<v1::DeleteServiceResponse> Controller::DeleteService(const v1::DeleteServiceRequest& r) {
  StepGuard step(this);
  return admin_.DeleteService(r);
}

Result<v1::HostInfo> Controller::ChangeHost(const v1::HostRequest& r, HostVerb verb) {
  StepGuard step(this);
  RETURN_IF_ERROR(host_ops_.Apply(r, verb));
  if (verb != HostVerb::kCordon) healer_.PlacePending();  // room may have appeared there
  const v1::ListHostsResponse hosts = ListHosts();
  for (const v1::HostInfo& info : hosts.hosts()) {
    if (info.name() == r.host()) return info;
  }
  return NotFound("host \"" + r.host() + "\" is not known");
}

}  // namespace regen
