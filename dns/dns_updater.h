// The DNS records Regen keeps for a zone (an A record per instance, a round-robin A set per
// service) and the RFC 2136 UPDATE that moves a server from one record set to another.
// The types and the Build*/Desired* functions are pure (any thread); DnsUpdater is the seam over
// the DNS server, implemented with libldns in ldns_updater.cc and faked in tests.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace regen::dns {

// Owner name (absolute, lower case, ending with '.') -> the IPv4 addresses of its A RRset.
// A name with no addresses is the same as a name that is absent.
using ZoneRecords = std::map<std::string, std::set<std::string>>;

// One instance as DNS sees it: "<instance>.<zone>" resolves to `ip` ("" = no record).
struct InstanceAddress {
  std::string instance;
  std::string ip;
};

// A service and its instances: "<service>.<zone>" (or `dns_name`) resolves to every instance IP.
struct ServiceAddresses {
  std::string service;
  // network.dns_name from the service spec ("web.lab.example", '.' at the end optional); it must
  // lie inside the zone. "" means "<service>.<zone>".
  std::string dns_name;
  std::vector<InstanceAddress> instances;
};

// The records Regen wants in `zone` for these services. Errors (INVALID_ARGUMENT) on a bad zone,
// service or instance name, IP, or a dns_name outside the zone, or two services claiming one name.
Result<ZoneRecords> DesiredZoneRecords(const std::string& zone,
                                       const std::vector<ServiceAddresses>& services);

// An A RRset to (re)write: delete the name's A RRset, then add one A record per address.
struct RRsetReplacement {
  std::string name;
  std::vector<std::string> addresses;  // sorted, unique, never empty
  bool operator==(const RRsetReplacement&) const = default;
};

// One RFC 2136 UPDATE message for `zone` (no prerequisites). Applied in order by the server:
// first every name in `deletes` loses its A RRset, then every RRset in `replaces` is deleted and
// re-added with `ttl`. Both steps are idempotent, so sending the same update twice (a retry after
// a lost answer) leaves the same records. Only type A is touched; other types of a name are kept.
struct ZoneUpdate {
  std::string zone;  // "lab.example."
  uint32_t ttl = 0;
  std::vector<std::string> deletes;        // sorted
  std::vector<RRsetReplacement> replaces;  // sorted by name
  bool empty() const { return deletes.empty() && replaces.empty(); }
  // Resource records in the update section (one per deleted RRset, one per RRset deletion and
  // one per added address of a replacement).
  size_t RecordCount() const;
  // For logs: "zone lab.example. ttl 30: delete web-2.lab.example.; set web.lab.example. =
  // 10.0.0.2 10.0.0.3".
  std::string ToString() const;
  bool operator==(const ZoneUpdate&) const = default;
};

// The update that turns `applied` (what the server holds; nullopt when unknown, e.g. after a
// restart: then every desired name is rewritten) into `desired`. Names whose addresses are
// unchanged are left out; an empty update means nothing to send.
// `uncertain` names may hold A records of Regen's that `applied` does not show (published before
// a restart, or sent in an update whose answer never came): each is deleted when not desired and
// rewritten when desired. Only names Regen published belong there: a name of the zone that is
// in none of `applied`, `desired` and `uncertain` is never touched.
// Errors (INVALID_ARGUMENT) on a bad zone, a name outside the zone, a bad IPv4 address or a TTL
// of 0 or above 2^31-1.
Result<ZoneUpdate> BuildZoneUpdate(const std::string& zone, uint32_t ttl,
                                   const std::optional<ZoneRecords>& applied,
                                   const ZoneRecords& desired,
                                   const std::set<std::string>& uncertain = {});

// OK when `name` is an absolute lower-case DNS name inside `zone` (the zone itself is not checked).
Status ValidateRecordName(const std::string& zone, const std::string& name);

// OK when `records` are all valid names inside `zone` with valid IPv4 addresses.
Status ValidateZoneRecords(const std::string& zone, const ZoneRecords& records);

// Checks a zone name: lower case, labels [a-z0-9-], at least two characters, ends with '.'.
Status ValidateZoneName(const std::string& zone);

// The seam over an authoritative DNS server that accepts RFC 2136 updates.
class DnsUpdater {
 public:
  virtual ~DnsUpdater() = default;
  // Sends `update` as one UPDATE message and waits for the answer. OK only when the server
  // answered NOERROR (with a verified TSIG when the updater signs). An empty update is OK without
  // sending. Blocks up to the implementation's timeout: call it from a worker, never from a loop
  // that heals (see DnsSync). Implementations say whether they are thread-safe.
  virtual Status Apply(const ZoneUpdate& update) = 0;
  // The server for messages, e.g. "127.0.0.1:5353".
  virtual std::string ServerName() const = 0;
};

}  // namespace regen::dns
