// The questions the controller asks of an upgrade state: which version heals a failed instance
// (VersionForHealing) and what to do next (NextAction). Pure; any thread.
#include <string>

#include "controller/upgrade.h"
#include "controller/upgrade_internal.h"

namespace regen {
namespace {

using Phase = UpgradePhase;
using upgrade_internal::Join;
using upgrade_internal::RollingBack;
using upgrade_internal::UdRange;

}  // namespace

const char* HealingCaseName(HealingCase c) {
  switch (c) {
    case HealingCase::kNoUpgrade:
      return "no_upgrade";
    case HealingCase::kUdUpgraded:
      return "ud_upgraded";
    case HealingCase::kUdBeingUpgraded:
      return "ud_being_upgraded";
    case HealingCase::kUdNotYetUpgraded:
      return "ud_not_yet_upgraded";
    case HealingCase::kUdAwaitingRollback:
      return "ud_awaiting_rollback";
    case HealingCase::kUdBeingRolledBack:
      return "ud_being_rolled_back";
    case HealingCase::kUdRolledBack:
      return "ud_rolled_back";
  }
  return "?";
}

Result<HealingVersion> VersionForHealing(int64_t failed_ud, const UpgradeState* upgrade,
                                         std::string_view service_version) {
  if (failed_ud < 0) {
    return InvalidArgument("cannot choose a healing version: UD " + std::to_string(failed_ud) +
                           " is negative");
  }
  if (upgrade == nullptr || !IsActive(*upgrade)) {
    if (service_version.empty()) {
      return InvalidArgument(
          "cannot choose a healing version: no upgrade in flight and the "
          "service's version is empty");
    }
    HealingVersion h;
    h.version = std::string(service_version);
    h.rule = HealingCase::kNoUpgrade;
    h.reason = upgrade == nullptr || upgrade->service.empty()
                   ? "no upgrade: the service's version " + h.version
                   : std::string("upgrade ") + UpgradePhaseName(upgrade->state) +
                         ": the service's version " + h.version;
    return h;
  }
  const UpgradeState& u = *upgrade;
  if (failed_ud >= u.update_domains) {
    return InvalidArgument(DescribeUpgrade(u) + ": cannot choose a healing version: UD " +
                           std::to_string(failed_ud) + " does not exist " + UdRange(u));
  }
  std::string ud = "UD " + std::to_string(failed_ud);
  std::string at = " (" + std::string(RollingBack(u) ? "rollback" : "upgrade") + " at UD " +
                   std::to_string(u.current_ud) + ")";
  HealingVersion h;
  if (RollingBack(u)) {
    if (failed_ud == u.current_ud) {
      h.version = u.from_version;
      h.rule = HealingCase::kUdBeingRolledBack;
      h.reason = ud + " is being rolled back" + at + ": old version " + h.version;
    } else if (u.upgraded_uds.contains(failed_ud)) {
      h.version = u.to_version;
      h.carry_staged_version = u.from_version;
      h.rule = HealingCase::kUdAwaitingRollback;
      h.reason = ud + " is not yet rolled back" + at + ": new version " + h.version +
                 "; what was staged for " + u.from_version + " moves to the new host";
    } else {
      h.version = u.from_version;
      h.rule = HealingCase::kUdRolledBack;
      h.reason = ud + " is rolled back or was never upgraded" + at + ": old version " + h.version;
    }
    return h;
  }
  if (u.upgraded_uds.contains(failed_ud)) {
    h.version = u.to_version;
    h.rule = HealingCase::kUdUpgraded;
    h.reason = ud + " is already upgraded" + at + ": new version " + h.version;
  } else if (failed_ud == u.current_ud && u.current_ud_started) {
    h.version = u.to_version;
    h.rule = HealingCase::kUdBeingUpgraded;
    h.reason = ud + " is being upgraded" + at + ": new version " + h.version;
  } else {
    h.version = u.from_version;
    h.carry_staged_version = u.to_version;
    h.rule = HealingCase::kUdNotYetUpgraded;
    h.reason = ud + " is not yet upgraded" + at + ": old version " + h.version +
               "; what was staged for " + u.to_version + " moves to the new host";
  }
  return h;
}

const char* UpgradeActionKindName(UpgradeActionKind kind) {
  switch (kind) {
    case UpgradeActionKind::kNone:
      return "none";
    case UpgradeActionKind::kUpgradeUd:
      return "upgrade_ud";
    case UpgradeActionKind::kRollBackUd:
      return "roll_back_ud";
    case UpgradeActionKind::kDone:
      return "done";
  }
  return "?";
}

UpgradeAction NextAction(const UpgradeState& s) {
  UpgradeAction a;
  if (s.service.empty()) {
    a.kind = UpgradeActionKind::kDone;
    a.reason = "no upgrade recorded";
    return a;
  }
  std::string ud = "UD " + std::to_string(s.current_ud);
  switch (s.state) {
    case Phase::kRunning:
      a.kind = UpgradeActionKind::kUpgradeUd;
      a.ud = s.current_ud;
      a.reason = "upgrade " + ud + " to " + s.to_version;
      break;
    case Phase::kRollingBack:
      a.kind = UpgradeActionKind::kRollBackUd;
      a.ud = s.current_ud;
      a.reason = "roll back " + ud + " to " + s.from_version;
      break;
    case Phase::kPreempted:
      a.reason = "preempted at " + ud + ": waiting for healing of " + Join(s.healing_in_progress) +
                 " to end";
      break;
    case Phase::kPaused:
      a.reason = "paused at " + ud + ": waiting for `regenctl upgrade resume " + s.service + "`";
      break;
    case Phase::kWaitingForOperator:
      a.reason = "waiting for `regenctl upgrade next-ud " + s.service + "` to start " + ud;
      break;
    case Phase::kFailed:
      a.reason = "failed at " + ud + ": waiting for `regenctl upgrade rollback " + s.service + "`";
      break;
    case Phase::kCompleted:
      a.kind = UpgradeActionKind::kDone;
      a.reason = "completed: every UD runs " + s.to_version;
      break;
    case Phase::kRolledBack:
      a.kind = UpgradeActionKind::kDone;
      a.reason = "rolled back: every UD runs " + s.from_version;
      break;
  }
  return a;
}

}  // namespace regen
