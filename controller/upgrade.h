// The upgrade orchestrator's pure core (DESIGN.md, "Healing during an upgrade", patent Fig. 3):
// which version a failed instance is healed with while its service is upgraded, the upgrade's
// state machine (pre-emption by healing, manual UD steps, pause, health-check failure, rollback),
// the next step the orchestrator takes, and the state's JSON for persistence.
// No I/O, no clock, no transport: value types and pure functions, callable from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>

#include "common/status.h"
#include "controller/upgrade_codec.h"

namespace regen {

// auto: the orchestrator moves from one UD to the next by itself. manual: every UD, the first one
// included, starts only on the operator's `regenctl upgrade next-ud` (Azure's "walk UD").
enum class UpgradeMode { kAuto, kManual };
const char* UpgradeModeName(UpgradeMode mode);  // "auto", "manual"
Result<UpgradeMode> ParseUpgradeMode(std::string_view text);

// The states of an upgrade (`regenctl upgrade status`):
// - running: the current UD is being upgraded (staged, re-created with to_version, health-checked).
// - preempted: automatic work (upgrading or rolling back) waits for healing to end; it resumes by
//   itself, at the UD where it stopped, once healing_in_progress is empty.
// - paused: the operator paused it; `resume` brings back what was paused.
// - waiting_for_operator: manual mode, the current UD waits for `next-ud`.
// - completed: every UD runs to_version (terminal).
// - rolling_back: the upgraded UDs go back to from_version, one at a time, highest first.
// - rolled_back: every UD runs from_version again (terminal).
// - failed: an upgraded instance failed its health check max_failed times; nothing moves until
//   `rollback`.
enum class UpgradePhase {
  kRunning,
  kPreempted,
  kPaused,
  kWaitingForOperator,
  kCompleted,
  kRollingBack,
  kRolledBack,
  kFailed,
};
// "running", "preempted", "paused", "waiting_for_operator", "completed", "rolling_back",
// "rolled_back", "failed".
const char* UpgradePhaseName(UpgradePhase phase);
Result<UpgradePhase> ParseUpgradePhase(std::string_view text);
// completed and rolled_back: the upgrade is over; a new one may start.
bool IsTerminal(UpgradePhase phase);

// What `next-ud` does while instances are being healed (controller.yaml upgrade.manual_policy).
// block: refuse, naming the instances, unless --force. allow: proceed; status shows the healing.
enum class ManualStepPolicy { kBlock, kAllow };
const char* ManualStepPolicyName(ManualStepPolicy policy);  // "block", "allow"
Result<ManualStepPolicy> ParseManualStepPolicy(std::string_view text);

// controller.yaml `upgrade:` settings that the state machine reads.
struct UpgradePolicy {
  ManualStepPolicy manual_policy = ManualStepPolicy::kBlock;
  bool auto_rollback = false;            // health-check failure -> rolling_back instead of failed
  int64_t max_failed_health_checks = 3;  // >= 1; failures of one instance, counted over the upgrade
};

// One service's upgrade, as persisted and shown by `regenctl upgrade status`. A default-constructed
// value (empty service) means "no upgrade recorded"; only a Start event applies to it.
//
// UDs are numbered 0 .. update_domains-1 and upgraded in that order. Invariants (checked by
// ValidateUpgradeState, hence by Apply and UpgradeStateFromJson); "base" is `resume_to` when the
// state is preempted or paused, else `state`:
// - base running, waiting_for_operator or failed: upgraded_uds == {0 .. current_ud-1}.
// - base rolling_back: upgraded_uds == {0 .. current_ud} (current_ud is rolled back next).
// - completed: upgraded_uds == every UD, current_ud == update_domains-1. rolled_back: none.
// - preempted needs healing_in_progress non-empty. running (not preempted) in auto mode, and
//   rolling_back in any mode, need it empty; only manual mode runs a UD while healing (next-ud
//   with policy allow or --force).
// - waiting_for_operator only in manual mode, with current_ud_started false.
struct UpgradeState {
  std::string service;
  std::string from_version;  // the version the service ran before the upgrade (A)
  std::string to_version;    // the version it is being upgraded to (B)
  UpgradeMode mode = UpgradeMode::kAuto;
  UpgradePhase state = UpgradePhase::kRunning;
  // Set only while preempted or paused: what comes back when healing ends / on resume (running,
  // rolling_back, or, when paused, waiting_for_operator).
  std::optional<UpgradePhase> resume_to;
  int64_t update_domains = 0;  // the service's UD count when the upgrade started (>= 1)
  // Upgrading: the UD being upgraded, or the next one to upgrade. Rolling back: the UD being
  // rolled back.
  int64_t current_ud = 0;
  // Upgrading only: whether current_ud's upgrade has begun (an instance of it may run
  // to_version). False for an upgrade started while healing (until healing ends), in
  // waiting_for_operator, and after a UD finished while preempted or paused. Healing reads it:
  // a UD that has not begun is "not yet upgraded" (see VersionForHealing).
  bool current_ud_started = false;
  // UDs whose instances run to_version: upgrading, the finished UDs; rolling back, the UDs not
  // yet rolled back (including one the upgrade had left partly upgraded).
  std::set<int64_t> upgraded_uds;
  std::set<std::string> healing_in_progress;  // instances of the service being healed
  // Health-check failures per upgraded instance, counted over the whole upgrade.
  std::map<std::string, int64_t> failed_health_checks;
  int64_t started_at_unix_ms = 0;
  int64_t updated_at_unix_ms = 0;  // the time of the last event that changed the state
  std::string message;             // what the last change did, for status and events
  bool operator==(const UpgradeState&) const = default;
};

// True for a recorded upgrade that is not over (every state but completed and rolled_back;
// failed included: it awaits rollback). The controller routes failures through Apply only then.
bool IsActive(const UpgradeState& state);

// "upgrade of service web (v1 -> v2, mode auto) is preempted at UD 1 (UDs 0..2)"; used in every
// error message of this module.
std::string DescribeUpgrade(const UpgradeState& state);

// ---------------------------------------------------------------------------------------------
// Healing version (the DESIGN table). Which version a failed instance of the service is
// re-created with, and whether what was staged on the failed host must be staged on the new host.

enum class HealingCase {
  kNoUpgrade,           // no upgrade in flight (none recorded, completed, rolled back)
  kUdUpgraded,          // upgrading; the instance's UD is already upgraded (lower)
  kUdBeingUpgraded,     // upgrading; the instance's UD is being upgraded (equal, begun)
  kUdNotYetUpgraded,    // upgrading; the UD is higher, or equal but not begun yet
  kUdAwaitingRollback,  // rolling back; the UD still runs to_version and is rolled back later
  kUdBeingRolledBack,   // rolling back; the UD is being rolled back now
  kUdRolledBack,        // rolling back; the UD is rolled back already (or was never upgraded)
};
const char* HealingCaseName(HealingCase c);  // "no_upgrade", "ud_upgraded", ...

struct HealingVersion {
  std::string version;  // re-create the instance with this version
  // Non-empty: data and resources staged for this version on the failed host are staged on the
  // new host too, so the upgrade (or rollback) later proceeds there without a hitch. The
  // orchestrator copies whatever was staged; nothing staged means nothing to copy.
  std::string carry_staged_version;
  HealingCase rule = HealingCase::kNoUpgrade;
  std::string reason;  // "UD 2 is not yet upgraded (upgrade at UD 1): old version v1, ..."
  bool carry_staging() const { return !carry_staged_version.empty(); }
  bool operator==(const HealingVersion&) const = default;
};

// `upgrade` is the service's upgrade record, or nullptr when none exists. `service_version` is the
// service's current version, used when no upgrade is in flight. The cases:
//
// | upgrade in state                    | failed instance's UD     | heal with       | carry |
// |-------------------------------------|--------------------------|-----------------|-------|
// | none, completed, rolled_back        | any                      | service_version | -     |
// | upgrading: running, preempted,      | in upgraded_uds (lower)  | B               | -     |
// | paused, waiting_for_operator,       | == current_ud, begun     | B               | -     |
// | failed                              | == current_ud, not begun | A               | B     |
// |                                     | higher                   | A               | B     |
// | rolling back: rolling_back, or      | == current_ud            | A               | -     |
// | preempted/paused while rolling back | lower, in upgraded_uds   | B               | A     |
// |                                     | not in upgraded_uds      | A               | -     |
//
// A = from_version, B = to_version. Notes:
// - "Not begun" covers an upgrade started while healing ran (DESIGN: the healed instance gets the
//   old version; the upgrade starts when healing ends), manual mode's waiting_for_operator (the
//   operator has not moved that UD yet), and a UD reached while preempted or paused.
// - Paused and failed upgrades keep the table where they stopped: a UD that began runs B (a
//   failed upgrade's partly upgraded UD is brought back by `rollback`).
// - Completed and rolled back: the controller has set the service's version (to B, or kept A), so
//   service_version is the truth; a later change of the service spec would make the record's
//   versions stale.
// - Rolling back mirrors the table with the rollback's target A: a UD still waiting for its
//   rollback keeps B (its peers run B) and carries what was staged for A.
// INVALID_ARGUMENT for a negative UD, a UD >= update_domains while an upgrade is in flight, or an
// empty service_version when it is needed.
Result<HealingVersion> VersionForHealing(int64_t failed_ud, const UpgradeState* upgrade,
                                         std::string_view service_version);

// ---------------------------------------------------------------------------------------------
// Events and the state machine.

namespace upgrade_event {
// `regenctl upgrade start`. healing_in_progress: the service's instances being healed right now.
struct Start {
  std::string service;
  std::string from_version;
  std::string to_version;
  UpgradeMode mode = UpgradeMode::kAuto;
  int64_t update_domains = 1;
  std::set<std::string> healing_in_progress;
};
struct InstanceFailed {  // an instance of the service failed; healing begins
  std::string instance;
  int64_t update_domain = 0;
};
struct HealingDone {  // the instance runs again (healed), on a new host
  std::string instance;
  bool removed = false;  // it was removed instead (scaled down, service deleted): nothing to heal
};
struct UdInstancesUpgraded {  // every instance of `ud` runs to_version and passed its health check
  int64_t ud = 0;
};
struct HealthCheckFailed {  // an upgraded instance failed one health check
  std::string instance;
};
struct Pause {};
struct Resume {};
struct NextUd {  // manual mode: start the current UD
  bool force = false;
};
struct Rollback {};
struct RolledBackUd {  // every instance of `ud` runs from_version again
  int64_t ud = 0;
};
}  // namespace upgrade_event

using UpgradeEventKind =
    std::variant<upgrade_event::Start, upgrade_event::InstanceFailed, upgrade_event::HealingDone,
                 upgrade_event::UdInstancesUpgraded, upgrade_event::HealthCheckFailed,
                 upgrade_event::Pause, upgrade_event::Resume, upgrade_event::NextUd,
                 upgrade_event::Rollback, upgrade_event::RolledBackUd>;

struct UpgradeEvent {
  UpgradeEventKind what;
  int64_t unix_ms = 0;  // when it happened: becomes updated_at (and started_at for Start)
};
// "start", "instance-failed", "healing-done", "ud-upgraded", "health-check-failed", "pause",
// "resume", "next-ud", "rollback", "ud-rolled-back".
const char* UpgradeEventName(const UpgradeEvent& event);

// Applies one event; returns the new state, or an error and the input stays as it was. A repeated
// event that has nothing left to do (a failure of an instance already being healed, HealingDone of
// one not being healed, a UD reported twice, pause when paused, resume when not paused or
// preempted, rollback when rolling back or rolled back) returns the input unchanged, updated_at
// included: applying an operation twice does nothing the second time. Every other accepted event
// sets updated_at and message.
//
// Transitions ("base" as in UpgradeState; "enter X": X, but preempted when X is running or
// rolling_back and healing_in_progress is non-empty; entering running begins current_ud):
// - Start: on an empty record or a completed/rolled_back one of the same service. auto: enter
//   running at UD 0 (so: preempted when healing runs; UD 0 begins when it ends). manual:
//   waiting_for_operator at UD 0, healing shown. Refused while an upgrade is active (failed
//   included: roll it back first).
// - InstanceFailed: adds the instance to healing_in_progress; running and rolling_back become
//   preempted (work under way may finish: see UdInstancesUpgraded, RolledBackUd). Other active
//   states only record the healing. Refused when the upgrade is over.
// - HealingDone: removes it; preempted with nothing left to heal enters its resume_to. Several
//   failures heal individually; the upgrade resumes when none is left.
// - UdInstancesUpgraded(current_ud): accepted while base is running and current_ud has begun
//   (preempted and paused too: the work under way finished). Marks it upgraded; after the last UD
//   -> completed; else current_ud+1, which begins at once only when running in auto mode; in
//   manual mode the next state is waiting_for_operator (kept paused if paused).
// - HealthCheckFailed: counts; at max_failed while upgrading (base running or
//   waiting_for_operator) -> failed, or with auto_rollback the rollback below (a paused upgrade
//   stays paused with resume_to rolling_back). While failed or rolling back it only counts.
// - Pause: running, preempted, waiting_for_operator, rolling_back -> paused (resume_to = base).
// - Resume: paused -> enter resume_to. Refused while preempted (it resumes by itself) or failed.
// - NextUd(force), manual mode, waiting_for_operator: with healing in progress and policy block,
//   refused naming the instances unless force; otherwise running, current_ud begun, healing kept
//   (and shown). Refused in auto mode, while a UD is being upgraded, when paused.
// - Rollback: from running, preempted, paused (un-pauses), waiting_for_operator, failed. The UDs
//   to bring back are upgraded_uds plus current_ud if it has begun; none -> rolled_back, else
//   enter rolling_back at the highest. Automatic in both modes. Refused once completed (start an
//   upgrade to the old version instead).
// - RolledBackUd(current_ud): accepted while base is rolling_back; current_ud becomes the next
//   lower UD still upgraded, none left -> rolled_back. Out-of-order UDs are refused.
// Errors: INVALID_ARGUMENT for bad input (names, UDs out of range, an invalid state or policy);
// FAILED_PRECONDITION for an event the state does not allow. Messages name the service, the state
// and the UD (DescribeUpgrade) and say what to do.
Result<UpgradeState> Apply(const UpgradeState& state, const UpgradeEvent& event,
                           const UpgradePolicy& policy);

// What the orchestrator does next.
enum class UpgradeActionKind {
  kNone,        // wait: preempted, paused, waiting_for_operator, failed (reason says why)
  kUpgradeUd,   // upgrade every instance of `ud` not yet on to_version (skipping those being
                // healed until they are healed), then report UdInstancesUpgraded(ud)
  kRollBackUd,  // bring every instance of `ud` back to from_version, then RolledBackUd(ud)
  kDone,        // completed or rolled back (or no upgrade recorded)
};
const char* UpgradeActionKindName(UpgradeActionKind kind);  // "none", "upgrade_ud", ...

struct UpgradeAction {
  UpgradeActionKind kind = UpgradeActionKind::kNone;
  int64_t ud = -1;  // for kUpgradeUd and kRollBackUd
  std::string reason;
  bool operator==(const UpgradeAction&) const = default;
};

UpgradeAction NextAction(const UpgradeState& state);

// ValidateUpgradeState and the JSON codec (UpgradeStateToJson, UpgradeStateFromJson,
// ParseUpgradeStateJson): controller/upgrade_codec.h, included above.

}  // namespace regen
