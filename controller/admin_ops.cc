#include "controller/admin_ops.h"

#include <algorithm>

#include "common/log.h"
#include "common/names.h"

namespace regen {

namespace {

Resources Add(Resources a, const Resources& b) {
  a.vcpus += b.vcpus;
  a.memory_mib += b.memory_mib;
  a.disk_gib += b.disk_gib;
  a.bandwidth_mbps += b.bandwidth_mbps;
  return a;
}

// OK when `spec` changes only what may change on a deployed service.
Status CheckUpdatable(const std::string& file, const ServiceSpec& old, const ServiceSpec& spec) {
  auto refuse = [&](const std::string& field, const std::string& from, const std::string& to) {
    return FailedPrecondition(file + ": service " + spec.name + ": changing " + field +
                              " of a deployed service is not supported (\"" + from + "\" -> \"" +
                              to + "\"); only instances, versions, health_check " +
                              "and placement may change; versions roll out with `regenctl "
                              "upgrade start`");
  };
  if (!(old.flavor == spec.flavor))
    return refuse("flavor", DescribeResources(old.flavor), DescribeResources(spec.flavor));
  if (old.subnet != spec.subnet) return refuse("network.subnet", old.subnet, spec.subnet);
  if (old.ip_policy != spec.ip_policy)
    return refuse("network.ip_policy", old.ip_policy, spec.ip_policy);
  if (old.update_domains != spec.update_domains)
    return refuse("update_domains", std::to_string(old.update_domains),
                  std::to_string(spec.update_domains));
  if (old.version != spec.version) return refuse("version", old.version, spec.version);
  return Status::Ok();
}

}  // namespace

void AdminOps::AddPending(const std::string& service, v1::ApplyServiceResponse& resp) const {
  for (const auto& [name, inst] : core_.state.instances()) {
    if (inst.service == service && inst.state == InstanceState::kPending)
      resp.add_pending(name + ": " + inst.reason);
  }
}

Result<v1::ApplyServiceResponse> AdminOps::CreateService(const v1::ApplyServiceRequest& request,
                                                         const ServiceSpec& spec,
                                                         const ServiceModel& model,
                                                         StateChange& change,
                                                         std::set<std::string>& touched) {
  ServiceRuntime svc{{spec.name, request.spec_yaml(), spec.version, 1}, spec, model};
  AllocatorState trial = core_.alloc();
  ASSIGN_OR_RETURN(PlacementPlan plan, trial.PlaceService(model));
  EventRecord e = core_.MakeEvent(
      EventKind::kService, nullptr, "",
      "service " + spec.name + " created: " + std::to_string(spec.instances) + " instances in " +
          std::to_string(spec.update_domains) + " update domains, " +
          DescribeResources(spec.flavor) + " each, version " + spec.version);
  e.service = spec.name;
  change.events.push_back(std::move(e));
  healer_.RecordPlacement(svc, plan, "deployed", false, change, touched);
  change.services.push_back(std::move(svc));
  core_.set_alloc(std::move(trial));
  v1::ApplyServiceResponse resp;
  resp.set_created(true);
  return resp;
}

Status AdminOps::UpdateService(const v1::ApplyServiceRequest& request,
                               const ServiceRuntime& current, const ServiceSpec& spec,
                               const ServiceModel& model, StateChange& change,
                               std::set<std::string>& touched) {
  const ServiceSpec& old = current.spec;
  ServiceRuntime updated{current.record, spec, model};
  updated.record.spec_yaml = request.spec_yaml();
  updated.record.generation += 1;
  std::vector<InstanceRequest> added;
  for (int64_t i = old.instances; i < spec.instances; ++i) {
    added.push_back({spec.name + "-" + std::to_string(i), i % spec.update_domains, ""});
  }
  EventRecord e =
      core_.MakeEvent(EventKind::kService, nullptr, "",
                      "service " + spec.name + " updated: " + std::to_string(old.instances) +
                          " -> " + std::to_string(spec.instances) + " instances");
  e.service = spec.name;
  change.events.push_back(std::move(e));
  // Scale-up is placed on a trial allocator so that a refusal changes nothing.
  AllocatorState trial = core_.alloc();
  // Removals: the instance leaves its host's desired set and frees its allocation.
  for (int64_t i = spec.instances; i < old.instances; ++i) {
    std::string name = spec.name + "-" + std::to_string(i);
    const InstanceRecord* inst = core_.state.instance(name);
    if (inst == nullptr) continue;
    touched.insert(inst->allocation.host);
    if (!inst->moving_from.empty()) touched.insert(inst->moving_from);
    (void)trial.Release(name);
    change.deleted_instances.push_back(name);
  }
  // One being healed is not waited for any more: the upgrade it pre-empted resumes.
  upgrades_.ForgetRemoved(spec.name, change.deleted_instances, change);
  if (!added.empty()) {
    ASSIGN_OR_RETURN(PlacementPlan plan, trial.PlaceInstances(model, added));
    // During an upgrade a new instance runs what its UD runs (or is about to run): its version
    // is set here, and RecordPlacement keeps it.
    for (const auto& r : added) {
      InstanceRecord inst;
      inst.name = r.name;
      inst.service = spec.name;
      inst.version = upgrades_.VersionForNew(spec.name, r.update_domain, old.version);
      change.Put(inst);
    }
    healer_.RecordPlacement(updated, plan, "scaled up", false, change, touched);
  }
  change.services.push_back(std::move(updated));
  core_.set_alloc(std::move(trial));
  return Status::Ok();
}

Result<v1::ApplyServiceResponse> AdminOps::ApplyService(const v1::ApplyServiceRequest& request) {
  std::string file = request.file_name().empty() ? "<request>" : request.file_name();
  ASSIGN_OR_RETURN(ServiceSpec spec, ParseServiceSpec(request.spec_yaml(), file));
  ASSIGN_OR_RETURN(ServiceModel model, ModelOf(spec));
  v1::ApplyServiceResponse resp;
  resp.set_service(spec.name);
  if (!request.operation_id().empty()) {
    ASSIGN_OR_RETURN(auto done, core_.state.FindOperation(request.operation_id()));
    if (done) {
      AddPending(spec.name, resp);
      return resp;  // applied before: nothing happens twice
    }
  }
  const ServiceRuntime* existing = core_.state.service(spec.name);
  StateChange change;
  std::set<std::string> touched;
  if (existing == nullptr) {
    ASSIGN_OR_RETURN(v1::ApplyServiceResponse created,
                     CreateService(request, spec, model, change, touched));
    resp.set_created(created.created());
  } else {
    RETURN_IF_ERROR(CheckUpdatable(file, existing->spec, spec));
    if (existing->record.spec_yaml == request.spec_yaml()) return resp;  // unchanged
    RETURN_IF_ERROR(UpdateService(request, *existing, spec, model, change, touched));
  }
  if (!request.operation_id().empty()) {
    change.operations.push_back({request.operation_id(), "deploy", spec.name, "{}", "done",
                                 core_.clock.WallMillis(), core_.clock.WallMillis()});
  }
  core_.Commit(std::move(change));
  if (!request.operation_id().empty() && !core_.step_store_error) {
    spdlog::info("op={} kind=deploy target={}: done", request.operation_id(), spec.name);
  }
  desired_.PushDesired(touched);
  AddPending(spec.name, resp);
  return resp;
}

Result<v1::DeleteServiceResponse> AdminOps::DeleteService(const v1::DeleteServiceRequest& request) {
  const std::string& name = request.service();
  RETURN_IF_ERROR(ValidateName("service", name));
  v1::DeleteServiceResponse resp;
  resp.set_service(name);
  if (!request.operation_id().empty()) {
    ASSIGN_OR_RETURN(auto done, core_.state.FindOperation(request.operation_id()));
    if (done) return resp;  // deleted before: nothing happens twice
  }
  if (core_.state.service(name) == nullptr) {
    return NotFound("service \"" + name + "\" does not exist");
  }
  const UpgradeState* up = core_.state.upgrade(name);
  const bool abandons_upgrade = up != nullptr && IsActive(*up);
  if (abandons_upgrade && !request.force()) {
    return FailedPrecondition("service " + name + " has an active upgrade (" +
                              DescribeUpgrade(*up) +
                              "); let it end or roll it back first, or delete with --force");
  }
  AllocatorState trial = core_.alloc();
  StateChange change;
  std::set<std::string> touched;
  for (const auto& [iname, inst] : core_.state.instances()) {
    if (inst.service != name) continue;
    touched.insert(inst.allocation.host);
    touched.insert(inst.moving_from);
    (void)trial.Release(iname);  // a pending instance holds nothing
    change.deleted_instances.push_back(iname);
    resp.add_removed(iname);
  }
  change.deleted_services.push_back(name);
  std::string msg = "service " + name + " deleted: " + std::to_string(resp.removed_size()) +
                    " instances stopped and removed, their addresses freed";
  if (abandons_upgrade) msg += "; its upgrade was abandoned (--force): " + DescribeUpgrade(*up);
  EventRecord e = core_.MakeEvent(EventKind::kService, nullptr, "", msg);
  e.service = name;
  change.events.push_back(std::move(e));
  if (!request.operation_id().empty()) {
    change.operations.push_back({request.operation_id(), "delete", name, "{}", "done",
                                 core_.clock.WallMillis(), core_.clock.WallMillis()});
  }
  core_.set_alloc(std::move(trial));
  core_.Commit(std::move(change));
  if (core_.step_store_error) return resp;  // refused (the caller answers UNAVAILABLE)
  spdlog::info("op={} kind=delete target={}: {}", request.operation_id(), name, msg);
  for (const auto& iname : resp.removed()) {
    core_.failed_at_ms.erase(iname);
    core_.detection.erase(iname);
  }
  upgrades_.Forget(name);
  desired_.PushDesired(touched);  // their agents destroy the domains; the topology goes first
  return resp;
}

v1::ListServicesResponse AdminOps::ListServices() const {
  v1::ListServicesResponse resp;
  for (const auto& [name, svc] : core_.state.services()) {
    auto* s = resp.add_services();
    s->set_name(name);
    s->set_instances(svc.spec.instances);
    s->set_update_domains(svc.spec.update_domains);
    s->set_version(svc.spec.version);
    *s->mutable_flavor() = ToProto(svc.spec.flavor);
    s->set_subnet(svc.spec.subnet);
    s->set_dns_name(svc.spec.dns_name);
    int64_t running = 0;
    for (const auto& [iname, inst] : core_.state.instances()) {
      if (inst.service == name && inst.state == InstanceState::kRunning) ++running;
    }
    s->set_running(running);
  }
  return resp;
}

Result<v1::GetServiceResponse> AdminOps::GetService(const std::string& name) const {
  RETURN_IF_ERROR(ValidateName("service", name));
  const ServiceRuntime* svc = core_.state.service(name);
  if (svc == nullptr) return NotFound("service \"" + name + "\" does not exist");
  v1::GetServiceResponse resp;
  const v1::ListServicesResponse all = ListServices();
  for (const auto& s : all.services()) {
    if (s.name() == name) *resp.mutable_service() = s;
  }
  resp.set_spec_yaml(svc->record.spec_yaml);
  for (const auto& [iname, inst] : core_.state.instances()) {
    if (inst.service == name) *resp.add_instances() = desired_.InfoOf(inst);
  }
  return resp;
}

Result<v1::ListInstancesResponse> AdminOps::ListInstances(const std::string& service) const {
  if (!service.empty()) {
    RETURN_IF_ERROR(ValidateName("service", service));
    if (!core_.state.service(service)) {
      return NotFound("service \"" + service + "\" does not exist");
    }
  }
  v1::ListInstancesResponse resp;
  std::vector<const InstanceRecord*> sorted;
  for (const auto& [name, inst] : core_.state.instances()) {
    if (service.empty() || inst.service == service) sorted.push_back(&inst);
  }
  std::sort(sorted.begin(), sorted.end(), [](const InstanceRecord* a, const InstanceRecord* b) {
    return a->service != b->service ? a->service < b->service : a->index < b->index;
  });
  for (const auto* inst : sorted) *resp.add_instances() = desired_.InfoOf(*inst);
  return resp;
}

v1::ListHostsResponse AdminOps::ListHosts() const {
  v1::ListHostsResponse resp;
  std::map<std::string, Resources> allocated;
  for (const auto& [name, inst] : core_.state.instances()) {
    if (!inst.allocation.host.empty())
      allocated[inst.allocation.host] =
          Add(allocated[inst.allocation.host], inst.allocation.resources);
  }
  for (const auto& [name, h] : core_.state.hosts()) {
    auto* info = resp.add_hosts();
    info->set_name(name);
    info->set_address(h.address);
    info->set_state(HostStateName(h.state));
    *info->mutable_capacity() = ToProto(h.capacity);
    *info->mutable_allocated() = ToProto(allocated[name]);
    info->set_last_heartbeat_unix_ms(h.last_heartbeat_unix_ms);
    info->set_applied_topology_revision(h.applied_topology_revision);
    info->set_domain_type(h.domain_type);
    info->set_domain_type_reason(h.domain_type_reason);
  }
  return resp;
}

}  // namespace regen
