// Admin operations behind regenctl: apply a service (create, scale, update what may change),
// and the read-only views (services, instances, hosts, events). Every apply is idempotent by its
// operation id and stored in one commit. Main loop thread only.
#pragma once

#include <string>
#include <vector>

#include "controller/controller_core.h"
#include "controller/desired_state.h"
#include "controller/healer.h"

namespace regen {

class AdminOps {
 public:
  AdminOps(ControllerCore& core, DesiredState& desired, Healer& healer)
      : core_(core), desired_(desired), healer_(healer) {}

  Result<v1::ApplyServiceResponse> ApplyService(const v1::ApplyServiceRequest& request);
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
  // may change; scale-down removes the highest indexes, scale-up places new ones.
  Status UpdateService(const v1::ApplyServiceRequest& request, const ServiceRuntime& current,
                       const ServiceSpec& spec, const ServiceModel& model, StateChange& change,
                       std::set<std::string>& touched);
  void AddPending(const std::string& service, v1::ApplyServiceResponse& resp) const;

  ControllerCore& core_;
  DesiredState& desired_;
  Healer& healer_;
};

}  // namespace regen
