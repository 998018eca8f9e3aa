// Several controller addresses (HA, issue 14): the list agent.yaml's controller_address,
// regenctl --controller and REGEN_CONTROLLER accept ("a:7400,b:7400"), and the answer of a
// standby controller naming the active one. Pure; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace regen {

// How a standby controller's UNAVAILABLE message starts; the active's "host:port" (or
// "unknown") follows.
inline constexpr std::string_view kStandbyPrefix =
    "standby controller; the active controller is at ";

// Checks a list of controller addresses: each entry "host:port" (common/names.h IsValidHostPort),
// none twice, at least one. INVALID_ARGUMENT otherwise, naming the entry (1-based), the value and
// what to do, e.g. `entry 2 of 3 "b:99999" must be "host:port" ...`; callers put the setting's
// name in front.
Status ValidateControllerList(const std::vector<std::string>& entries);
// Splits "a:7400, b:7400" at ',' (blanks around entries dropped) and validates it as above.
Result<std::vector<std::string>> ParseControllerList(std::string_view text);
// "a:7400,b:7400".
std::string JoinControllerList(const std::vector<std::string>& addresses);

// For the message of an UNAVAILABLE status: nullopt when it is not a standby's answer; else the
// active controller's address as the standby names it ("" when it says "unknown").
std::optional<std::string> StandbyRedirect(std::string_view message);

}  // namespace regen
