#include "controller/healer.h"

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/log.h"

namespace regen {

namespace {

using nlohmann::json;

json ResourcesJson(const Resources& r) {
  return {{"vcpus", r.vcpus},
          {"memory_mib", r.memory_mib},
          {"disk_gib", r.disk_gib},
          {"bandwidth_mbps", r.bandwidth_mbps}};
}

int64_t IndexOf(const std::string& name) {
  size_t dash = name.rfind('-');
  if (dash == std::string::npos) return 0;
  return std::strtoll(name.c_str() + dash + 1, nullptr, 10);
}

}  // namespace

void Healer::Heal(const std::string& instance, const std::string& why,
                  const std::string& failed_host, bool still_running) {
  Heal(std::vector<std::string>{instance}, why, failed_host, still_running);
}

std::map<std::string, std::vector<InstanceRequest>> Healer::MarkFailed(
    const std::vector<std::string>& names, const std::string& why, const std::string& failed_host,
    StateChange& change) {
  std::map<std::string, std::vector<InstanceRequest>> by_service;
  int64_t now_ms = core_.clock.WallMillis();
  for (const auto& name : names) {
    const InstanceRecord* cur = core_.state.instance(name);
    if (cur == nullptr || !IsActive(cur->state)) continue;
    InstanceRecord inst = *cur;
    inst.state = InstanceState::kFailed;
    inst.reason = why;
    core_.failed_at_ms.try_emplace(name, now_ms);
    // Once per failure: a replay after a refused store write decides it again (every 0.5-2 s
    // while the store refuses), which is not news.
    auto logged = core_.failure_logged.find(name);
    if (logged == core_.failure_logged.end() || logged->second.first != inst.generation ||
        logged->second.second != why) {
      core_.failure_logged[name] = {inst.generation, why};
      spdlog::warn("instance {} generation {} failed: {}", name, inst.generation, why);
    } else {
      spdlog::debug("instance {} generation {} failed (again): {}", name, inst.generation, why);
    }
    EventRecord failure = core_.MakeEvent(EventKind::kFailure, &inst, failed_host, why);
    if (auto d = core_.detection.find(name); d != core_.detection.end()) {
      // How the failure was found and how long that took until this decision (metrics).
      json j = json::parse(failure.json);
      j["detected_by"] = d->second.first;
      j["detection_ms"] = d->second.second;
      failure.json = j.dump();
      core_.detection.erase(d);
    }
    change.events.push_back(std::move(failure));
    by_service[inst.service].push_back({name, inst.update_domain, ""});
    change.instances.push_back(std::move(inst));
  }
  return by_service;
}

void Healer::ApplyUpgradeRules(const std::map<std::string, std::vector<InstanceRequest>>& failed,
                               const std::string& failed_host, StateChange& change) {
  for (const auto& [service, requests] : failed) {
    for (const auto& r : requests) {
      const UpgradeState* up =
          upgrades_.Stage(service, upgrade_event::InstanceFailed{r.name, r.update_domain}, change);
      const ServiceRuntime* svc = core_.state.service(service);
      InstanceRecord* inst = change.Find(r.name);  // marked failed just before
      if (svc == nullptr || inst == nullptr) continue;
      const UpgradeState* active = up != nullptr && IsActive(*up) ? up : nullptr;
      auto version = VersionForHealing(r.update_domain, active, svc->spec.version);
      if (version.ok() && version->version != inst->version) {
        spdlog::info("instance {} is healed with version {} (was {}): {}", r.name, version->version,
                     inst->version, version->reason);
        inst->version = version->version;
      }
      if (version.ok() && version->carry_staging()) {
        // Its new host is sent the same stage list as the failed one (StageFor): the image of
        // the upgrade's version is staged there before the upgrade reaches this UD.
        spdlog::info("instance {}: what was staged for version {} on {} is staged on its new host",
                     r.name, version->carry_staged_version, failed_host);
      }
    }
  }
}

void Healer::Heal(const std::vector<std::string>& names, const std::string& why,
                  const std::string& failed_host, bool still_running) {
  // One commit: the failures, the upgrade's pre-emption, the healing versions and the new
  // placements are stored together (a restart never finds half a heal).
  StateChange change;
  if (core_.InMaintenance() && still_running) {
    // Maintenance heals nothing, and this domain still runs: leave it as it is.
    for (const auto& name : names) {
      spdlog::warn("instance {}: {}; not healed: maintenance runs", name, why);
    }
    return;
  }
  auto by_service = MarkFailed(names, why, failed_host, change);
  if (by_service.empty()) return;
  // During an upgrade: pre-empt it, and heal with the version the DESIGN table gives.
  ApplyUpgradeRules(by_service, failed_host, change);
  if (core_.InMaintenance()) {
    // Recorded failed (its host's desired set loses it); placed when the maintenance ends.
    for (auto& inst : change.instances) inst.reason += "; healed when the maintenance ends";
    core_.Commit(std::move(change));
    desired_.PushDesired(failed_host);
    return;
  }
  std::set<std::string> touched{failed_host};
  for (const auto& [service, requests] : by_service) {
    const ServiceRuntime* svc = core_.state.service(service);
    if (svc == nullptr) continue;
    auto plan = core_.alloc().PlaceInstances(svc->model, requests, {failed_host});
    if (!plan.ok()) {
      spdlog::error("healing {} instances of {}: {}", requests.size(), service,
                    plan.status().message());
      continue;
    }
    // A domain that still runs (failed its health check) is destroyed before its replacement
    // starts: no instance may ever run twice.
    RecordPlacement(*svc, *plan, "healing: " + why, still_running, change, touched);
  }
  core_.Commit(std::move(change));
  desired_.PushDesired(touched);
}

void Healer::RecreateFenced(const std::string& host,
                            const google::protobuf::RepeatedPtrField<v1::FencedInstance>& fenced) {
  StateChange change;
  for (const v1::FencedInstance& f : fenced) {
    const InstanceRecord* cur = core_.state.instance(f.instance());
    std::string what = "the agent of " + host + " destroyed " + f.instance() + " generation " +
                       std::to_string(f.generation()) + " for safety (" + f.reason() + ")";
    if (cur != nullptr && cur->allocation.host == host && cur->generation == f.generation() &&
        IsActive(cur->state) && cur->moving_from.empty()) {
      InstanceRecord inst = *cur;
      inst.generation += 1;
      inst.state = InstanceState::kCreating;
      inst.reason = "re-created after its host fenced";
      what += "; re-created there with generation " + std::to_string(inst.generation);
      change.events.push_back(core_.MakeEvent(EventKind::kFenced, &inst, host, what));
      change.instances.push_back(std::move(inst));
    } else {
      InstanceRecord named;
      named.name = f.instance();
      named.service = cur != nullptr ? cur->service : "";
      change.events.push_back(core_.MakeEvent(EventKind::kFenced, &named, host, what));
    }
    spdlog::warn("{}", what);
  }
  core_.Commit(std::move(change));
}

void Healer::RecordPending(const PlacementPlan& plan) {
  // Still nothing fits: record the reason only when it changed (no event storm).
  StateChange change;
  for (const auto& p : plan.pending) {
    const InstanceRecord* cur = core_.state.instance(p.name);
    if (cur == nullptr) continue;
    if (cur->state == InstanceState::kPending && cur->reason == p.reason) continue;
    InstanceRecord inst = *cur;
    inst.state = InstanceState::kPending;
    inst.reason = p.reason;
    change.instances.push_back(std::move(inst));
  }
  core_.Commit(std::move(change));
}

void Healer::PlacePending() {
  std::map<std::string, std::vector<InstanceRequest>> by_service;
  bool maintenance = core_.InMaintenance();
  for (const auto& [name, inst] : core_.state.instances()) {
    if (inst.state == InstanceState::kPending ||
        (inst.state == InstanceState::kFailed && !maintenance)) {
      by_service[inst.service].push_back({name, inst.update_domain, ""});
    }
  }
  if (by_service.empty()) return;
  std::set<std::string> touched;
  StateChange change;
  for (const auto& [service, requests] : by_service) {
    const ServiceRuntime* svc = core_.state.service(service);
    if (svc == nullptr) continue;
    auto plan = core_.alloc().PlaceInstances(svc->model, requests, {});
    if (!plan.ok()) {
      spdlog::error("placing pending instances of {}: {}", service, plan.status().message());
      continue;
    }
    if (plan->placed.empty()) {
      RecordPending(*plan);
      continue;
    }
    RecordPlacement(*svc, *plan, "placed", false, change, touched);
  }
  core_.Commit(std::move(change));
  desired_.PushDesired(touched);
}

void Healer::RecordPlacement(const ServiceRuntime& svc, const PlacementPlan& plan,
                             const std::string& why, bool planned_move, StateChange& change,
                             std::set<std::string>& touched) const {
  auto base = [&](const std::string& name) {
    const InstanceRecord* cur = change.Find(name);  // as this step already changed it
    if (cur == nullptr) cur = core_.state.instance(name);
    InstanceRecord inst = cur != nullptr ? *cur : InstanceRecord{};
    inst.name = name;
    inst.service = svc.record.name;
    inst.index = IndexOf(name);
    if (inst.version.empty()) inst.version = svc.record.version;
    return inst;
  };
  for (const auto& p : plan.placed) {
    InstanceRecord inst = base(p.name);
    std::string old_host = p.previous ? p.previous->host : inst.allocation.host;
    inst.update_domain = p.update_domain;
    inst.allocation = p.allocation;
    inst.generation = inst.generation > 0 ? inst.generation + 1 : 1;
    inst.reason = why;
    bool moving = planned_move && !old_host.empty();
    inst.state = moving ? InstanceState::kMoving : InstanceState::kCreating;
    inst.moving_from = moving ? old_host : "";
    touched.insert(p.allocation.host);
    if (!old_host.empty()) touched.insert(old_host);
    std::string msg = (old_host.empty() ? "placed on " : "from " + old_host + " to ") +
                      p.allocation.host + ", generation " + std::to_string(inst.generation) + ", " +
                      DescribeResources(p.allocation.resources) +
                      (p.allocation.ip.empty() ? "" : ", ip " + p.allocation.ip) + ", mac " +
                      p.allocation.mac + " (" + why + ")";
    spdlog::info("instance {} {}", p.name, msg);
    EventRecord e =
        core_.MakeEvent(old_host.empty() ? EventKind::kPlacement : EventKind::kReallocation, &inst,
                        p.allocation.host, msg);
    e.json =
        json{{"kind", EventKindName(e.kind)}, {"instance", inst.name},
             {"service", inst.service},       {"old_host", old_host},
             {"new_host", p.allocation.host}, {"generation", inst.generation},
             {"version", inst.version},       {"resources", ResourcesJson(p.allocation.resources)},
             {"ip", p.allocation.ip},         {"mac", p.allocation.mac}}
            .dump();
    change.events.push_back(std::move(e));
    change.Put(inst);
  }
  for (const auto& p : plan.pending) {
    InstanceRecord inst = base(p.name);
    inst.update_domain = p.update_domain;
    inst.state = InstanceState::kPending;
    inst.reason = p.reason;
    spdlog::warn("instance {} pending: {}", p.name, p.reason);
    change.events.push_back(core_.MakeEvent(EventKind::kPending, &inst, "", p.reason));
    change.Put(inst);
  }
}

}  // namespace regen
