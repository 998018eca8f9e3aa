#include "controller/upgrade_codec.h"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "common/names.h"
#include "controller/upgrade.h"
#include "controller/upgrade_internal.h"

namespace regen {
namespace {

using json = nlohmann::json;
using Phase = UpgradePhase;
using upgrade_internal::Base;
using upgrade_internal::Join;
using upgrade_internal::UdRange;
using upgrade_internal::ValidateVersion;

constexpr Phase kAllPhases[] = {
    Phase::kRunning,   Phase::kPreempted,   Phase::kPaused,     Phase::kWaitingForOperator,
    Phase::kCompleted, Phase::kRollingBack, Phase::kRolledBack, Phase::kFailed};

// JSON reading without exceptions.

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

// The message of every broken invariant.
Status Bad(const UpgradeState& s, const std::string& why) {
  return InvalidArgument("invalid upgrade state of service " + QuoteValue(s.service) + ": " + why);
}

// Names, versions, UD numbers, counters and times.
Status ValidateFields(const UpgradeState& s) {
  auto bad = [&s](const std::string& why) { return Bad(s, why); };
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
  return Status::Ok();
}

// What the phase (and the phase it resumes to) requires of the mode, current_ud_started and
// healing.
Status ValidatePhase(const UpgradeState& s) {
  auto bad = [&s](const std::string& why) { return Bad(s, why); };
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
  const Phase base = Base(s);
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
  return Status::Ok();
}

// upgraded_uds and current_ud against the base phase.
Status ValidateUpgradedUds(const UpgradeState& s) {
  auto bad = [&s](const std::string& why) { return Bad(s, why); };
  const Phase base = Base(s);
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

Status ValidateUpgradeState(const UpgradeState& s) {
  RETURN_IF_ERROR(ValidateFields(s));
  RETURN_IF_ERROR(ValidatePhase(s));
  return ValidateUpgradedUds(s);
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
