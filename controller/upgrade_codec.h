// The upgrade state's persistence codec: JSON for the store and `regenctl upgrade status -o json`,
// and the invariants every stored or applied state keeps. Pure; any thread.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string_view>

#include "common/status.h"

namespace regen {

struct UpgradeState;  // controller/upgrade.h

// OK, or INVALID_ARGUMENT naming the broken invariant (see UpgradeState).
Status ValidateUpgradeState(const UpgradeState& state);

// JSON, for the store and `regenctl upgrade status -o json`. Keys: service, from_version,
// to_version, mode, state, resume_to (only when preempted or paused), update_domains, current_ud,
// current_ud_started, upgraded_uds, healing_in_progress, failed_health_checks (object), started_at
// and updated_at (unix ms), message. Unknown keys are ignored.
nlohmann::json UpgradeStateToJson(const UpgradeState& state);
// INVALID_ARGUMENT naming the key for a missing key or a value of the wrong type, and for a state
// that breaks an invariant. Never throws.
Result<UpgradeState> UpgradeStateFromJson(const nlohmann::json& j);
Result<UpgradeState> ParseUpgradeStateJson(std::string_view text);

}  // namespace regen
