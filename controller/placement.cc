// AllocatorState's placement decisions: checking a request, choosing a host for each instance
// (spread or pack), and committing the choice into the state. See allocator.h for the contract.
#include <algorithm>
#include <functional>
#include <tuple>
#include <utility>

#include "common/names.h"
#include "controller/allocator.h"

namespace regen {
namespace {

constexpr int kMaxSkipsBeforeMask = 8;
constexpr int64_t kMaxInstances = 1000000;
constexpr uint8_t kMaskExcluded = HostIndex::kMaskExcluded;
constexpr uint8_t kMaskService = HostIndex::kMaskService;

using Vec = HostIndex::Vec;

bool Fits(const Vec& free, const Vec& need) { return HostIndex::Fits(free, need); }

bool Dominates(const Vec& a, const Vec& b) {
  return Fits(a, b);  // a >= b in every dimension
}

std::string JoinNames(const std::vector<std::string>& names, size_t max) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < max; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > max) out += " and " + std::to_string(names.size() - max) + " more";
  return out;
}

template <typename T>
bool Contains(const std::vector<T>& v, const T& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// One Place* call.

struct AllocatorState::Call {
  const ServiceModel* service = nullptr;
  ServiceUse* use = nullptr;  // services_[service->name]; element references survive rehash
  Vec need{};
  std::optional<Subnet> subnet;
  std::vector<int32_t> excluded_ids;
  std::vector<std::string> excluded_names;
  std::vector<int32_t> masked;  // hosts whose mask bits this call set
  bool service_masked = false;
  int skips = 0;
  // Needs (with the normalized current host) for which nothing fitted; valid until capacity is
  // freed on a visible host within the call.
  std::vector<std::pair<Vec, int32_t>> failed;
  std::vector<std::pair<Vec, int32_t>> tier0_failed;
  std::vector<uint32_t> ips_to_free;  // old IPs of ip_policy new, freed when the call ends
};

Status AllocatorState::ValidateService(const ServiceModel& s) {
  RETURN_IF_ERROR(ValidateName("service name", s.name));
  const std::string who = "service " + s.name + ": ";
  if (s.instances < 0 || s.instances > kMaxInstances) {
    return InvalidArgument(who + "instances must be between 0 and " +
                           std::to_string(kMaxInstances) + ", got " + std::to_string(s.instances));
  }
  if (s.update_domains < 1) {
    return InvalidArgument(who + "update_domains must be at least 1, got " +
                           std::to_string(s.update_domains));
  }
  const Vec f = HostIndex::ToVec(s.flavor);
  const char* fields[4] = {"flavor.vcpus", "flavor.memory_mib", "flavor.disk_gib",
                           "flavor.bandwidth_mbps"};
  const int64_t minimum[4] = {1, 1, 0, 0};
  for (int d = 0; d < 4; ++d) {
    if (f[d] < minimum[d]) {
      return InvalidArgument(who + fields[d] + " must be at least " + std::to_string(minimum[d]) +
                             ", got " + std::to_string(f[d]));
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Checking a request (before anything changes).

Result<std::vector<InstanceRequest>> AllocatorState::FullServiceRequests(
    const ServiceModel& service) const {
  auto svc = services_.find(service.name);
  if (svc != services_.end() && svc->second.instances > 0) {
    return FailedPrecondition("service " + service.name + " already holds " +
                              std::to_string(svc->second.instances) +
                              " allocations; release them before a full-service placement, " +
                              "or place single instances with instance mode");
  }
  std::vector<InstanceRequest> generated;
  generated.reserve(static_cast<size_t>(service.instances));
  for (int64_t i = 0; i < service.instances; ++i) {
    generated.push_back({service.name + "-" + std::to_string(i), i % service.update_domains, ""});
    RETURN_IF_ERROR(ValidateName("instance name", generated.back().name));
  }
  return generated;
}

Status AllocatorState::CheckExcluded(const std::vector<std::string>& excluded, Call& call) const {
  for (const std::string& name : excluded) {
    const int32_t id = hosts_.Find(name);
    if (id < 0) {
      return NotFound("excluded host " + QuoteValue(name) + " is not a known host");
    }
    if (!Contains(call.excluded_ids, id)) {
      call.excluded_ids.push_back(id);
      call.excluded_names.push_back(name);
    }
  }
  return Status::Ok();
}

Status AllocatorState::CheckRequests(const std::vector<InstanceRequest>& requests,
                                     Call& call) const {
  const ServiceModel& service = *call.service;
  std::unordered_set<std::string> seen;
  std::unordered_map<int32_t, Vec> target_need;
  for (const InstanceRequest& r : requests) {
    RETURN_IF_ERROR(ValidateName("instance name", r.name));
    if (!seen.insert(r.name).second) {
      return InvalidArgument("instance " + r.name + " is requested twice");
    }
    if (r.update_domain < 0 || r.update_domain >= service.update_domains) {
      return InvalidArgument("instance " + r.name + ": update domain " +
                             std::to_string(r.update_domain) + " is outside 0.." +
                             std::to_string(service.update_domains - 1) + " of service " +
                             service.name);
    }
    auto cur = instances_.find(r.name);
    if (cur != instances_.end() && cur->second.service != service.name) {
      return InvalidArgument("instance " + r.name + " belongs to service " + cur->second.service +
                             ", not " + service.name);
    }
    if (r.target_host.empty()) continue;
    RETURN_IF_ERROR(CheckTarget(r, call, target_need));
  }
  return Status::Ok();
}

// `target_need` sums the flavors of the instances targeted at each host so far.
Status AllocatorState::CheckTarget(const InstanceRequest& r, Call& call,
                                   std::unordered_map<int32_t, Vec>& target_need) const {
  const int32_t t = hosts_.Find(r.target_host);
  if (t < 0) {
    return NotFound("target host " + QuoteValue(r.target_host) + " of instance " + r.name +
                    " is not a known host");
  }
  const Host& h = hosts_.host(t);
  if (h.state != HostState::kUp) {
    return FailedPrecondition("target host " + h.name + " of instance " + r.name + " is " +
                              HostStateName(h.state) + "; only hosts in state up take instances");
  }
  if (Contains(call.excluded_ids, t)) {
    return FailedPrecondition("target host " + h.name + " of instance " + r.name +
                              " is excluded (the failed host); choose another host");
  }
  auto cur = instances_.find(r.name);
  if (cur != instances_.end() && cur->second.host == t) {
    return FailedPrecondition("instance " + r.name + " already runs on target host " + h.name +
                              "; choose another host");
  }
  Vec& sum = target_need[t];
  for (int d = 0; d < HostIndex::kDims; ++d) sum[d] += call.need[d];
  const Vec free = hosts_.FreeVec(h);
  if (!Fits(free, sum)) {
    return FailedPrecondition(
        "target host " + h.name + " cannot take instance " + r.name + ": it has " +
        DescribeResources(HostIndex::FromVec(free)) + " free, " +
        (sum == call.need ? "the instance needs " : "the targeted instances need ") +
        DescribeResources(HostIndex::FromVec(sum)) + "; " + HostIndex::DescribeShortage(free, sum));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Placement.

Result<PlacementPlan> AllocatorState::PlaceService(const ServiceModel& service) {
  return Place(service, {}, {}, /*full_service=*/true);
}

Result<PlacementPlan> AllocatorState::PlaceInstances(const ServiceModel& service,
                                                     const std::vector<InstanceRequest>& requests,
                                                     const std::vector<std::string>& excluded) {
  return Place(service, requests, excluded, /*full_service=*/false);
}

Result<PlacementPlan> AllocatorState::Place(const ServiceModel& service,
                                            const std::vector<InstanceRequest>& given,
                                            const std::vector<std::string>& excluded,
                                            bool full_service) {
  RETURN_IF_ERROR(ValidateService(service));
  Call call;
  call.service = &service;
  call.need = HostIndex::ToVec(service.flavor);
  if (!service.subnet.empty()) {
    ASSIGN_OR_RETURN(call.subnet, AddressPool::ParseSubnet(service.name, service.subnet));
  }

  std::vector<InstanceRequest> generated;
  const std::vector<InstanceRequest>* requests = &given;
  if (full_service) {
    ASSIGN_OR_RETURN(generated, FullServiceRequests(service));
    requests = &generated;
  }

  // Check every request before changing anything.
  RETURN_IF_ERROR(CheckExcluded(excluded, call));
  RETURN_IF_ERROR(CheckRequests(*requests, call));

  // Masks are for this call only: clear them however the call ends.
  call.use = &services_[service.name];
  struct Unmask {
    AllocatorState* self;
    Call* call;
    ~Unmask() {
      for (int32_t h : call->masked) self->hosts_.SetMask(h, kMaskExcluded | kMaskService, false);
    }
  } unmask{this, &call};
  for (int32_t id : call.excluded_ids) {
    hosts_.SetMask(id, kMaskExcluded, true);
    call.masked.push_back(id);
  }

  std::vector<std::variant<PlacedInstance, PendingInstance>> outcomes = PlaceAll(call, *requests);
  for (uint32_t ip : call.ips_to_free) addresses_.FreeIp(ip);
  if (call.use->instances == 0) {
    call.use = nullptr;
    services_.erase(service.name);
  }

  PlacementPlan plan;
  for (auto& o : outcomes) {
    if (auto* p = std::get_if<PlacedInstance>(&o)) {
      plan.placed.push_back(std::move(*p));
    } else {
      plan.pending.push_back(std::get<PendingInstance>(std::move(o)));
    }
  }
  return plan;
}

// Targeted instances first, so that no other instance of the call takes their room. Spread then
// goes update domain by update domain, so that the instances of one update domain take
// consecutive turns round the hosts (with N hosts, no two of its first N share a host).
std::vector<std::variant<PlacedInstance, PendingInstance>> AllocatorState::PlaceAll(
    Call& call, const std::vector<InstanceRequest>& requests) {
  const bool by_update_domain = call.service->placement == PlacementPolicy::kSpread;
  std::vector<size_t> order(requests.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const InstanceRequest& x = requests[a];
    const InstanceRequest& y = requests[b];
    return std::make_pair(x.target_host.empty(), by_update_domain ? x.update_domain : 0) <
           std::make_pair(y.target_host.empty(), by_update_domain ? y.update_domain : 0);
  });
  std::vector<std::variant<PlacedInstance, PendingInstance>> outcomes(requests.size());
  for (size_t i : order) outcomes[i] = PlaceOne(call, requests[i]);
  return outcomes;
}

std::variant<PlacedInstance, PendingInstance> AllocatorState::PlaceOne(Call& call,
                                                                       const InstanceRequest& req) {
  const ServiceModel& service = *call.service;
  auto existing = instances_.find(req.name);
  Instance* current = existing == instances_.end() ? nullptr : &existing->second;
  const int32_t current_host = current ? current->host : -1;
  auto pending = [&](std::string reason) {
    return PendingInstance{req.name, service.name, req.update_domain, std::move(reason)};
  };

  // An address first: if none is left, the instance waits without taking a host.
  const bool new_ip = call.subnet.has_value() &&
                      (!current || !current->ip_value || service.ip_policy == IpPolicy::kNew);
  std::optional<uint32_t> ip;
  if (new_ip) {
    Result<uint32_t> next = addresses_.NextFreeIp(*call.subnet);
    if (!next.ok()) return pending(next.status().message());
    ip = *next;
  }
  uint64_t mac =
      current && current->mac_value ? *current->mac_value : addresses_.NextFreeMac(req.name);
  if (mac == 0) return pending("no free MAC address is left in 52:54:00:00:00:00/24");

  int32_t host = -1;
  if (!req.target_host.empty()) {
    host = hosts_.Find(req.target_host);  // checked by Place
    if (!Fits(hosts_.FreeVec(host), call.need)) host = -1;
  } else {
    host = FindHost(call, call.need, req.update_domain, current_host);
  }
  if (host < 0) return pending(PendingReason(call, call.need, current_host));
  return Commit(call, req, current, host, ip, mac);
}

// Records the instance on `host` with its addresses (a new IP when `new_ip` is set) and, for a
// migrating instance, frees its old allocation.
PlacedInstance AllocatorState::Commit(Call& call, const InstanceRequest& req, Instance* current,
                                      int32_t host, std::optional<uint32_t> new_ip, uint64_t mac) {
  const ServiceModel& service = *call.service;
  const int32_t current_host = current ? current->host : -1;
  Instance next;
  next.service = service.name;
  next.update_domain = req.update_domain;
  next.host = host;
  next.resources = service.flavor;
  next.mac_value = mac;
  next.mac = AddressPool::FormatMac(mac);
  if (new_ip) {
    addresses_.TakeIp(*new_ip, *call.subnet);
    next.ip_value = *new_ip;
    next.ip = AddressPool::FormatIp(*new_ip);
  } else if (current) {
    next.ip_value = current->ip_value;
    next.ip = current->ip;
  }
  if (!current || !current->mac_value) addresses_.MarkMacUsed(mac);

  PlacedInstance placed{req.name, service.name, req.update_domain, {}, std::nullopt};
  AddToHost(host, service.name, req.update_domain, service.flavor);
  if (call.service_masked && !(hosts_.host(host).mask & kMaskService)) {
    hosts_.SetMask(host, kMaskService, true);
    call.masked.push_back(host);
  }
  if (current) {
    placed.previous =
        Allocation{hosts_.name(current_host), current->resources, current->ip, current->mac};
    if (new_ip && current->ip_value) call.ips_to_free.push_back(*current->ip_value);
    RemoveFromHost(current_host, current->service, current->update_domain, current->resources);
    const Host& old = hosts_.host(current_host);
    if ((old.mask & kMaskService) && !call.use->hosts.count(current_host)) {
      hosts_.SetMask(current_host, kMaskService, false);  // back among the hosts without it
    }
    if (old.state == HostState::kUp && !(old.mask & kMaskExcluded)) {
      call.failed.clear();  // capacity appeared where the index can see it
      call.tier0_failed.clear();
    }
    *current = std::move(next);
  } else {
    current = &instances_.emplace(req.name, std::move(next)).first->second;
  }
  placed.allocation = {hosts_.name(host), current->resources, current->ip, current->mac};
  return placed;
}

// ---------------------------------------------------------------------------------------------
// Choosing a host.

void AllocatorState::MaskServiceHosts(Call& call) {
  call.service_masked = true;
  for (const auto& [host, use] : call.use->hosts) {
    hosts_.SetMask(host, kMaskService, true);
    call.masked.push_back(host);
  }
}

// The emptiest fitting host (ties: host order) other than `current_host` and, when
// `skip_service`, other than the hosts holding the call's service. A search that keeps meeting
// hosts of the service masks them out of the index for the rest of the call.
int32_t AllocatorState::SearchMostFree(const Vec& need, Call& call, int32_t current_host,
                                       bool skip_service) {
  std::function<bool(int32_t)> reject;
  if (skip_service && !call.service_masked) {
    reject = [&call](int32_t host) { return call.use->hosts.count(host) != 0; };
  }
  int skips = 0;
  int32_t found = hosts_.SearchMostFree(need, current_host, reject, &skips);
  call.skips += skips;
  if (skip_service && !call.service_masked && skips > kMaxSkipsBeforeMask) MaskServiceHosts(call);
  return found;
}

// Every fitting host already holds the service: fewest instances of the service, then of this
// update domain, then the emptiest, then host order.
int32_t AllocatorState::LeastUsedServiceHost(Call& call, const Vec& need, int64_t update_domain,
                                             int32_t current_host) const {
  std::tuple<int32_t, int32_t, int64_t, int32_t> best{0, 0, 0, -1};
  for (const auto& [host, use] : call.use->hosts) {
    if (host == current_host || !hosts_.Eligible(host)) continue;
    if (!Fits(hosts_.FreeVec(host), need)) continue;
    auto ud = use.per_update_domain.find(update_domain);
    std::tuple<int32_t, int32_t, int64_t, int32_t> k{
        use.count, ud == use.per_update_domain.end() ? 0 : ud->second, -hosts_.Score(host), host};
    if (std::get<3>(best) < 0 || k < best) best = k;
  }
  return std::get<3>(best);
}

int32_t AllocatorState::FindHost(Call& call, const Vec& need, int64_t update_domain,
                                 int32_t current_host) {
  // A current host that the index cannot return anyway does not change what fits.
  int32_t key = current_host;
  if (key >= 0 && !hosts_.Eligible(key)) key = -1;
  auto known_failure = [&](const std::vector<std::pair<Vec, int32_t>>& failed) {
    for (const auto& [n, k] : failed) {
      if (k == key && Dominates(need, n)) return true;
    }
    return false;
  };
  if (known_failure(call.failed)) return -1;

  int32_t found = -1;
  if (call.service->placement == PlacementPolicy::kPack) {
    found = hosts_.SearchFirstFit(need, current_host);
  } else {
    if (!known_failure(call.tier0_failed)) {
      found = SearchMostFree(need, call, current_host, /*skip_service=*/true);
      if (found < 0) call.tier0_failed.emplace_back(need, key);
    }
    if (found < 0) found = LeastUsedServiceHost(call, need, update_domain, current_host);
  }
  if (found < 0) call.failed.emplace_back(need, key);
  return found;
}

std::string AllocatorState::PendingReason(Call& call, const Vec& need, int32_t current_host) {
  // The emptiest eligible host, whether the index shows it or the service mask hides it.
  int32_t largest = SearchMostFree({0, 0, 0, 0}, call, current_host, /*skip_service=*/false);
  for (const auto& [host, use] : call.use->hosts) {
    if (host == current_host || !hosts_.Eligible(host)) continue;
    if (!Fits(hosts_.FreeVec(host), {0, 0, 0, 0})) continue;
    if (largest < 0 || hosts_.Score(host) > hosts_.Score(largest) ||
        (hosts_.Score(host) == hosts_.Score(largest) && host < largest)) {
      largest = host;
    }
  }
  std::vector<std::string> notes;
  if (!call.excluded_names.empty())
    notes.push_back("excluded: " + JoinNames(call.excluded_names, 5));
  if (current_host >= 0) notes.push_back("not on its current host " + hosts_.name(current_host));
  std::string reason;
  if (largest < 0) {
    reason = "no up host can take it: none of the " + std::to_string(hosts_.size()) +
             " known hosts is up with capacity left";
  } else {
    const Vec free = hosts_.FreeVec(largest);
    reason = "no up host has " + DescribeResources(HostIndex::FromVec(need)) + " free";
    notes.push_back("largest free: " + hosts_.name(largest) + " with " +
                    DescribeResources(HostIndex::FromVec(free)) + ", " +
                    HostIndex::DescribeShortage(free, need));
  }
  if (!notes.empty()) {
    reason += " (";
    for (size_t i = 0; i < notes.size(); ++i) reason += (i ? "; " : "") + notes[i];
    reason += ")";
  }
  return reason;
}

}  // namespace regen
