// The real DnsUpdater: RFC 2136 UPDATEs built and TSIG-signed with libldns (included only in
// ldns_updater.cc), sent over UDP (TCP when the message is too big or the answer is truncated).
// Apply() is thread-safe (each call uses its own socket) and blocks up to the timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "dns/dns_updater.h"
#include "dns/tsig_key.h"

namespace regen::dns {

struct LdnsUpdaterOptions {
  std::string server_address;  // an IP literal: "127.0.0.1" or "::1" (no name lookup)
  uint16_t port = 53;
  std::optional<TsigKey> tsig;  // none: updates are unsigned (the server's ACL must allow that)
  // For one exchange (UDP, then TCP if needed, each gets the whole timeout).
  std::chrono::milliseconds timeout{2000};
  bool tcp_only = false;  // always TCP; else UDP up to 512 bytes and TCP for bigger messages
};

// Errors: INVALID_ARGUMENT for a bad address, port or key (checked here, before any send).
// Apply() then reports, naming the server, the zone and what to do:
//  - UNAVAILABLE: no answer within the timeout, connection refused, SERVFAIL;
//  - FAILED_PRECONDITION: the server refused (REFUSED, NOTAUTH with the TSIG error BADKEY,
//    BADSIG or BADTIME, NOTZONE), or its answer's TSIG did not verify;
//  - INTERNAL: other rcodes (FORMERR, ...) and encoding failures.
Result<std::unique_ptr<DnsUpdater>> NewLdnsUpdater(const LdnsUpdaterOptions& options);

}  // namespace regen::dns
