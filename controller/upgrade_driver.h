// Upgrade driving: the operator's upgrade requests, the events that feed a running upgrade
// (failures, heals, health checks), and carrying an upgrade forward UD by UD as far as it can go
// (controller/upgrade.h holds the rules; this applies them to the cluster). Every new upgrade
// state is stored with an event in one commit. Main loop thread only.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "controller/controller_core.h"
#include "controller/desired_state.h"

namespace regen {

class UpgradeDriver {
 public:
  UpgradeDriver(ControllerCore& core, DesiredState& desired);

  Result<v1::UpgradeStatus> Start(const v1::UpgradeStartRequest& request);
  Result<v1::UpgradeStatus> Get(const std::string& service) const;
  // Pause, resume, next UD, roll back: the operator's events. A non-empty `operation_id` already
  // applied answers the current status and changes nothing; otherwise it is stored with the event.
  Result<v1::UpgradeStatus> ApplyOperatorEvent(const std::string& service, UpgradeEventKind event,
                                               const std::string& operation_id = "");

  // Applies `event` to the service's active upgrade (if any) and stores it; a refusal is logged.
  void Feed(const std::string& service, UpgradeEventKind event);
  // As Feed, but adds the new state and its event to `change` (to be committed with the rest of
  // a step) instead of storing it. Starts from the state `change` already holds for the service.
  // Returns the service's upgrade as it will be once `change` is committed (null: none).
  const UpgradeState* Stage(const std::string& service, UpgradeEventKind event,
                            StateChange& change);
  // Carries the upgrade of `service` (every active one) forward as far as it can go now.
  void Drive(const std::string& service);
  void DriveAll();
  // Instances of `service` being healed (an upgrade started now starts pre-empted by them).
  std::set<std::string> HealingOf(const std::string& service) const;
  // The version a new instance of `service` in `ud` is created with (scale-up): the upgrade's rule
  // for its UD (upgraded or being upgraded: to_version; not yet: from_version; VersionForHealing),
  // or `service_version` when no upgrade is active.
  std::string VersionForNew(const std::string& service, int64_t ud,
                            const std::string& service_version) const;
  // Instances of `service` removed in `change` (scale-down, service delete) leave the upgrade's
  // healing list there; a pre-empted upgrade with nothing left to heal resumes.
  void ForgetRemoved(const std::string& service, const std::vector<std::string>& removed,
                     StateChange& change);
  // The service was deleted: what was last pushed for it is forgotten.
  void Forget(const std::string& service) { stage_pushed_.erase(service); }

 private:
  v1::UpgradeStatus StatusOf(const UpgradeState& state) const;
  // Adds the new state with its event (kind upgrade_preempted when it enters pre-emption).
  void AddTo(const UpgradeState& previous, const UpgradeState& next, StateChange& change) const;
  // Stores the new state with its event, and `op` (the request's operation) in the same commit.
  void Save(const UpgradeState& previous, const UpgradeState& next,
            std::optional<OperationRecord> op = std::nullopt);
  void PushStagingIfChanged(const std::string& service);
  // Level-triggered, so the upgrade never waits forever for a heal that is over: names in the
  // healing list that are no longer instances of the service (removed before ForgetRemoved
  // existed) are dropped, and those that run again are healed (HealingDone).
  void SettleHealing(const std::string& service);
  void DriveSteps(const std::string& service);
  // Re-creates the instances of one UD with `target` (staged first when it must be; a pending one
  // just takes `target`); true when every instance of the UD runs `target` (and passed its first
  // probe when going up).
  bool StepUd(const std::string& service, const UpgradeState& u, int64_t ud, bool up);
  void FinishCompleted(const std::string& service, const UpgradeState& u);

  ControllerCore& core_;
  DesiredState& desired_;
  UpgradePolicy policy_;
  std::map<std::string, std::string> stage_pushed_;  // service -> staging target last pushed
};

}  // namespace regen
