#include "controller/upgrade.h"

#include <cstdint>
#include <iterator>
#include <limits>
#include <string>
#include <utility>
#include <variant>

#include "common/names.h"
#include "controller/upgrade_internal.h"

namespace regen {
namespace {

using Phase = UpgradePhase;
using upgrade_internal::Base;
using upgrade_internal::Join;
using upgrade_internal::RollingBack;
using upgrade_internal::UdRange;
using upgrade_internal::ValidateVersion;

// Highest first, as a rollback visits them: "2, 1, 0".
std::string JoinUdsDescending(const std::set<int64_t>& uds) {
  std::string out;
  for (auto it = uds.rbegin(); it != uds.rend(); ++it) {
    out += (out.empty() ? "" : ", ") + std::to_string(*it);
  }
  return out;
}

Status Refuse(const UpgradeState& s, std::string_view event, const std::string& why) {
  return FailedPrecondition(DescribeUpgrade(s) + ": " + std::string(event) + " refused: " + why);
}

Status BadInput(const UpgradeState& s, std::string_view event, const std::string& why) {
  return InvalidArgument(DescribeUpgrade(s) + ": " + std::string(event) + ": " + why);
}

Status CheckUd(const UpgradeState& s, std::string_view event, int64_t ud) {
  if (ud >= 0 && ud < s.update_domains) return Status::Ok();
  return BadInput(s, event, "UD " + std::to_string(ud) + " does not exist " + UdRange(s));
}

Status CheckInstance(const UpgradeState& s, std::string_view event, const std::string& name) {
  Status st = ValidateName("instance", name);
  if (st.ok()) return st;
  return BadInput(s, event, st.message());
}

// Puts `s` into `target`: preempted instead when target is automatic work (running or
// rolling_back) and instances are being healed. Entering running begins current_ud.
void Enter(UpgradeState& s, Phase target) {
  bool automatic = target == Phase::kRunning || target == Phase::kRollingBack;
  if (automatic && !s.healing_in_progress.empty()) {
    s.state = Phase::kPreempted;
    s.resume_to = target;
    return;
  }
  s.state = target;
  s.resume_to.reset();
  if (target == Phase::kRunning) s.current_ud_started = true;
}

std::string EnteredMessage(const UpgradeState& s) {
  if (s.state == Phase::kPreempted) {
    return "preempted: waiting for healing of " + Join(s.healing_in_progress) + " to end";
  }
  switch (s.state) {
    case Phase::kRunning:
      return "upgrading UD " + std::to_string(s.current_ud) + " to " + s.to_version;
    case Phase::kRollingBack:
      return "rolling back UD " + std::to_string(s.current_ud) + " to " + s.from_version;
    case Phase::kWaitingForOperator:
      return "waiting for `regenctl upgrade next-ud " + s.service + "` to start UD " +
             std::to_string(s.current_ud);
    default:
      return std::string(UpgradePhaseName(s.state));
  }
}

// Starts the rollback of every UD that holds to_version instances. Keeps a paused upgrade paused
// (resume_to rolling_back) when `keep_paused`.
void BeginRollback(UpgradeState& s, bool keep_paused, const std::string& why) {
  if (s.current_ud_started) s.upgraded_uds.insert(s.current_ud);
  s.current_ud_started = false;
  if (s.upgraded_uds.empty()) {
    s.state = Phase::kRolledBack;
    s.resume_to.reset();
    s.message =
        why + "; rolled back: no UD had been upgraded, every instance runs " + s.from_version;
    return;
  }
  s.current_ud = *s.upgraded_uds.rbegin();
  std::string plan = why + "; rolling back UDs " + JoinUdsDescending(s.upgraded_uds) + " to " +
                     s.from_version + ", one at a time";
  if (keep_paused && s.state == Phase::kPaused) {
    s.resume_to = Phase::kRollingBack;
    s.message = plan + " (paused: resume to start)";
    return;
  }
  Enter(s, Phase::kRollingBack);
  s.message = plan;
  if (s.state == Phase::kPreempted) {
    s.message += " (preempted: waiting for healing of " + Join(s.healing_in_progress) + ")";
  }
}

// One event against a copy of the state. `no_op` is set when the event has nothing left to do.
class Transition {
 public:
  Transition(const UpgradeState& prev, const UpgradePolicy& policy, std::string_view event_name)
      : prev_(prev), s_(prev), policy_(policy), event_(event_name) {}

  bool no_op() const { return no_op_; }
  UpgradeState& state() { return s_; }

  Status operator()(const upgrade_event::Start& e) {
    RETURN_IF_ERROR(ValidateName("service", e.service));
    if (!prev_.service.empty() && prev_.service != e.service) {
      return InvalidArgument("start of an upgrade of service " + e.service +
                             " given the upgrade record of service " + prev_.service);
    }
    if (!prev_.service.empty() && !IsTerminal(prev_.state)) {
      std::string what = prev_.state == Phase::kFailed
                             ? "the failed upgrade must be rolled back first (regenctl upgrade "
                               "rollback " +
                                   prev_.service + ")"
                             : "an upgrade is in progress; wait for it to end or roll it back "
                               "(regenctl upgrade rollback " +
                                   prev_.service + ")";
      return Refuse(prev_, event_, what);
    }
    RETURN_IF_ERROR(ValidateVersion("from_version", e.from_version));
    RETURN_IF_ERROR(ValidateVersion("to_version", e.to_version));
    if (e.from_version == e.to_version) {
      return InvalidArgument("cannot upgrade service " + e.service + " to version " + e.to_version +
                             ": it already runs that version");
    }
    if (e.update_domains < 1) {
      return InvalidArgument("cannot upgrade service " + e.service + ": update_domains must be " +
                             ">= 1, got " + std::to_string(e.update_domains));
    }
    for (const auto& name : e.healing_in_progress) {
      Status st = ValidateName("instance being healed", name);
      if (!st.ok()) return st.WithContext("upgrade of service " + e.service);
    }
    s_ = UpgradeState{};
    s_.service = e.service;
    s_.from_version = e.from_version;
    s_.to_version = e.to_version;
    s_.mode = e.mode;
    s_.update_domains = e.update_domains;
    s_.current_ud = 0;
    s_.healing_in_progress = e.healing_in_progress;
    s_.started_at_unix_ms = unix_ms_;
    std::string head = "upgrade from " + e.from_version + " to " + e.to_version + " started (" +
                       UpgradeModeName(e.mode) + " mode, " + std::to_string(e.update_domains) +
                       " UDs)";
    if (e.mode == UpgradeMode::kAuto) {
      Enter(s_, Phase::kRunning);
      if (s_.state == Phase::kPreempted) {
        s_.message = head + " preempted: healing of " + Join(s_.healing_in_progress) +
                     " is in progress; UD 0 starts when it ends";
      } else {
        s_.message = head + "; upgrading UD 0";
      }
    } else {
      s_.state = Phase::kWaitingForOperator;
      s_.message = head + "; " + EnteredMessage(s_);
      if (!s_.healing_in_progress.empty()) {
        s_.message += " (healing in progress: " + Join(s_.healing_in_progress) + ")";
      }
    }
    return Status::Ok();
  }

  Status operator()(const upgrade_event::InstanceFailed& e) {
    RETURN_IF_ERROR(CheckInstance(s_, event_, e.instance));
    RETURN_IF_ERROR(CheckUd(s_, event_, e.update_domain));
    if (IsTerminal(s_.state)) {
      return Refuse(s_, event_,
                    e.instance +
                        " failed after the upgrade ended; heal it with the service's "
                        "version, outside the upgrade");
    }
    if (s_.healing_in_progress.contains(e.instance)) return NoOp();
    s_.healing_in_progress.insert(e.instance);
    std::string failed = e.instance + " (UD " + std::to_string(e.update_domain) + ") failed";
    if (s_.state == Phase::kRunning || s_.state == Phase::kRollingBack) {
      s_.resume_to = s_.state;
      s_.state = Phase::kPreempted;
      s_.message = "preempted at UD " + std::to_string(s_.current_ud) + ": " + failed +
                   "; resumes when healing of " + Join(s_.healing_in_progress) + " ends";
    } else {
      s_.message = failed + "; healing " + Join(s_.healing_in_progress) + " (" +
                   UpgradePhaseName(s_.state) + ")";
    }
    return Status::Ok();
  }

  Status operator()(const upgrade_event::HealingDone& e) {
    RETURN_IF_ERROR(CheckInstance(s_, event_, e.instance));
    if (!s_.healing_in_progress.contains(e.instance)) return NoOp();
    s_.healing_in_progress.erase(e.instance);
    const std::string what = e.instance + (e.removed ? " removed" : " healed");
    if (s_.state == Phase::kPreempted && s_.healing_in_progress.empty()) {
      Enter(s_, *s_.resume_to);
      s_.message = what + "; no healing left, resumed: " + EnteredMessage(s_);
    } else if (s_.healing_in_progress.empty()) {
      s_.message = what + "; no healing left";
    } else {
      s_.message = what + "; still healing " + Join(s_.healing_in_progress);
    }
    return Status::Ok();
  }

  Status operator()(const upgrade_event::UdInstancesUpgraded& e) {
    RETURN_IF_ERROR(CheckUd(s_, event_, e.ud));
    std::string ud = "UD " + std::to_string(e.ud);
    if (!RollingBack(s_) && s_.state != Phase::kRolledBack && s_.upgraded_uds.contains(e.ud)) {
      return NoOp();
    }
    if (Base(s_) != Phase::kRunning) {
      return Refuse(s_, event_,
                    ud + " reported upgraded, but no UD is being upgraded in this state");
    }
    if (e.ud != s_.current_ud) {
      return Refuse(s_, event_,
                    ud + " reported upgraded, but the upgrade is at UD " +
                        std::to_string(s_.current_ud) + " (UDs are upgraded in order)");
    }
    if (!s_.current_ud_started) {
      return Refuse(s_, event_, ud + " reported upgraded, but its upgrade has not begun");
    }
    s_.upgraded_uds.insert(e.ud);
    s_.current_ud_started = false;
    if (static_cast<int64_t>(s_.upgraded_uds.size()) == s_.update_domains) {
      s_.state = Phase::kCompleted;
      s_.resume_to.reset();
      s_.message = "completed: every UD runs " + s_.to_version;
      if (!s_.healing_in_progress.empty()) {
        s_.message += " (still healing " + Join(s_.healing_in_progress) + ")";
      }
      return Status::Ok();
    }
    s_.current_ud = e.ud + 1;
    std::string done = ud + " upgraded; ";
    Phase next = s_.mode == UpgradeMode::kAuto ? Phase::kRunning : Phase::kWaitingForOperator;
    if (s_.state == Phase::kPaused) {
      s_.resume_to = next;
      s_.message = done + "paused before UD " + std::to_string(s_.current_ud);
    } else if (s_.state == Phase::kPreempted && next == Phase::kRunning) {
      s_.message = done + "UD " + std::to_string(s_.current_ud) + " starts when healing of " +
                   Join(s_.healing_in_progress) + " ends";
    } else {
      // running, or preempted in manual mode (waiting for the operator pre-empts nothing).
      Enter(s_, next);
      s_.message = done + EnteredMessage(s_);
      if (next == Phase::kWaitingForOperator && !s_.healing_in_progress.empty()) {
        s_.message += " (healing in progress: " + Join(s_.healing_in_progress) + ")";
      }
    }
    return Status::Ok();
  }

  Status operator()(const upgrade_event::HealthCheckFailed& e) {
    RETURN_IF_ERROR(CheckInstance(s_, event_, e.instance));
    if (policy_.max_failed_health_checks < 1) {
      return InvalidArgument("upgrade policy max_failed must be >= 1, got " +
                             std::to_string(policy_.max_failed_health_checks));
    }
    if (IsTerminal(s_.state)) {
      return Refuse(
          s_, event_,
          "health checks of " + e.instance + " no longer count: the " + "upgrade is over");
    }
    int64_t count = ++s_.failed_health_checks[e.instance];
    std::string what = e.instance + " failed its health check (" + std::to_string(count) +
                       " of max_failed " + std::to_string(policy_.max_failed_health_checks) + ")";
    Phase base = Base(s_);
    bool upgrading = base == Phase::kRunning || base == Phase::kWaitingForOperator;
    if (s_.state == Phase::kFailed || !upgrading || count < policy_.max_failed_health_checks) {
      s_.message = what;
      return Status::Ok();
    }
    if (policy_.auto_rollback) {
      BeginRollback(s_, /*keep_paused=*/true, what + "; auto_rollback");
      return Status::Ok();
    }
    s_.state = Phase::kFailed;
    s_.resume_to.reset();
    s_.message = what + "; upgrade failed at UD " + std::to_string(s_.current_ud) +
                 ": roll it back with `regenctl upgrade rollback " + s_.service + "`";
    return Status::Ok();
  }

  Status operator()(const upgrade_event::Pause&) {
    switch (s_.state) {
      case Phase::kPaused:
        return NoOp();
      case Phase::kRunning:
      case Phase::kRollingBack:
      case Phase::kWaitingForOperator:
        s_.resume_to = s_.state;
        break;
      case Phase::kPreempted:
        break;  // resume_to already says what was pre-empted
      default:
        return Refuse(s_, event_,
                      "only a running, preempted, waiting or rolling-back upgrade " +
                          std::string("can be paused"));
    }
    s_.state = Phase::kPaused;
    s_.message = "paused at UD " + std::to_string(s_.current_ud) + " (resume: `regenctl upgrade " +
                 "resume " + s_.service + "`)";
    return Status::Ok();
  }

  Status operator()(const upgrade_event::Resume&) {
    switch (s_.state) {
      case Phase::kPaused:
        break;
      case Phase::kRunning:
      case Phase::kRollingBack:
      case Phase::kWaitingForOperator:
        return NoOp();
      case Phase::kPreempted:
        return Refuse(s_, event_,
                      "it is preempted by the healing of " + Join(s_.healing_in_progress) +
                          " and resumes by itself when that ends");
      case Phase::kFailed:
        return Refuse(s_, event_,
                      "a failed upgrade does not resume; roll it back with `regenctl upgrade "
                      "rollback " +
                          s_.service + "`");
      default:
        return Refuse(s_, event_, "the upgrade is over");
    }
    Enter(s_, *s_.resume_to);
    s_.message = "resumed: " + EnteredMessage(s_);
    return Status::Ok();
  }

  Status operator()(const upgrade_event::NextUd& e) {
    std::string ud = "UD " + std::to_string(s_.current_ud);
    if (s_.mode != UpgradeMode::kManual) {
      return Refuse(s_, event_,
                    "next-ud is for manual mode; an auto upgrade moves to the next UD by itself");
    }
    switch (s_.state) {
      case Phase::kWaitingForOperator:
        break;
      case Phase::kRunning:
        return Refuse(s_, event_, ud + " is still being upgraded; wait for it to finish");
      case Phase::kPreempted:
      case Phase::kPaused:
        if (Base(s_) == Phase::kRunning) {
          return Refuse(s_, event_,
                        ud + " is still being upgraded (" + UpgradePhaseName(s_.state) +
                            "); wait for it to finish");
        }
        if (s_.state == Phase::kPaused) {
          return Refuse(s_, event_,
                        "the upgrade is paused; resume it first (`regenctl upgrade resume " +
                            s_.service + "`)");
        }
        return Refuse(s_, event_, "the upgrade is rolling back");
      default:
        return Refuse(s_, event_, "there is no UD waiting for the operator in this state");
    }
    bool healing = !s_.healing_in_progress.empty();
    if (healing && policy_.manual_policy == ManualStepPolicy::kBlock && !e.force) {
      return Refuse(s_, event_,
                    "cannot start " + ud +
                        " while instances are being healed: " + Join(s_.healing_in_progress) +
                        " (policy block); wait for healing to end, or use --force");
    }
    s_.state = Phase::kRunning;
    s_.resume_to.reset();
    s_.current_ud_started = true;
    s_.message = ud + " started by the operator";
    if (healing) {
      s_.message += std::string(e.force ? " with --force" : " (policy allow)") + " while " +
                    Join(s_.healing_in_progress) + " is being healed";
    }
    s_.message += "; upgrading it to " + s_.to_version;
    return Status::Ok();
  }

  Status operator()(const upgrade_event::Rollback&) {
    if (s_.state == Phase::kRolledBack || RollingBack(s_)) return NoOp();
    if (s_.state == Phase::kCompleted) {
      return Refuse(s_, event_,
                    "the upgrade is completed; to go back, start an upgrade to " + s_.from_version +
                        " (regenctl upgrade start " + s_.service + " --to-version " +
                        s_.from_version + ")");
    }
    BeginRollback(s_, /*keep_paused=*/false, "rollback requested");
    return Status::Ok();
  }

  Status operator()(const upgrade_event::RolledBackUd& e) {
    RETURN_IF_ERROR(CheckUd(s_, event_, e.ud));
    std::string ud = "UD " + std::to_string(e.ud);
    if (!RollingBack(s_)) {
      if (s_.state == Phase::kRolledBack) return NoOp();
      return Refuse(s_, event_, ud + " reported rolled back, but no rollback is in progress");
    }
    if (e.ud > s_.current_ud) return NoOp();  // rolled back already
    if (e.ud != s_.current_ud) {
      return Refuse(s_, event_,
                    ud + " reported rolled back, but the rollback is at UD " +
                        std::to_string(s_.current_ud) + " (UDs roll back highest first)");
    }
    s_.upgraded_uds.erase(e.ud);
    if (s_.upgraded_uds.empty()) {
      s_.state = Phase::kRolledBack;
      s_.resume_to.reset();
      s_.message = "rolled back: every UD runs " + s_.from_version;
      return Status::Ok();
    }
    s_.current_ud = *s_.upgraded_uds.rbegin();
    s_.message =
        ud + " rolled back; " +
        (s_.state == Phase::kRollingBack ? EnteredMessage(s_)
                                         : "UD " + std::to_string(s_.current_ud) + " is next (" +
                                               UpgradePhaseName(s_.state) + ")");
    return Status::Ok();
  }

  void set_unix_ms(int64_t ms) { unix_ms_ = ms; }

 private:
  Status NoOp() {
    no_op_ = true;
    return Status::Ok();
  }

  const UpgradeState& prev_;
  UpgradeState s_;
  const UpgradePolicy& policy_;
  std::string_view event_;
  int64_t unix_ms_ = 0;
  bool no_op_ = false;
};

}  // namespace

bool IsActive(const UpgradeState& state) {
  return !state.service.empty() && !IsTerminal(state.state);
}

std::string DescribeUpgrade(const UpgradeState& s) {
  if (s.service.empty()) return "no upgrade recorded";
  return "upgrade of service " + s.service + " (" + s.from_version + " -> " + s.to_version +
         ", mode " + UpgradeModeName(s.mode) + ") is " + UpgradePhaseName(s.state) + " at UD " +
         std::to_string(s.current_ud) + " " + UdRange(s);
}

const char* UpgradeEventName(const UpgradeEvent& event) {
  static constexpr const char* kNames[] = {
      "start", "instance-failed", "healing-done", "ud-upgraded", "health-check-failed",
      "pause", "resume",          "next-ud",      "rollback",    "ud-rolled-back"};
  static_assert(std::size(kNames) == std::variant_size_v<UpgradeEventKind>);
  return kNames[event.what.index()];
}

Result<UpgradeState> Apply(const UpgradeState& state, const UpgradeEvent& event,
                           const UpgradePolicy& policy) {
  const char* name = UpgradeEventName(event);
  bool start = std::holds_alternative<upgrade_event::Start>(event.what);
  if (state.service.empty()) {
    if (!start) {
      return FailedPrecondition(std::string(name) +
                                " refused: no upgrade has been started for this service");
    }
  } else {
    RETURN_IF_ERROR(ValidateUpgradeState(state));
  }
  if (event.unix_ms < 0) {
    return InvalidArgument(std::string(name) + ": event time must be >= 0, got " +
                           std::to_string(event.unix_ms));
  }
  Transition t(state, policy, name);
  t.set_unix_ms(event.unix_ms);
  RETURN_IF_ERROR(std::visit(t, event.what));
  if (t.no_op()) return state;
  UpgradeState next = std::move(t.state());
  next.updated_at_unix_ms = event.unix_ms;
  Status valid = ValidateUpgradeState(next);
  if (!valid.ok()) {
    return Internal("broken invariant after " + std::string(name) + ": " + valid.message());
  }
  return next;
}

}  // namespace regen
