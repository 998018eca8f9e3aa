// Healing (DESIGN.md "Healing", patent Fig. 2): a failed instance (agent event or report, a failed
// health check, or its host down) is placed by the allocator in instance mode on another host with
// the same resources, IP and MAC, generation + 1; the new host's desired set gains it and the old
// host's loses it, in the same step. During an upgrade the version comes from VersionForHealing
// and the upgrade is pre-empted. Also places pending instances when room appears, and turns any
// allocator plan into stored records (RecordPlacement). Main loop thread only.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "controller/controller_core.h"
#include "controller/desired_state.h"
#include "controller/upgrade_driver.h"

namespace regen {

class Healer {
 public:
  Healer(ControllerCore& core, DesiredState& desired, UpgradeDriver& upgrades)
      : core_(core), desired_(desired), upgrades_(upgrades) {}

  // `still_running`: the failed domain still runs on failed_host (a failed health check), so the
  // heal is a move: the new host creates it only once failed_host has destroyed it.
  void Heal(const std::string& instance, const std::string& why, const std::string& failed_host,
            bool still_running = false);
  // Several instances of one failure (a host down): one placement call per service.
  void Heal(const std::vector<std::string>& instances, const std::string& why,
            const std::string& failed_host, bool still_running = false);
  // Places pending (and failed, not yet placed) instances where room appeared. During maintenance
  // failed instances wait (nothing is healed).
  void PlacePending();
  // The agent of `host` destroyed these instances for safety (its lease ran out): each is an
  // event, and one still placed there at that generation is re-created there with generation + 1.
  void RecreateFenced(const std::string& host,
                      const google::protobuf::RepeatedPtrField<v1::FencedInstance>& fenced);

  // Adds to `change` the records and events of a plan the allocator already committed: placed
  // instances get generation + 1 (1 when new) and state creating, or moving when
  // `planned_move` and they leave a host; pending ones keep waiting with the reason. The hosts
  // whose desired sets change go to `touched`.
  void RecordPlacement(const ServiceRuntime& svc, const PlacementPlan& plan, const std::string& why,
                       bool planned_move, StateChange& change,
                       std::set<std::string>& touched) const;

 private:
  // Marks the instances failed (with their failure events, in `change`); returns those that
  // were active, by service.
  std::map<std::string, std::vector<InstanceRequest>> MarkFailed(
      const std::vector<std::string>& names, const std::string& why, const std::string& failed_host,
      StateChange& change);
  // Pre-empts running upgrades and sets each instance's version for healing (DESIGN's table).
  void ApplyUpgradeRules(const std::map<std::string, std::vector<InstanceRequest>>& failed,
                         const std::string& failed_host, StateChange& change);
  void RecordPending(const PlacementPlan& plan);

  ControllerCore& core_;
  DesiredState& desired_;
  UpgradeDriver& upgrades_;
};

}  // namespace regen
