#include "dns/dns_updater.h"

#include <algorithm>
#include <string_view>

#include "common/names.h"

namespace regen::dns {
namespace {

constexpr uint32_t kMaxTtl = 0x7fffffff;  // RFC 2181 section 8

bool IsValidLabel(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  return std::all_of(label.begin(), label.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

// An absolute lower-case name ending with '.', labels [a-z0-9-]{1,63}, 254 characters at most.
bool IsValidAbsoluteName(std::string_view name) {
  if (name.size() < 2 || name.size() > 254 || name.back() != '.') return false;
  name.remove_suffix(1);
  while (true) {
    size_t dot = name.find('.');
    if (!IsValidLabel(name.substr(0, dot))) return false;
    if (dot == std::string_view::npos) return true;
    name.remove_prefix(dot + 1);
  }
}

bool IsInZone(std::string_view name, std::string_view zone) {
  if (name == zone) return true;
  return name.size() > zone.size() && name.ends_with(zone) &&
         name[name.size() - zone.size() - 1] == '.';
}

}  // namespace

Status ValidateZoneName(const std::string& zone) {
  if (!IsValidZoneName(zone)) {
    return InvalidArgument("DNS zone " + QuoteValue(zone) +
                           " is not a lower-case zone name ending with '.' (e.g. "
                           "\"lab.example.\")");
  }
  return Status::Ok();
}

Status ValidateRecordName(const std::string& zone, const std::string& name) {
  if (!IsValidAbsoluteName(name)) {
    return InvalidArgument("DNS name " + QuoteValue(name) +
                           " is not an absolute lower-case name ending with '.' (labels of "
                           "a-z, 0-9 and '-', e.g. \"web-1.lab.example.\")");
  }
  if (!IsInZone(name, zone)) {
    return InvalidArgument("DNS name " + QuoteValue(name) + " lies outside zone " +
                           QuoteValue(zone) + ": only names of the zone can be updated");
  }
  return Status::Ok();
}

Status ValidateZoneRecords(const std::string& zone, const ZoneRecords& records) {
  RETURN_IF_ERROR(ValidateZoneName(zone));
  for (const auto& [name, addresses] : records) {
    RETURN_IF_ERROR(ValidateRecordName(zone, name));
    for (const std::string& ip : addresses) {
      if (!IsValidIpv4(ip)) {
        return InvalidArgument("address " + QuoteValue(ip) + " of DNS name " + name +
                               " is not a dotted IPv4 address");
      }
    }
  }
  return Status::Ok();
}

Result<ZoneRecords> DesiredZoneRecords(const std::string& zone,
                                       const std::vector<ServiceAddresses>& services) {
  RETURN_IF_ERROR(ValidateZoneName(zone));
  ZoneRecords records;
  std::map<std::string, std::string> owner;  // name -> what claimed it, for messages
  auto claim = [&](const std::string& name, const std::string& who) -> Status {
    auto [it, inserted] = owner.emplace(name, who);
    if (!inserted) {
      return InvalidArgument("DNS name " + name + " is claimed by both " + it->second + " and " +
                             who + ": give one of them another name (network.dns_name)");
    }
    return Status::Ok();
  };
  for (const ServiceAddresses& service : services) {
    RETURN_IF_ERROR(regen::ValidateName("service", service.service));
    std::string service_name =
        service.dns_name.empty() ? service.service + "." + zone : service.dns_name;
    if (!service_name.ends_with('.')) service_name += '.';
    RETURN_IF_ERROR(ValidateRecordName(zone, service_name)
                        .WithContext("service " + service.service + " (network.dns_name)"));
    RETURN_IF_ERROR(claim(service_name, "service " + service.service));
    std::set<std::string>& service_set = records[service_name];
    for (const InstanceAddress& instance : service.instances) {
      RETURN_IF_ERROR(regen::ValidateName("instance", instance.instance));
      if (instance.ip.empty()) continue;
      if (!IsValidIpv4(instance.ip)) {
        return InvalidArgument("instance " + instance.instance + " has IP " +
                               QuoteValue(instance.ip) + ", not a dotted IPv4 address");
      }
      std::string name = instance.instance + "." + zone;
      RETURN_IF_ERROR(claim(name, "instance " + instance.instance));
      records[name].insert(instance.ip);
      service_set.insert(instance.ip);
    }
    if (service_set.empty()) records.erase(service_name);
  }
  return records;
}

size_t ZoneUpdate::RecordCount() const {
  size_t count = deletes.size();
  for (const RRsetReplacement& r : replaces) count += 1 + r.addresses.size();
  return count;
}

std::string ZoneUpdate::ToString() const {
  std::string out = "zone " + zone + " ttl " + std::to_string(ttl) + ":";
  if (empty()) return out + " no change";
  const char* separator = " ";
  for (const std::string& name : deletes) {
    out += separator;
    out += "delete " + name;
    separator = "; ";
  }
  for (const RRsetReplacement& r : replaces) {
    out += separator;
    out += "set " + r.name + " =";
    for (const std::string& ip : r.addresses) out += " " + ip;
    separator = "; ";
  }
  return out;
}

Result<ZoneUpdate> BuildZoneUpdate(const std::string& zone, uint32_t ttl,
                                   const std::optional<ZoneRecords>& applied,
                                   const ZoneRecords& desired,
                                   const std::set<std::string>& uncertain) {
  if (ttl == 0 || ttl > kMaxTtl) {
    return InvalidArgument("DNS TTL " + std::to_string(ttl) + " for zone " + zone +
                           " must be between 1 and 2147483647 seconds");
  }
  RETURN_IF_ERROR(ValidateZoneRecords(zone, desired));
  if (applied) RETURN_IF_ERROR(ValidateZoneRecords(zone, *applied).WithContext("applied records"));
  for (const std::string& name : uncertain) {
    RETURN_IF_ERROR(ValidateRecordName(zone, name).WithContext("names published earlier"));
  }

  static const std::set<std::string> kNone;
  auto addresses_in = [](const ZoneRecords& records, const std::string& name) {
    auto it = records.find(name);
    return it == records.end() ? &kNone : &it->second;
  };
  ZoneUpdate update;
  update.zone = zone;
  update.ttl = ttl;
  std::set<std::string> deletes;
  if (applied) {
    for (const auto& [name, addresses] : *applied) {
      if (!addresses.empty() && addresses_in(desired, name)->empty()) deletes.insert(name);
    }
  }
  for (const std::string& name : uncertain) {
    if (addresses_in(desired, name)->empty()) deletes.insert(name);
  }
  update.deletes.assign(deletes.begin(), deletes.end());
  for (const auto& [name, addresses] : desired) {
    if (addresses.empty()) continue;
    if (applied && *addresses_in(*applied, name) == addresses && !uncertain.count(name)) continue;
    update.replaces.push_back({name, {addresses.begin(), addresses.end()}});
  }
  return update;
}

}  // namespace regen::dns
