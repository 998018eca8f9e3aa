#include "controller/upgrade.h"

#include <cstdint>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <variant>

#include "common/names.h"

namespace regen {
namespace {

using json = nlohmann::json;
using Phase = UpgradePhase;

constexpr Phase kAllPhases[] = {
    Phase::kRunning,   Phase::kPreempted,   Phase::kPaused,     Phase::kWaitingForOperator,
    Phase::kCompleted, Phase::kRollingBack, Phase::kRolledBack, Phase::kFailed};

// Version names as in service specs: [a-z0-9][a-z0-9._-]{0,62}.
bool IsValidVersionName(std::string_view v) {
  if (v.empty() || v.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(v[0])) return false;
  for (char c : v) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

Status ValidateVersion(std::string_view field, std::string_view v) {
  if (IsValidVersionName(v)) return Status::Ok();
  return InvalidArgument("invalid " + std::string(field) + " " + QuoteValue(v) +
                         " (a version name: [a-z0-9][a-z0-9._-]{0,62})");
}

std::string Join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Highest first, as a rollback visits them: "2, 1, 0".
std::string JoinUdsDescending(const std::set<int64_t>& uds) {
  std::string out;
  for (auto it = uds.rbegin(); it != uds.rend(); ++it) {
    out += (out.empty() ? "" : ", ") + std::to_string(*it);
  }
  return out;
}

// `resume_to` while preempted or paused, else `state`.
Phase Base(const UpgradeState& s) {
  if ((s.state == Phase::kPreempted || s.state == Phase::kPaused) && s.resume_to) {
    return *s.resume_to;
  }
  return s.state;
}

bool RollingBack(const UpgradeState& s) { return Base(s) == Phase::kRollingBack; }

std::string UdRange(const UpgradeState& s) {
  return "(UDs 0.." + std::to_string(s.update_domains - 1) + ")";
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
    if (s_.state == Phase::kPreempted && s_.healing_in_progress.empty()) {
      Enter(s_, *s_.resume_to);
      s_.message = e.instance + " healed; no healing left, resumed: " + EnteredMessage(s_);
    } else if (s_.healing_in_progress.empty()) {
      s_.message = e.instance + " healed; no healing left";
    } else {
      s_.message = e.instance + " healed; still healing " + Join(s_.healing_in_progress);
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

// --- JSON reading without exceptions.

Status MissingOrWrong(std::string_view key, std::string_view want) {
  return InvalidArgument("upgrade state JSON: key \"" + std::string(key) + "\" must be " +
                         std::string(want));
}

Status ReadString(const json& j, std::string_view key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return MissingOrWrong(key, "a string");
  *out = it->get<std::string>();
  return Status::Ok();
}

bool AsInt64(const json& v, int64_t* out) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    *out = static_cast<int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return true;
  }
  return false;
}

Status ReadInt(const json& j, std::string_view key, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || !AsInt64(*it, out)) return MissingOrWrong(key, "an integer");
  return Status::Ok();
}

Status ReadBool(const json& j, std::string_view key, bool* out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_boolean()) return MissingOrWrong(key, "true or false");
  *out = it->get<bool>();
  return Status::Ok();
}

}  // namespace

const char* UpgradeModeName(UpgradeMode mode) {
  switch (mode) {
    case UpgradeMode::kAuto:
      return "auto";
    case UpgradeMode::kManual:
      return "manual";
  }
  return "?";
}

Result<UpgradeMode> ParseUpgradeMode(std::string_view text) {
  if (text == "auto") return UpgradeMode::kAuto;
  if (text == "manual") return UpgradeMode::kManual;
  return InvalidArgument("invalid upgrade mode " + QuoteValue(text) + " (auto | manual)");
}

const char* UpgradePhaseName(UpgradePhase phase) {
  switch (phase) {
    case Phase::kRunning:
      return "running";
    case Phase::kPreempted:
      return "preempted";
    case Phase::kPaused:
      return "paused";
    case Phase::kWaitingForOperator:
      return "waiting_for_operator";
    case Phase::kCompleted:
      return "completed";
    case Phase::kRollingBack:
      return "rolling_back";
    case Phase::kRolledBack:
      return "rolled_back";
    case Phase::kFailed:
      return "failed";
  }
  return "?";
}

Result<UpgradePhase> ParseUpgradePhase(std::string_view text) {
  for (Phase p : kAllPhases) {
    if (text == UpgradePhaseName(p)) return p;
  }
  return InvalidArgument("invalid upgrade state " + QuoteValue(text) +
                         " (running | preempted | paused | waiting_for_operator | completed | "
                         "rolling_back | rolled_back | failed)");
}

bool IsTerminal(UpgradePhase phase) {
  return phase == Phase::kCompleted || phase == Phase::kRolledBack;
}

const char* ManualStepPolicyName(ManualStepPolicy policy) {
  switch (policy) {
    case ManualStepPolicy::kBlock:
      return "block";
    case ManualStepPolicy::kAllow:
      return "allow";
  }
  return "?";
}

Result<ManualStepPolicy> ParseManualStepPolicy(std::string_view text) {
  if (text == "block") return ManualStepPolicy::kBlock;
  if (text == "allow") return ManualStepPolicy::kAllow;
  return InvalidArgument("invalid manual upgrade policy " + QuoteValue(text) + " (block | allow)");
}

bool IsActive(const UpgradeState& state) {
  return !state.service.empty() && !IsTerminal(state.state);
}

std::string DescribeUpgrade(const UpgradeState& s) {
  if (s.service.empty()) return "no upgrade recorded";
  return "upgrade of service " + s.service + " (" + s.from_version + " -> " + s.to_version +
         ", mode " + UpgradeModeName(s.mode) + ") is " + UpgradePhaseName(s.state) + " at UD " +
         std::to_string(s.current_ud) + " " + UdRange(s);
}

Status ValidateUpgradeState(const UpgradeState& s) {
  auto bad = [&s](const std::string& why) {
    return InvalidArgument("invalid upgrade state of service " + QuoteValue(s.service) + ": " +
                           why);
  };
  RETURN_IF_ERROR(ValidateName("service", s.service).WithContext("invalid upgrade state"));
  RETURN_IF_ERROR(ValidateVersion("from_version", s.from_version)
                      .WithContext("invalid upgrade state of service " + s.service));
  RETURN_IF_ERROR(ValidateVersion("to_version", s.to_version)
                      .WithContext("invalid upgrade state of service " + s.service));
  if (s.from_version == s.to_version) return bad("from_version equals to_version");
  if (s.update_domains < 1) return bad("update_domains must be >= 1");
  if (s.current_ud < 0 || s.current_ud >= s.update_domains) {
    return bad("current_ud " + std::to_string(s.current_ud) + " is not a UD " + UdRange(s));
  }
  for (int64_t ud : s.upgraded_uds) {
    if (ud < 0 || ud >= s.update_domains) {
      return bad("upgraded UD " + std::to_string(ud) + " is not a UD " + UdRange(s));
    }
  }
  for (const auto& name : s.healing_in_progress) {
    RETURN_IF_ERROR(ValidateName("instance being healed", name)
                        .WithContext("invalid upgrade state of service " + s.service));
  }
  for (const auto& [name, count] : s.failed_health_checks) {
    RETURN_IF_ERROR(ValidateName("instance in failed_health_checks", name)
                        .WithContext("invalid upgrade state of service " + s.service));
    if (count < 1) return bad("failed_health_checks of " + name + " must be >= 1");
  }
  if (s.started_at_unix_ms < 0 || s.updated_at_unix_ms < 0) {
    return bad("started_at and updated_at must be >= 0");
  }

  bool held = s.state == Phase::kPreempted || s.state == Phase::kPaused;
  if (held != s.resume_to.has_value()) {
    return bad(std::string("resume_to must be set exactly when preempted or paused (state ") +
               UpgradePhaseName(s.state) + ")");
  }
  if (s.state == Phase::kPreempted) {
    if (*s.resume_to != Phase::kRunning && *s.resume_to != Phase::kRollingBack) {
      return bad(std::string("preempted with resume_to ") + UpgradePhaseName(*s.resume_to));
    }
    if (s.healing_in_progress.empty()) return bad("preempted with no healing in progress");
  }
  if (s.state == Phase::kPaused && *s.resume_to != Phase::kRunning &&
      *s.resume_to != Phase::kRollingBack && *s.resume_to != Phase::kWaitingForOperator) {
    return bad(std::string("paused with resume_to ") + UpgradePhaseName(*s.resume_to));
  }
  Phase base = Base(s);
  if (base == Phase::kWaitingForOperator) {
    if (s.mode != UpgradeMode::kManual) return bad("waiting_for_operator in auto mode");
    if (s.current_ud_started) return bad("waiting_for_operator with current_ud_started");
  }
  if (s.state == Phase::kRunning) {
    if (!s.current_ud_started) return bad("running without current_ud_started");
    if (s.mode == UpgradeMode::kAuto && !s.healing_in_progress.empty()) {
      return bad("running in auto mode while healing " + Join(s.healing_in_progress) +
                 " (must be preempted)");
    }
  }
  if (s.state == Phase::kRollingBack && !s.healing_in_progress.empty()) {
    return bad("rolling_back while healing " + Join(s.healing_in_progress) +
               " (must be preempted)");
  }

  auto prefix = [](int64_t n) {  // {0 .. n-1}
    std::set<int64_t> out;
    for (int64_t i = 0; i < n; ++i) out.insert(i);
    return out;
  };
  switch (base) {
    case Phase::kRunning:
    case Phase::kWaitingForOperator:
    case Phase::kFailed:
      if (s.upgraded_uds != prefix(s.current_ud)) {
        return bad("upgraded_uds must be the UDs below current_ud " + std::to_string(s.current_ud));
      }
      break;
    case Phase::kRollingBack:
      if (s.current_ud_started) return bad("current_ud_started while rolling back");
      if (s.upgraded_uds != prefix(s.current_ud + 1)) {
        return bad("while rolling back, upgraded_uds must be UDs 0.." +
                   std::to_string(s.current_ud));
      }
      break;
    case Phase::kCompleted:
      if (s.upgraded_uds != prefix(s.update_domains))
        return bad("completed, not every UD upgraded");
      if (s.current_ud != s.update_domains - 1) return bad("completed, current_ud not the last");
      if (s.current_ud_started) return bad("completed with current_ud_started");
      break;
    case Phase::kRolledBack:
      if (!s.upgraded_uds.empty()) return bad("rolled_back with upgraded UDs");
      if (s.current_ud_started) return bad("rolled_back with current_ud_started");
      break;
    default:
      return bad(std::string("state ") + UpgradePhaseName(base) + " cannot be resumed to");
  }
  return Status::Ok();
}

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

json UpgradeStateToJson(const UpgradeState& s) {
  json j = json::object();
  j["service"] = s.service;
  j["from_version"] = s.from_version;
  j["to_version"] = s.to_version;
  j["mode"] = UpgradeModeName(s.mode);
  j["state"] = UpgradePhaseName(s.state);
  if (s.resume_to) j["resume_to"] = UpgradePhaseName(*s.resume_to);
  j["update_domains"] = s.update_domains;
  j["current_ud"] = s.current_ud;
  j["current_ud_started"] = s.current_ud_started;
  j["upgraded_uds"] = json::array();
  for (int64_t ud : s.upgraded_uds) j["upgraded_uds"].push_back(ud);
  j["healing_in_progress"] = json::array();
  for (const auto& n : s.healing_in_progress) j["healing_in_progress"].push_back(n);
  j["failed_health_checks"] = json::object();
  for (const auto& [n, c] : s.failed_health_checks) j["failed_health_checks"][n] = c;
  j["started_at"] = s.started_at_unix_ms;
  j["updated_at"] = s.updated_at_unix_ms;
  j["message"] = s.message;
  return j;
}

Result<UpgradeState> UpgradeStateFromJson(const json& j) {
  if (!j.is_object()) return InvalidArgument("upgrade state JSON must be an object");
  UpgradeState s;
  std::string text;
  RETURN_IF_ERROR(ReadString(j, "service", &s.service));
  RETURN_IF_ERROR(ReadString(j, "from_version", &s.from_version));
  RETURN_IF_ERROR(ReadString(j, "to_version", &s.to_version));
  RETURN_IF_ERROR(ReadString(j, "mode", &text));
  ASSIGN_OR_RETURN(s.mode, ParseUpgradeMode(text));
  RETURN_IF_ERROR(ReadString(j, "state", &text));
  ASSIGN_OR_RETURN(s.state, ParseUpgradePhase(text));
  if (auto it = j.find("resume_to"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return MissingOrWrong("resume_to", "a state name or absent");
    ASSIGN_OR_RETURN(s.resume_to, ParseUpgradePhase(it->get<std::string>()));
  }
  RETURN_IF_ERROR(ReadInt(j, "update_domains", &s.update_domains));
  RETURN_IF_ERROR(ReadInt(j, "current_ud", &s.current_ud));
  RETURN_IF_ERROR(ReadBool(j, "current_ud_started", &s.current_ud_started));
  auto uds = j.find("upgraded_uds");
  if (uds == j.end() || !uds->is_array()) return MissingOrWrong("upgraded_uds", "an array");
  for (const auto& v : *uds) {
    int64_t ud = 0;
    if (!AsInt64(v, &ud)) return MissingOrWrong("upgraded_uds", "an array of integers");
    s.upgraded_uds.insert(ud);
  }
  auto healing = j.find("healing_in_progress");
  if (healing == j.end() || !healing->is_array()) {
    return MissingOrWrong("healing_in_progress", "an array");
  }
  for (const auto& v : *healing) {
    if (!v.is_string()) return MissingOrWrong("healing_in_progress", "an array of strings");
    s.healing_in_progress.insert(v.get<std::string>());
  }
  auto checks = j.find("failed_health_checks");
  if (checks == j.end() || !checks->is_object()) {
    return MissingOrWrong("failed_health_checks", "an object");
  }
  for (const auto& [name, v] : checks->items()) {
    int64_t count = 0;
    if (!AsInt64(v, &count)) {
      return MissingOrWrong("failed_health_checks", "an object of integers");
    }
    s.failed_health_checks[name] = count;
  }
  RETURN_IF_ERROR(ReadInt(j, "started_at", &s.started_at_unix_ms));
  RETURN_IF_ERROR(ReadInt(j, "updated_at", &s.updated_at_unix_ms));
  RETURN_IF_ERROR(ReadString(j, "message", &s.message));
  RETURN_IF_ERROR(ValidateUpgradeState(s));
  return s;
}

Result<UpgradeState> ParseUpgradeStateJson(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("upgrade state: not valid JSON");
  return UpgradeStateFromJson(j);
}

}  // namespace regen
