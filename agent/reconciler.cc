#include "agent/reconciler.h"

#include <algorithm>
#include <map>

namespace regen {

const char* ActionKindName(ReconcileAction::Kind kind) {
  switch (kind) {
    case ReconcileAction::Kind::kCreate:
      return "create";
    case ReconcileAction::Kind::kRecreate:
      return "recreate";
    case ReconcileAction::Kind::kDestroy:
      return "destroy";
  }
  return "unknown";
}

namespace {

bool IsAlive(DomainState state) {
  return state == DomainState::kRunning || state == DomainState::kPaused ||
         state == DomainState::kStarting;
}

}  // namespace

ReconcilePlan PlanReconcile(const std::vector<InstanceSpec>& desired,
                            const std::vector<DomainInfo>& actual,
                            const ReconcileOptions& options) {
  std::map<std::string, const DomainInfo*> by_name;
  for (const auto& d : actual) by_name[d.name] = &d;
  std::map<std::string, const InstanceSpec*> wanted;
  for (const auto& s : desired) wanted[s.name] = &s;

  ReconcilePlan plan;
  std::vector<ReconcileAction> destroys, recreates, creates;
  for (const auto& [name, spec] : wanted) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      creates.push_back({ReconcileAction::Kind::kCreate, name, *spec, "no domain"});
      continue;
    }
    const DomainInfo& dom = *it->second;
    if (!dom.metadata.managed) {
      plan.conflicts.push_back({name, "domain " + name +
                                          " exists but was not created by Regen; it is left "
                                          "alone: rename or remove it to let Regen create the "
                                          "instance"});
      continue;
    }
    if (dom.metadata.generation != spec->generation) {
      recreates.push_back({ReconcileAction::Kind::kRecreate, name, *spec,
                           "generation " + std::to_string(dom.metadata.generation) + " -> " +
                               std::to_string(spec->generation)});
      continue;
    }
    if (IsAlive(dom.state)) continue;
    plan.failures.push_back({name, spec->generation, dom.state, dom.reason});
    if (options.restart_failed_locally) {
      recreates.push_back({ReconcileAction::Kind::kRecreate, name, *spec,
                           std::string("domain ") + DomainStateName(dom.state) +
                               (dom.reason.empty() ? "" : " (" + dom.reason + ")")});
    }
  }
  for (const auto& dom : actual) {
    if (!dom.metadata.managed || wanted.count(dom.name)) continue;
    destroys.push_back({ReconcileAction::Kind::kDestroy, dom.name, {}, "not desired on this host"});
  }
  for (auto* group : {&destroys, &recreates, &creates}) {
    std::sort(group->begin(), group->end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    for (auto& a : *group) plan.actions.push_back(std::move(a));
  }
  return plan;
}

}  // namespace regen
