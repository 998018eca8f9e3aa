// Helpers shared by the upgrade state machine (upgrade.cc) and its codec (upgrade_codec.cc);
// not for other modules. Pure; any thread.
#pragma once

#include <set>
#include <string>
#include <string_view>

#include "common/names.h"
#include "controller/upgrade.h"

namespace regen::upgrade_internal {

// `resume_to` while preempted or paused, else `state`.
inline UpgradePhase Base(const UpgradeState& s) {
  if ((s.state == UpgradePhase::kPreempted || s.state == UpgradePhase::kPaused) && s.resume_to) {
    return *s.resume_to;
  }
  return s.state;
}

inline bool RollingBack(const UpgradeState& s) { return Base(s) == UpgradePhase::kRollingBack; }

// "(UDs 0..2)"
inline std::string UdRange(const UpgradeState& s) {
  return "(UDs 0.." + std::to_string(s.update_domains - 1) + ")";
}

// "web-0, web-1"
inline std::string Join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// OK, or INVALID_ARGUMENT "invalid FIELD "v" (a version name: ...)" (common/names.h's rule).
inline Status ValidateVersion(std::string_view field, std::string_view v) {
  if (IsValidVersionName(v)) return Status::Ok();
  return InvalidArgument("invalid " + std::string(field) + " " + QuoteValue(v) +
                         " (a version name: [a-z0-9][a-z0-9._-]{0,62})");
}

}  // namespace regen::upgrade_internal
