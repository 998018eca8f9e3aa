// Controller's entry points for regenctl (kept out of controller.cc, which holds the agent paths):
// each is one step, answered UNAVAILABLE when the state store refused a write of it (Answer).
// Main loop thread only.
#include "controller/controller.h"
#include "controller/topology_limit.h"

namespace regen {

Result<v1::ApplyServiceResponse> Controller::ApplyService(const v1::ApplyServiceRequest& r) {
  StepGuard step(this);
  // A spec whose topology no agent could receive is refused before anything changes (a spec
  // that does not parse gets its error from ApplyService).
  if (auto spec = ParseServiceSpec(r.spec_yaml(), "<request>"); spec.ok()) {
    RETURN_IF_ERROR(CheckTopologyFits(*spec, core_.state.instances(), core_.state.hosts(),
                                      core_.config.max_topology_bytes));
  }
  return Answer(admin_.ApplyService(r));
}
Result<v1::FailoverResponse> Controller::Failover(const v1::FailoverRequest& r) {
  StepGuard step(this);
  return Answer(moves_.Failover(r));
}
Result<v1::DrainResponse> Controller::Drain(const v1::DrainRequest& r) {
  StepGuard step(this);
  return Answer(moves_.Drain(r));
}
Result<v1::UpgradeStatus> Controller::UpgradeStart(const v1::UpgradeStartRequest& r) {
  StepGuard step(this);
  return Answer(upgrades_.Start(r));
}
Result<v1::UpgradeStatus> Controller::UpgradePause(const v1::UpgradeServiceRequest& r) {
  StepGuard step(this);
  return Answer(
      upgrades_.ApplyOperatorEvent(r.service(), upgrade_event::Pause{}, r.operation_id()));
}
Result<v1::UpgradeStatus> Controller::UpgradeResume(const v1::UpgradeServiceRequest& r) {
  StepGuard step(this);
  return Answer(
      upgrades_.ApplyOperatorEvent(r.service(), upgrade_event::Resume{}, r.operation_id()));
}
Result<v1::UpgradeStatus> Controller::UpgradeNextUd(const v1::UpgradeServiceRequest& r) {
  StepGuard step(this);
  return Answer(upgrades_.ApplyOperatorEvent(r.service(), upgrade_event::NextUd{r.force()},
                                             r.operation_id()));
}
Result<v1::UpgradeStatus> Controller::UpgradeRollback(const v1::UpgradeServiceRequest& r) {
  StepGuard step(this);
  return Answer(
      upgrades_.ApplyOperatorEvent(r.service(), upgrade_event::Rollback{}, r.operation_id()));
}
Result<v1::MaintenanceStatus> Controller::MaintenanceStart(const v1::MaintenanceStartRequest& r) {
  StepGuard step(this);
  return Answer(maintenance_.Start(r));
}
Result<v1::MaintenanceStatus> Controller::MaintenanceEnd(const v1::MaintenanceEndRequest& r) {
  StepGuard step(this);
  auto status = maintenance_.End(r);
  if (status.ok()) healer_.PlacePending();  // what failed meanwhile is healed now
  return Answer(std::move(status));
}

Result<v1::DeleteServiceResponse> Controller::DeleteService(const v1::DeleteServiceRequest& r) {
  StepGuard step(this);
  return Answer(admin_.DeleteService(r));
}

Result<v1::HostInfo> Controller::ChangeHost(const v1::HostRequest& r, HostVerb verb) {
  StepGuard step(this);
  RETURN_IF_ERROR(host_ops_.Apply(r, verb));
  if (core_.step_store_error) return StepRefusal();
  if (verb != HostVerb::kCordon) healer_.PlacePending();  // room may have appeared there
  const v1::ListHostsResponse hosts = ListHosts();
  for (const v1::HostInfo& info : hosts.hosts()) {
    if (info.name() == r.host()) return info;
  }
  return NotFound("host \"" + r.host() + "\" is not known");
}

}  // namespace regen
