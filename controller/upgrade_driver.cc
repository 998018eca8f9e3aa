#include "controller/upgrade_driver.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/names.h"

namespace regen {

UpgradeDriver::UpgradeDriver(ControllerCore& core, DesiredState& desired)
    : core_(core), desired_(desired) {
  auto policy = ParseManualStepPolicy(core.config.manual_upgrade_policy);
  policy_.manual_policy = policy.ok() ? *policy : ManualStepPolicy::kBlock;
  policy_.auto_rollback = core.config.auto_rollback;
  policy_.max_failed_health_checks = core.config.max_failed_health_checks;
}

std::set<std::string> UpgradeDriver::HealingOf(const std::string& service) const {
  std::set<std::string> out;
  for (const auto& [name, inst] : core_.state.instances()) {
    if (inst.service != service) continue;
    if (inst.state == InstanceState::kFailed ||
        (inst.state == InstanceState::kPending && inst.generation > 0) ||
        ((inst.state == InstanceState::kCreating || inst.state == InstanceState::kMoving) &&
         core_.failed_at_ms.count(name))) {
      out.insert(name);
    }
  }
  return out;
}

v1::UpgradeStatus UpgradeDriver::StatusOf(const UpgradeState& u) const {
  v1::UpgradeStatus st;
  st.set_service(u.service);
  st.set_from_version(u.from_version);
  st.set_to_version(u.to_version);
  st.set_mode(UpgradeModeName(u.mode));
  st.set_state(UpgradePhaseName(u.state));
  st.set_current_ud(u.current_ud);
  for (int64_t ud : u.upgraded_uds) st.add_upgraded_uds(ud);
  for (const auto& name : u.healing_in_progress) st.add_healing_in_progress(name);
  st.set_started_at_unix_ms(u.started_at_unix_ms);
  st.set_updated_at_unix_ms(u.updated_at_unix_ms);
  st.set_message(u.message);
  return st;
}

void UpgradeDriver::AddTo(const UpgradeState& previous, const UpgradeState& u,
                          StateChange& change) const {
  bool preempted = u.state == UpgradePhase::kPreempted &&
                   (previous.service.empty() || previous.state != UpgradePhase::kPreempted);
  EventRecord e = core_.MakeEvent(preempted ? EventKind::kUpgradePreempted : EventKind::kUpgrade,
                                  nullptr, "", u.message.empty() ? DescribeUpgrade(u) : u.message);
  e.service = u.service;
  e.json = UpgradeStateToJson(u).dump();
  spdlog::info("upgrade: {}", e.message);
  auto pending = std::find_if(change.upgrades.begin(), change.upgrades.end(),
                              [&](const UpgradeState& p) { return p.service == u.service; });
  if (pending != change.upgrades.end()) {
    *pending = u;  // a later event of the same step
  } else {
    change.upgrades.push_back(u);
  }
  change.events.push_back(std::move(e));
}

void UpgradeDriver::Save(const UpgradeState& previous, const UpgradeState& u,
                         std::optional<OperationRecord> op) {
  StateChange change;
  AddTo(previous, u, change);
  if (op) change.operations.push_back(std::move(*op));
  core_.Commit(std::move(change));
}

const UpgradeState* UpgradeDriver::Stage(const std::string& service, UpgradeEventKind event,
                                         StateChange& change) {
  const UpgradeState* u = core_.state.upgrade(service);
  for (const auto& pending : change.upgrades) {
    if (pending.service == service) u = &pending;
  }
  if (u == nullptr || !IsActive(*u)) return u;
  auto next = Apply(*u, {std::move(event), core_.clock.WallMillis()}, policy_);
  if (!next.ok()) {
    spdlog::warn("upgrade of {}: {}", service, next.status().message());
    return u;
  }
  if (*next == *u) return u;
  const UpgradeState previous = *u;  // `u` may point into `change`, which AddTo updates
  AddTo(previous, *next, change);
  for (const auto& pending : change.upgrades) {
    if (pending.service == service) return &pending;
  }
  return nullptr;  // not reached: AddTo put it there
}

void UpgradeDriver::Feed(const std::string& service, UpgradeEventKind event) {
  StateChange change;
  Stage(service, std::move(event), change);
  core_.Commit(std::move(change));  // nothing when the upgrade did not change
}

std::string UpgradeDriver::VersionForNew(const std::string& service, int64_t ud,
                                         const std::string& service_version) const {
  const UpgradeState* u = core_.state.upgrade(service);
  auto v = VersionForHealing(ud, u != nullptr && IsActive(*u) ? u : nullptr, service_version);
  return v.ok() ? v->version : service_version;
}

void UpgradeDriver::ForgetRemoved(const std::string& service,
                                  const std::vector<std::string>& removed, StateChange& change) {
  for (const auto& name : removed) {
    Stage(service, upgrade_event::HealingDone{name, /*removed=*/true}, change);
  }
}

void UpgradeDriver::SettleHealing(const std::string& service) {
  const UpgradeState* u = core_.state.upgrade(service);
  if (u == nullptr || !IsActive(*u)) return;
  StateChange change;
  std::vector<std::string> gone;
  for (const auto& name : u->healing_in_progress) {
    const InstanceRecord* inst = core_.state.instance(name);
    if (inst == nullptr || inst->service != service) {
      gone.push_back(name);
    } else if (inst->state == InstanceState::kRunning) {
      // Its heal ended but the HealingDone was not stored: the controller died between the two
      // commits of ApplyReport (the instance's running, then the upgrade's event).
      spdlog::info("upgrade of {}: {} runs again; its healing is over", service, name);
      Stage(service, upgrade_event::HealingDone{name}, change);
    }
  }
  ForgetRemoved(service, gone, change);
  core_.Commit(std::move(change));  // nothing when nothing changed
}

Result<v1::UpgradeStatus> UpgradeDriver::ApplyOperatorEvent(const std::string& service,
                                                            UpgradeEventKind event,
                                                            const std::string& operation_id) {
  RETURN_IF_ERROR(ValidateName("service", service));
  if (!core_.state.service(service)) {
    return NotFound("service \"" + service + "\" does not exist");
  }
  const UpgradeState* u = core_.state.upgrade(service);
  if (u == nullptr) {
    return FailedPrecondition("service " + service +
                              " has no upgrade (start one with `regenctl upgrade start " + service +
                              " --to-version V`)");
  }
  const UpgradeEvent e{std::move(event), core_.clock.WallMillis()};
  if (!operation_id.empty()) {
    ASSIGN_OR_RETURN(auto done, core_.state.FindOperation(operation_id));
    if (done) {
      spdlog::info("op={} kind=upgrade-{} target={}: applied before; nothing done", operation_id,
                   UpgradeEventName(e), service);
      return StatusOf(*u);
    }
  }
  ASSIGN_OR_RETURN(UpgradeState next, Apply(*u, e, policy_));
  std::optional<OperationRecord> op;
  if (!operation_id.empty()) {
    op = OperationRecord{operation_id, std::string("upgrade-") + UpgradeEventName(e),
                         service,      "{}",
                         "done",       e.unix_ms,
                         e.unix_ms};
  }
  if (!(next == *u)) {
    Save(*u, next, op);  // the event and its operation id in one commit
  } else if (op) {
    StateChange change;
    change.operations.push_back(std::move(*op));
    core_.Commit(std::move(change));
  }
  if (!operation_id.empty()) {
    spdlog::info("op={} kind=upgrade-{} target={}: done", operation_id, UpgradeEventName(e),
                 service);
  }
  Drive(service);
  return StatusOf(*core_.state.upgrade(service));
}

Result<v1::UpgradeStatus> UpgradeDriver::Start(const v1::UpgradeStartRequest& request) {
  RETURN_IF_ERROR(ValidateName("service", request.service()));
  const ServiceRuntime* svc = core_.state.service(request.service());
  if (svc == nullptr) return NotFound("service \"" + request.service() + "\" does not exist");
  const ServiceSpec& spec = svc->spec;
  if (!spec.versions.count(request.to_version())) {
    std::string known;
    for (const auto& [v, unused] : spec.versions) known += (known.empty() ? "" : ", ") + v;
    return InvalidArgument("upgrade start: to_version \"" + request.to_version() +
                           "\" is not a version of service " + request.service() +
                           " (known: " + known + "; add it to the spec and apply it first)");
  }
  if (request.to_version() == spec.version) {
    return FailedPrecondition("service " + request.service() + " already runs version " +
                              spec.version);
  }
  ASSIGN_OR_RETURN(UpgradeMode mode,
                   ParseUpgradeMode(request.mode().empty() ? "auto" : request.mode()));
  const UpgradeState* existing = core_.state.upgrade(request.service());
  if (!request.operation_id().empty()) {
    ASSIGN_OR_RETURN(auto done, core_.state.FindOperation(request.operation_id()));
    if (done && existing != nullptr) return StatusOf(*existing);
  }
  upgrade_event::Start start;
  start.service = request.service();
  start.from_version = spec.version;
  start.to_version = request.to_version();
  start.mode = mode;
  start.update_domains = spec.update_domains;
  start.healing_in_progress = HealingOf(request.service());
  UpgradeState current = existing != nullptr ? *existing : UpgradeState{};
  ASSIGN_OR_RETURN(UpgradeState next, Apply(current, {start, core_.clock.WallMillis()}, policy_));
  std::optional<OperationRecord> op;
  if (!request.operation_id().empty()) {
    op = OperationRecord{request.operation_id(),
                         "upgrade",
                         request.service(),
                         "{}",
                         "done",
                         core_.clock.WallMillis(),
                         core_.clock.WallMillis()};
  }
  Save(current, next, op);  // the upgrade and its operation id in one commit
  if (op) spdlog::info("op={} kind=upgrade target={}: done", op->id, request.service());
  Drive(request.service());
  const UpgradeState* started = core_.state.upgrade(request.service());
  if (started == nullptr)
    return Unavailable("the upgrade of " + request.service() + " is not stored");
  return StatusOf(*started);
}

Result<v1::UpgradeStatus> UpgradeDriver::Get(const std::string& service) const {
  RETURN_IF_ERROR(ValidateName("service", service));
  if (!core_.state.service(service)) {
    return NotFound("service \"" + service + "\" does not exist");
  }
  const UpgradeState* u = core_.state.upgrade(service);
  if (u == nullptr) return NotFound("service " + service + " has never been upgraded");
  return StatusOf(*u);
}

void UpgradeDriver::DriveAll() {
  std::vector<std::string> active;
  for (const auto& [service, u] : core_.state.upgrades()) {
    if (IsActive(u)) active.push_back(service);
  }
  for (const auto& service : active) Drive(service);
}

void UpgradeDriver::Drive(const std::string& service) {
  SettleHealing(service);
  PushStagingIfChanged(service);
  DriveSteps(service);
  PushStagingIfChanged(service);  // the upgrade may have ended or turned back
}

void UpgradeDriver::PushStagingIfChanged(const std::string& service) {
  // The stage list changes when an upgrade starts, turns back or ends: every host of the service
  // hears it at once (images are staged ahead of the UD that needs them, and removed after).
  std::string target = desired_.StagingTarget(service);
  if (stage_pushed_[service] == target) return;
  stage_pushed_[service] = target;
  std::set<std::string> hosts;
  for (const auto& [name, inst] : core_.state.instances()) {
    if (inst.service == service) hosts.insert(inst.allocation.host);
  }
  if (!target.empty()) {
    spdlog::info("upgrade of {}: staging version {} on {} hosts", service, target, hosts.size());
  } else {
    spdlog::info("upgrade of {}: nothing to stage any more on {} hosts", service, hosts.size());
  }
  desired_.PushDesired(hosts);
}

void UpgradeDriver::FinishCompleted(const std::string& service, const UpgradeState& u) {
  const ServiceRuntime* svc = core_.state.service(service);
  if (u.state != UpgradePhase::kCompleted || svc == nullptr || svc->spec.version == u.to_version) {
    return;
  }
  ServiceRuntime updated = *svc;
  updated.spec.version = u.to_version;
  updated.record.version = u.to_version;
  StateChange change;
  change.services.push_back(std::move(updated));
  core_.Commit(std::move(change));
  spdlog::info("service {} now runs version {}", service, u.to_version);
}

bool UpgradeDriver::StepUd(const std::string& service, const UpgradeState& u, int64_t ud, bool up) {
  const std::string& target = up ? u.to_version : u.from_version;
  bool ud_done = true;
  StateChange change;
  std::set<std::string> touched;
  for (const auto& [name, inst] : core_.state.instances()) {
    if (inst.service != service || inst.update_domain != ud) continue;
    if (u.healing_in_progress.count(name)) {
      ud_done = false;  // healed with the version the table gives; counted when it runs
      continue;
    }
    if (inst.version == target) {
      // Upgrading: running is not enough, its first probe must pass.
      if (inst.state != InstanceState::kRunning || (up && !desired_.HealthPassed(inst))) {
        ud_done = false;
      }
      continue;
    }
    ud_done = false;
    if (inst.state == InstanceState::kPending) {
      InstanceRecord next = inst;  // not placed: it is created with `target` when it is
      next.version = target;
      change.instances.push_back(std::move(next));
      continue;
    }
    if (inst.state != InstanceState::kRunning || !inst.moving_from.empty()) continue;
    // Staged first: the new version's image must be on the instance's host.
    if (up && !desired_.StagingTarget(service).empty() &&
        !desired_.StagedOn(inst.allocation.host, service, target)) {
      continue;
    }
    // Re-created in place with the new version: same host, resources, IP, MAC.
    InstanceRecord next = inst;
    next.version = target;
    next.generation += 1;
    next.state = InstanceState::kCreating;
    next.reason =
        (up ? "upgrading to " : "rolling back to ") + target + " (UD " + std::to_string(ud) + ")";
    change.events.push_back(core_.MakeEvent(
        up ? EventKind::kUpgradeInstance : EventKind::kRollbackInstance, &next,
        next.allocation.host, next.reason + ", generation " + std::to_string(next.generation)));
    touched.insert(next.allocation.host);
    change.instances.push_back(std::move(next));
  }
  if (!change.empty()) {
    core_.Commit(std::move(change));
    desired_.PushDesired(touched);
  }
  return ud_done;
}

void UpgradeDriver::DriveSteps(const std::string& service) {
  for (int step = 0; step < 64; ++step) {
    const UpgradeState* current = core_.state.upgrade(service);
    if (current == nullptr || !core_.state.service(service)) return;
    const UpgradeState u = *current;
    UpgradeAction action = NextAction(u);
    if (action.kind == UpgradeActionKind::kDone) {
      FinishCompleted(service, u);
      return;
    }
    if (action.kind != UpgradeActionKind::kUpgradeUd &&
        action.kind != UpgradeActionKind::kRollBackUd) {
      return;
    }
    const bool up = action.kind == UpgradeActionKind::kUpgradeUd;
    bool all_done = StepUd(service, u, action.ud, up);
    // The UDs upgraded before must still run to_version entirely: an instance left behind there
    // (added by a scale-up, restored from an old record) is upgraded too, and the UD (hence the
    // upgrade, at its last UD) is not done before it is.
    if (up) {
      for (int64_t ud : u.upgraded_uds) all_done = StepUd(service, u, ud, true) && all_done;
    }
    if (!all_done) return;
    UpgradeEventKind done = up ? UpgradeEventKind(upgrade_event::UdInstancesUpgraded{action.ud})
                               : UpgradeEventKind(upgrade_event::RolledBackUd{action.ud});
    auto next = Apply(u, {done, core_.clock.WallMillis()}, policy_);
    if (!next.ok()) {
      spdlog::error("upgrade of {}: {}", service, next.status().message());
      return;
    }
    if (*next == u) return;
    Save(u, *next);
  }
}

}  // namespace regen
