// AllocatorState: the facade over the host index (host_index.cc), the address pool
// (address_pool.cc) and the placement decisions (placement.cc); allocations in and out.
#include "controller/allocator.h"

#include <algorithm>
#include <utility>

#include "common/names.h"

namespace regen {

const char* PlacementPolicyName(PlacementPolicy policy) {
  return policy == PlacementPolicy::kPack ? "pack" : "spread";
}

Result<PlacementPolicy> ParsePlacementPolicy(std::string_view text) {
  if (text == "spread") return PlacementPolicy::kSpread;
  if (text == "pack") return PlacementPolicy::kPack;
  return InvalidArgument("placement: unknown policy " + QuoteValue(text) + " (use spread or pack)");
}

const char* IpPolicyName(IpPolicy policy) { return policy == IpPolicy::kNew ? "new" : "keep"; }

Result<IpPolicy> ParseIpPolicy(std::string_view text) {
  if (text == "keep") return IpPolicy::kKeep;
  if (text == "new") return IpPolicy::kNew;
  return InvalidArgument("network.ip_policy: unknown policy " + QuoteValue(text) +
                         " (use keep or new)");
}

std::string DescribeResources(const Resources& r) {
  return std::to_string(r.vcpus) + " vCPU, " + std::to_string(r.memory_mib) + " MiB memory, " +
         std::to_string(r.disk_gib) + " GiB disk, " + std::to_string(r.bandwidth_mbps) +
         " Mbps bandwidth";
}

// ---------------------------------------------------------------------------------------------
// Building and host changes.

Result<AllocatorState> AllocatorState::Build(const std::vector<HostInfo>& hosts,
                                             const std::vector<ExistingAllocation>& existing,
                                             const AddressesInUse& in_use) {
  AllocatorState state;
  for (size_t i = 0; i < hosts.size(); ++i) {
    const HostInfo& h = hosts[i];
    const std::string field = "hosts[" + std::to_string(i) + "]";
    RETURN_IF_ERROR(ValidateName(field + ".name", h.name));
    if (HostIndex::AnyNegative(h.capacity) || HostIndex::AnyNegative(h.other_usage)) {
      return InvalidArgument(field + " (" + h.name + "): capacity and other usage must not be " +
                             "negative, got capacity " + DescribeResources(h.capacity) +
                             ", other usage " + DescribeResources(h.other_usage));
    }
    if (state.hosts_.Find(h.name) >= 0) {
      return InvalidArgument(field + ": host " + h.name + " is listed twice");
    }
    state.hosts_.Append(h);
  }
  for (const std::string& ip : in_use.ips) {
    std::optional<uint32_t> v = AddressPool::ParseIp(ip);
    if (!v)
      return InvalidArgument("addresses in use: " + QuoteValue(ip) + " is not an IPv4 address");
    state.addresses_.MarkIpUsed(*v);
  }
  for (const std::string& mac : in_use.macs) {
    std::optional<uint64_t> v = AddressPool::ParseMac(mac);
    if (!v)
      return InvalidArgument("addresses in use: " + QuoteValue(mac) + " is not a MAC address");
    state.addresses_.MarkMacUsed(*v);
  }
  state.hosts_.BuildIndex();
  state.instances_.reserve(existing.size());
  for (size_t i = 0; i < existing.size(); ++i) {
    Status s = state.Adopt(existing[i]);
    if (!s.ok()) return s.WithContext("existing allocation [" + std::to_string(i) + "]");
  }
  return state;
}

Status AllocatorState::Adopt(const ExistingAllocation& e) {
  RETURN_IF_ERROR(ValidateName("instance name", e.instance));
  RETURN_IF_ERROR(ValidateName("service name", e.service));
  const std::string who = "instance " + e.instance + ": ";
  if (e.update_domain < 0) {
    return InvalidArgument(who + "update_domain must not be negative, got " +
                           std::to_string(e.update_domain));
  }
  if (instances_.count(e.instance)) return AlreadyExists(who + "already holds an allocation");
  const int32_t host = hosts_.Find(e.allocation.host);
  if (host < 0) {
    return NotFound(who + "allocated on unknown host " + QuoteValue(e.allocation.host));
  }
  if (HostIndex::AnyNegative(e.allocation.resources)) {
    return InvalidArgument(who + "negative resources " + DescribeResources(e.allocation.resources));
  }
  Instance inst;
  inst.service = e.service;
  inst.update_domain = e.update_domain;
  inst.host = host;
  inst.resources = e.allocation.resources;
  if (!e.allocation.ip.empty()) {
    inst.ip_value = AddressPool::ParseIp(e.allocation.ip);
    if (!inst.ip_value) {
      return InvalidArgument(who + "ip " + QuoteValue(e.allocation.ip) + " is not IPv4");
    }
    if (addresses_.IpInUse(*inst.ip_value)) {
      return AlreadyExists(who + "IP " + e.allocation.ip + " is already in use");
    }
    inst.ip = AddressPool::FormatIp(*inst.ip_value);
  }
  if (!e.allocation.mac.empty()) {
    inst.mac_value = AddressPool::ParseMac(e.allocation.mac);
    if (!inst.mac_value) {
      return InvalidArgument(who + "mac " + QuoteValue(e.allocation.mac) +
                             " is not a unicast MAC address");
    }
    if (addresses_.MacInUse(*inst.mac_value)) {
      return AlreadyExists(who + "MAC " + e.allocation.mac + " is already in use");
    }
    inst.mac = AddressPool::FormatMac(*inst.mac_value);
  }
  if (inst.ip_value) addresses_.MarkIpUsed(*inst.ip_value);
  if (inst.mac_value) addresses_.MarkMacUsed(*inst.mac_value);
  AddToHost(inst.host, inst.service, inst.update_domain, inst.resources);
  instances_.emplace(e.instance, std::move(inst));
  return Status::Ok();
}

Status AllocatorState::UpsertHost(const HostInfo& h) {
  RETURN_IF_ERROR(ValidateName("host name", h.name));
  if (HostIndex::AnyNegative(h.capacity) || HostIndex::AnyNegative(h.other_usage)) {
    return InvalidArgument("host " + h.name + ": capacity and other usage must not be negative");
  }
  const int32_t id = hosts_.Find(h.name);
  if (id >= 0) {
    hosts_.Update(id, h.state, h.capacity, h.other_usage);
  } else {
    hosts_.Append(h);
  }
  return Status::Ok();
}

Status AllocatorState::SetHostState(std::string_view name, HostState state) {
  const int32_t id = hosts_.Find(name);
  if (id < 0) return NotFound("host " + QuoteValue(name) + " is not known");
  hosts_.SetState(id, state);
  return Status::Ok();
}

Status AllocatorState::Release(std::string_view name) {
  auto it = instances_.find(std::string(name));
  if (it == instances_.end()) {
    return NotFound("instance " + QuoteValue(name) + " holds no allocation");
  }
  Instance& inst = it->second;
  RemoveFromHost(inst.host, inst.service, inst.update_domain, inst.resources);
  if (inst.ip_value) addresses_.FreeIp(*inst.ip_value);
  if (inst.mac_value) addresses_.FreeMac(*inst.mac_value);
  auto svc = services_.find(inst.service);
  if (svc != services_.end() && svc->second.instances == 0) services_.erase(svc);
  instances_.erase(it);
  return Status::Ok();
}

std::optional<ExistingAllocation> AllocatorState::Find(std::string_view name) const {
  auto it = instances_.find(std::string(name));
  if (it == instances_.end()) return std::nullopt;
  const Instance& i = it->second;
  return ExistingAllocation{
      it->first, i.service, i.update_domain, {hosts_.name(i.host), i.resources, i.ip, i.mac}};
}

std::optional<Resources> AllocatorState::FreeOn(std::string_view host) const {
  const int32_t id = hosts_.Find(host);
  if (id < 0) return std::nullopt;
  return HostIndex::FromVec(hosts_.FreeVec(id));
}

void AllocatorState::AddToHost(int32_t host, const std::string& service, int64_t update_domain,
                               const Resources& r) {
  ServiceUse& use = services_[service];
  ++use.instances;
  HostServiceUse& hu = use.hosts[host];
  ++hu.count;
  ++hu.per_update_domain[update_domain];
  hosts_.AddAllocated(host, r);
}

void AllocatorState::RemoveFromHost(int32_t host, const std::string& service, int64_t update_domain,
                                    const Resources& r) {
  ServiceUse& use = services_[service];
  --use.instances;
  auto hu = use.hosts.find(host);
  if (hu != use.hosts.end()) {
    auto ud = hu->second.per_update_domain.find(update_domain);
    if (ud != hu->second.per_update_domain.end() && --ud->second == 0) {
      hu->second.per_update_domain.erase(ud);
    }
    if (--hu->second.count == 0) use.hosts.erase(hu);
  }
  hosts_.RemoveAllocated(host, r);
}

// ---------------------------------------------------------------------------------------------

Status AllocatorState::CheckInvariants() const {
  std::vector<Resources> allocated(hosts_.size());
  std::unordered_set<uint32_t> ips;
  std::unordered_set<uint64_t> macs;
  std::unordered_map<std::string, ServiceUse> services;
  for (const auto& [name, inst] : instances_) {
    if (inst.host < 0 || static_cast<size_t>(inst.host) >= hosts_.size()) {
      return Internal("instance " + name + " is on no host");
    }
    allocated[inst.host] += inst.resources;
    if (inst.ip_value) {
      if (!ips.insert(*inst.ip_value).second) return Internal("IP " + inst.ip + " held twice");
      if (!addresses_.IpInUse(*inst.ip_value)) {
        return Internal("IP " + inst.ip + " not marked used");
      }
      if (AddressPool::FormatIp(*inst.ip_value) != inst.ip) {
        return Internal("IP text of " + name + " differs");
      }
    }
    if (inst.mac_value) {
      if (!macs.insert(*inst.mac_value).second) return Internal("MAC " + inst.mac + " held twice");
      if (!addresses_.MacInUse(*inst.mac_value))
        return Internal("MAC " + inst.mac + " not marked used");
    }
    ServiceUse& use = services[inst.service];
    ++use.instances;
    ++use.hosts[inst.host].count;
    ++use.hosts[inst.host].per_update_domain[inst.update_domain];
  }
  for (size_t h = 0; h < hosts_.size(); ++h) {
    const Host& host = hosts_.host(static_cast<int32_t>(h));
    if (!(allocated[h] == host.allocated)) {
      return Internal("host " + host.name + ": recorded allocations " +
                      DescribeResources(host.allocated) + " differ from their sum " +
                      DescribeResources(allocated[h]));
    }
    const Vec free = hosts_.FreeVec(host);
    if (!HostIndex::Fits(free, {0, 0, 0, 0})) {
      return Internal("host " + host.name + " is overcommitted: " +
                      DescribeResources(HostIndex::FromVec(free)) + " free");
    }
    if (host.mask != 0) return Internal("host " + host.name + " is still masked");
  }
  if (services.size() != services_.size()) return Internal("service table differs");
  for (const auto& [name, use] : services) {
    auto it = services_.find(name);
    if (it == services_.end() || it->second.instances != use.instances ||
        it->second.hosts.size() != use.hosts.size()) {
      return Internal("service " + name + ": instance counts differ");
    }
    for (const auto& [host, hu] : use.hosts) {
      auto o = it->second.hosts.find(host);
      if (o == it->second.hosts.end() || o->second.count != hu.count ||
          o->second.per_update_domain != hu.per_update_domain) {
        return Internal("service " + name + ": counts on host " + hosts_.name(host) + " differ");
      }
    }
  }
  return hosts_.CheckIndex();
}

// ---------------------------------------------------------------------------------------------

Result<PlacementPlan> PlaceService(const std::vector<HostInfo>& hosts,
                                   const std::vector<ExistingAllocation>& existing,
                                   const ServiceModel& service, const AddressesInUse& in_use) {
  ASSIGN_OR_RETURN(AllocatorState state, AllocatorState::Build(hosts, existing, in_use));
  return state.PlaceService(service);
}

Result<PlacementPlan> PlaceInstances(const std::vector<HostInfo>& hosts,
                                     const std::vector<ExistingAllocation>& existing,
                                     const ServiceModel& service,
                                     const std::vector<InstanceRequest>& requests,
                                     const std::vector<std::string>& excluded_hosts,
                                     const AddressesInUse& in_use) {
  ASSIGN_OR_RETURN(AllocatorState state, AllocatorState::Build(hosts, existing, in_use));
  return state.PlaceInstances(service, requests, excluded_hosts);
}

}  // namespace regen
