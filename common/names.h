// Validation of the names Regen puts into libvirt XML, OpenFlow and DNS, and of the other names
// and addresses every module checks the same way (versions, DNS zones, host:port). Pure; any
// thread.
#pragma once

#include <cstdint>
#include <string>
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
// Version names of a service: [a-z0-9][a-z0-9._-]{0,62}.
bool IsValidVersionName(std::string_view name);
// The rule above for error messages: "must match [a-z0-9][a-z0-9._-]{0,62}: ...".
extern const char kVersionNameRule[];

// A DNS name in lower case: labels [a-z0-9-]{1,63} without leading or trailing '-', separated by
// '.', at most 253 characters, no trailing dot.
bool IsValidDnsName(std::string_view name);
// A DNS zone: a lower-case DNS name (as IsValidDnsName) with the final '.', e.g. "lab.example.".
bool IsValidZoneName(std::string_view zone);

// Splits "host:port" at the last ':' into the host and a port 1..65535 (at most 5 digits). A
// bracketed host "[::1]" loses its brackets (`bracketed` tells); an unbracketed host must not
// contain ':'. The host is not checked further. False (outputs unchanged) otherwise.
bool SplitHostPort(std::string_view text, std::string* host, uint16_t* port,
                   bool* bracketed = nullptr);
// "host:port" as SplitHostPort, with a host that is a host name, an IPv4 address or a bracketed
// IPv6 address; with `ip_only` the host must be an IP address.
bool IsValidHostPort(std::string_view text, bool ip_only);

// Quotes a value for an error message: printable ASCII kept, the rest as \xNN, cut at 80 chars.
std::string QuoteValue(std::string_view value);

}  // namespace regen
