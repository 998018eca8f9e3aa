// Validation of the names Regen puts into libvirt XML, OpenFlow and DNS. Pure; any thread.
#pragma once

#include <string_view>

#include "common/status.h"

namespace regen {

// Service, instance and host names: [a-z][a-z0-9-]{0,62}.
bool IsValidName(std::string_view name);
// OK, or INVALID_ARGUMENT naming `field` and the value (quoted, control characters escaped).
Status ValidateName(std::string_view field, std::string_view name);
// A MAC address "52:54:00:ab:cd:ef" (lower or upper case hex, unicast).
bool IsValidMac(std::string_view mac);
// A dotted IPv4 address.
bool IsValidIpv4(std::string_view ip);
// Quotes a value for an error message: printable ASCII kept, the rest as \xNN, cut at 80 chars.
std::string QuoteValue(std::string_view value);

}  // namespace regen
