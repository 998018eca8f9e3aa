// Turns controller.yaml's `dns:` block (regen::DnsConfig, parsed and validated by config/) into
// the options of the DNS updater and sync, reading the TSIG secret file. Any thread.
#pragma once

#include <optional>

#include "common/status.h"
#include "config/controller_config.h"
#include "dns/dns_sync.h"
#include "dns/ldns_updater.h"

namespace regen::dns {

struct DnsSetup {
  LdnsUpdaterOptions updater;
  DnsSyncOptions sync;
};

// nullopt when dns.server is "" (no DNS updates). Errors name the field: a server that is not
// "ip:port", a zone without the final '.', an unreadable or mismatching TSIG secret file.
Result<std::optional<DnsSetup>> DnsSetupFromConfig(const DnsConfig& config);

// "127.0.0.1:5353" or "[::1]:53" -> address and port (common/names.h SplitHostPort), or
// INVALID_ARGUMENT naming dns.server. Kept for the agent, which reads the same setting.
Status SplitHostPort(const std::string& text, std::string* address, uint16_t* port);

}  // namespace regen::dns
