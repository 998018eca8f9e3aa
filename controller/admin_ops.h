// Admin operations behind regenctl: apply a service (create, scale, update what may change),
// delete a service, and the read-only views (services, instances, hosts, events). Every apply and
// delete is idempotent by its operation id and stored in one commit. Main loop thread only.
#pragma once

#include <string>
#include <vector>

#include "controller/controller_core.h"
#include "controller/desired_state.h"
#include "controller/healer.h"
#include "controller/upgrade_driver.h"

namespace regen {

class AdminOps {
 public:
  AdminOps(ControllerCore& core, DesiredState& desired, Healer& healer, UpgradeDriver& upgrades)
      : core_(core), desired_(desired), healer_(healer), upgrades_(upgrades) {}

  Result<v1::ApplyServiceResponse> ApplyService(const v1::ApplyServiceRequest& request);
  // Stops and removes every instance of the service (their allocations, IPs and MACs are freed;
  // their DNS names go with the next topology), then the service and its upgrade record. Refused
  // while an upgrade of it is active unless `force`. Unknown service: NOT_FOUND, nothing changes.
  Result<v1::DeleteServiceResponse> DeleteService(const v1::DeleteServiceRequest& request);
  v1::ListServicesResponse ListServices() const;
  Result<v1::GetServiceResponse> GetService(const std::string& name) const;
  Result<v1::ListInstancesResponse> ListInstances(const std::string& service) const;
  v1::ListHostsResponse ListHosts() const;

 private:
  // A new service: placed in full-service mode on a trial allocator, stored with its instances.
  Result<v1::ApplyServiceResponse> CreateService(const v1::ApplyServiceRequest& request,
                                                 const ServiceSpec& spec, const ServiceModel& model,
                                                 StateChange& change,
                                                 std::set<std::string>& touched);
  // A changed spec of a deployed service: only instances, versions, health_check and placement
  // may change; scale-down removes the highest indexes (and takes them off the upgrade's healing
  // list), scale-up places new ones with the version the upgrade's rule gives their UD.
  Status UpdateService(const v1::ApplyServiceRequest& request, const ServiceRuntime& current,
                       const ServiceSpec& spec, const ServiceModel& model, StateChange& change,
                       std::set<std::string>& touched);
  void AddPending(const std::string& service, v1::ApplyServiceResponse& resp) const;

  ControllerCore& core_;
  DesiredState& desired_;
  Healer& healer_;
  UpgradeDriver& upgrades_;
};

}  // namespace regen
