#include "controller/moves.h"

#include "common/log.h"
#include "common/names.h"

namespace regen {

InstanceRecord FinishMove(const InstanceRecord& inst) {
  spdlog::info("instance {} left {}; creating it on {}", inst.name, inst.moving_from,
               inst.allocation.host);
  InstanceRecord out = inst;
  out.moving_from.clear();
  out.state = InstanceState::kCreating;
  return out;
}

void Moves::SetHostState(const std::string& host, HostState state, const std::string& why) {
  const HostRecord* cur = core_.state.host(host);
  if (cur == nullptr || cur->state == state) return;
  HostRecord next = *cur;
  std::string old = HostStateName(cur->state);
  next.state = state;
  // The operator's states are kept through suspect and down (HostRecord::held).
  if (state == HostState::kUp || state == HostState::kCordoned || state == HostState::kDraining) {
    next.held = state;
  }
  spdlog::log(state == HostState::kUp ? spdlog::level::info : spdlog::level::warn,
              "host {} {} -> {}: {}", host, old, HostStateName(state), why);
  StateChange change;
  change.hosts.push_back(next);
  change.events.push_back(core_.MakeEvent(EventKind::kHostState, nullptr, host,
                                          old + " -> " + HostStateName(state) + ": " + why));
  core_.Commit(std::move(change));
  Status s = core_.alloc().SetHostState(host, state);
  if (!s.ok()) spdlog::error("allocator: host {}: {}", host, s.message());
}

Result<v1::FailoverResponse> Moves::Failover(const v1::FailoverRequest& request) {
  RETURN_IF_ERROR(ValidateName("instance", request.instance()));
  if (!request.to_host().empty()) RETURN_IF_ERROR(ValidateName("to_host", request.to_host()));
  const InstanceRecord* found = core_.state.instance(request.instance());
  if (found == nullptr) {
    return NotFound("instance \"" + request.instance() + "\" does not exist");
  }
  const std::string name = found->name;
  v1::FailoverResponse resp;
  if (!request.operation_id().empty()) {
    ASSIGN_OR_RETURN(auto done, core_.state.FindOperation(request.operation_id()));
    if (done) {
      *resp.mutable_instance() = desired_.InfoOf(*found);
      return resp;
    }
  }
  if (!IsActive(found->state)) {
    return FailedPrecondition("instance " + name + " is " + InstanceStateName(found->state) +
                              (found->reason.empty() ? "" : " (" + found->reason + ")") +
                              "; only a running instance can fail over");
  }
  if (!request.to_host().empty() && request.to_host() == found->allocation.host) {
    return InvalidArgument("failover " + name + ": --to " + request.to_host() +
                           " is the host it already runs on");
  }
  const ServiceRuntime* svc = core_.state.service(found->service);
  if (svc == nullptr) return Internal("instance " + name + " has no service");
  AllocatorState trial = core_.alloc();
  ASSIGN_OR_RETURN(
      PlacementPlan plan,
      trial.PlaceInstances(svc->model, {{name, found->update_domain, request.to_host()}}));
  if (plan.placed.empty()) {
    return FailedPrecondition("failover " + name + ": no other host can take it: " +
                              (plan.pending.empty() ? "" : plan.pending[0].reason));
  }
  core_.set_alloc(std::move(trial));
  std::set<std::string> touched;
  StateChange change;
  healer_.RecordPlacement(*svc, plan, "failover requested by operator", true, change, touched);
  if (!request.operation_id().empty()) {
    change.operations.push_back({request.operation_id(), "failover", name, "{}", "done",
                                 core_.clock.WallMillis(), core_.clock.WallMillis()});
  }
  core_.Commit(std::move(change));
  if (!request.operation_id().empty()) {
    spdlog::info("op={} kind=failover target={}: done", request.operation_id(), name);
  }
  desired_.PushDesired(touched);
  *resp.mutable_instance() = desired_.InfoOf(*core_.state.instance(name));
  return resp;
}

Result<v1::DrainResponse> Moves::Drain(const v1::DrainRequest& request) {
  RETURN_IF_ERROR(ValidateName("host", request.host()));
  const HostRecord* host = core_.state.host(request.host());
  if (host == nullptr) return NotFound("host \"" + request.host() + "\" is not known");
  if (host->state == HostState::kDown) {
    return FailedPrecondition("host " + request.host() +
                              " is down; its instances are healed already");
  }
  SetHostState(request.host(), HostState::kDraining, "drain requested by operator");
  v1::DrainResponse resp;
  std::set<std::string> touched;
  StateChange change;
  std::vector<std::string> moved;
  for (const auto& [name, inst] : core_.state.instances()) {
    if (inst.allocation.host != request.host() || !IsActive(inst.state) ||
        !inst.moving_from.empty()) {
      continue;
    }
    const ServiceRuntime* svc = core_.state.service(inst.service);
    if (svc == nullptr) continue;
    auto plan = core_.alloc().PlaceInstances(svc->model, {{name, inst.update_domain, ""}});
    if (!plan.ok() || plan->placed.empty()) {
      std::string why = !plan.ok() ? plan.status().message() : plan->pending[0].reason;
      spdlog::warn("drain {}: {} stays: {}", request.host(), name, why);
      continue;
    }
    healer_.RecordPlacement(*svc, *plan, "host " + request.host() + " drained", true, change,
                            touched);
    moved.push_back(name);
  }
  core_.Commit(std::move(change));
  for (const auto& name : moved) *resp.add_moved() = desired_.InfoOf(*core_.state.instance(name));
  desired_.PushDesired(touched);
  return resp;
}

}  // namespace regen
