// The controller's allocator (full-service and instance modes): host, resources, IP and MAC of each
// instance. Pure, no I/O; an AllocatorState belongs to one thread, the free functions to any.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "common/model.h"
#include "common/status.h"
#include "controller/address_pool.h"
#include "controller/host_index.h"

namespace regen {

// HostState, HostStateName, ParseHostState and HostInfo: controller/host_index.h.

// spread: one instance per host where possible, the same update domain on different hosts, the
// emptiest host first. pack: fill hosts in host order (first fit).
enum class PlacementPolicy { kSpread, kPack };
const char* PlacementPolicyName(PlacementPolicy policy);
Result<PlacementPolicy> ParsePlacementPolicy(std::string_view text);

// keep: a migrated instance keeps its IP (and MAC). new: it gets a new IP from the subnet (keeps
// its MAC); the old IP is freed.
enum class IpPolicy { kKeep, kNew };
const char* IpPolicyName(IpPolicy policy);
Result<IpPolicy> ParseIpPolicy(std::string_view text);

// An allocation that already exists (loaded from the store): it consumes capacity, its IP and MAC
// are in use.
struct ExistingAllocation {
  std::string instance;
  std::string service;
  int64_t update_domain = 0;
  Allocation allocation;
  bool operator==(const ExistingAllocation&) const = default;
};

// Addresses in use outside the instances' allocations (gateways, foreign machines). Never handed
// out, never freed.
struct AddressesInUse {
  std::set<std::string> ips;
  std::set<std::string> macs;
};

// What the allocator needs of a service (see config/service_spec.h for the full spec).
struct ServiceModel {
  std::string name;
  int64_t instances = 1;
  int64_t update_domains = 1;  // instance i is in update domain i mod update_domains
  Resources flavor;            // per instance: vcpus >= 1, memory_mib >= 1, disk and bandwidth >= 0
  std::string subnet;          // "10.10.0.0/24" (prefix 8..30); "" = instances get no IP
  IpPolicy ip_policy = IpPolicy::kKeep;
  PlacementPolicy placement = PlacementPolicy::kSpread;
};

// One instance for instance (incremental) mode. When the state holds an allocation for `name` the
// instance migrates: never to its current host, and its old allocation is freed once it is placed.
// Otherwise (a pending instance) it is placed fresh.
struct InstanceRequest {
  std::string name;
  int64_t update_domain = 0;
  std::string target_host;  // "" = any; else the operator's `failover --to HOST`
};

struct PlacedInstance {
  std::string name;
  std::string service;
  int64_t update_domain = 0;
  Allocation allocation;
  std::optional<Allocation> previous;  // set when the instance migrated
};

// Nothing fits (or no address is left). A migrating instance keeps its old allocation in the state
// (so its IP and MAC stay reserved) until a later call places it.
struct PendingInstance {
  std::string name;
  std::string service;
  int64_t update_domain = 0;
  std::string reason;  // "no up host has 2 vCPU, ... free (largest free: host-3 with ...)"
};

// The outcome of one call; `placed` and `pending` each keep the order of the request. Instances
// are placed targeted ones first, then (spread) update domain by update domain, each in request
// order; so when capacity runs short, the last update domains wait.
struct PlacementPlan {
  std::vector<PlacedInstance> placed;
  std::vector<PendingInstance> pending;
};

// "2 vCPU, 4096 MiB memory, 10 GiB disk, 100 Mbps bandwidth".
std::string DescribeResources(const Resources& r);

// Hosts, allocations and addresses in use, with hosts indexed by free capacity (HostIndex,
// controller/host_index.h; addresses: AddressPool, controller/address_pool.h; the placement
// decisions: controller/placement.cc). Place* commit
// their plan into the state; the controller persists the plan and, if that fails, rebuilds the
// state from the store (a full recompute is always correct).
//
// The index is a segment tree over the hosts in host order (the order given to Build, then
// UpsertHost appends); each node holds the component-wise maximum free vCPU/memory/disk/bandwidth
// and the maximum "emptiness" score (sum over the four dimensions of the free fraction) of the
// eligible hosts below it. A subtree whose maxima cannot hold the flavor is never entered.
// - spread: best-first search for the emptiest fitting host that holds no instance of the service
//   (ties: host order). Only when none is left, the hosts already holding the service are ranked
//   by (instances of the service, instances of the same update domain, emptiness, host order).
//   Instances are placed update domain by update domain, so the instances of one update domain
//   take consecutive turns round the hosts and share a host only when they outnumber the hosts.
// - pack: leftmost fitting host (first fit).
//
// Cost of one placement, H = hosts:
// - common case (a fitting host exists, fitting hosts are not rare): O(log H) to find the host,
//   O(log H) to update the index, O(1) expected for the MAC (hash of the name, probing), amortized
//   O(log I) for the IP (lowest free address of the subnet, with a per-subnet hint).
// - spread, once no host without the service fits (more instances than fitting hosts): + O(k),
//   k = hosts that already hold the service (k <= min(H, instances of the service)).
// - a search that keeps meeting hosts holding the service masks those hosts out of the index for
//   the rest of the call: once per call, O(k log H). Excluded hosts are masked at the start of a
//   call: O(E log H).
// - worst case of one search: O(H), when the free capacity is split so that many subtrees' maxima
//   fit the flavor but no single host does (mixed flavors on a nearly full cluster). A need that
//   found nothing is remembered for the rest of the call, so a run of identical unplaceable
//   instances pays that once.
// Build is O(H + I log I) for I existing allocations.
//
// Invariants (CheckInvariants): the allocations on a host never exceed its capacity minus its
// other usage (unless an adopted allocation already did); an IP or MAC is held at most once.
// Not thread-safe: owned by one thread.
class AllocatorState {
 public:
  static Result<AllocatorState> Build(const std::vector<HostInfo>& hosts,
                                      const std::vector<ExistingAllocation>& existing = {},
                                      const AddressesInUse& in_use = {});

  // Copyable, e.g. to plan on a copy and keep the original if the plan is not committed.
  AllocatorState(const AllocatorState&) = default;
  AllocatorState& operator=(const AllocatorState&) = default;
  AllocatorState(AllocatorState&&) = default;
  AllocatorState& operator=(AllocatorState&&) = default;

  // Full-service mode: places <service>-0 .. <service>-(instances-1). FAILED_PRECONDITION when the
  // state already holds an allocation of the service (release them, or use PlaceInstances).
  Result<PlacementPlan> PlaceService(const ServiceModel& service);

  // Instance mode: places only `requests`, honouring every allocation in the state; never on an
  // excluded host (the failed host) nor on a migrating instance's current host. A target host that
  // is unknown, not up, excluded, or cannot hold the flavor fails the whole call (nothing changes)
  // with an error naming the host and the missing resource.
  Result<PlacementPlan> PlaceInstances(const ServiceModel& service,
                                       const std::vector<InstanceRequest>& requests,
                                       const std::vector<std::string>& excluded_hosts = {});

  // Frees the instance's capacity, IP and MAC. NOT_FOUND if the state holds no such instance.
  Status Release(std::string_view instance);

  // Records an allocation decided elsewhere (used by Build). Refused (nothing changes) for an
  // unknown host, or an instance name, IP or MAC already held.
  Status Adopt(const ExistingAllocation& existing);

  // Adds a host (appended to host order) or replaces a known host's state, capacity and other
  // usage.
  Status UpsertHost(const HostInfo& host);
  Status SetHostState(std::string_view host, HostState state);

  // Read access (for the controller and tests).
  std::optional<ExistingAllocation> Find(std::string_view instance) const;
  // Capacity minus other usage minus allocations; nullopt for an unknown host.
  std::optional<Resources> FreeOn(std::string_view host) const;
  size_t host_count() const { return hosts_.size(); }
  size_t instance_count() const { return instances_.size(); }

  // Recomputes everything from the allocations and compares (O(H + I log I)); for tests.
  Status CheckInvariants() const;

 private:
  using Vec = HostIndex::Vec;
  using Host = HostIndex::Host;
  using Subnet = AddressPool::Subnet;

  struct Instance {
    std::string service;
    int64_t update_domain = 0;
    int32_t host = -1;
    Resources resources;
    std::string ip;
    std::string mac;
    std::optional<uint32_t> ip_value;
    std::optional<uint64_t> mac_value;
  };
  struct HostServiceUse {
    int32_t count = 0;
    std::map<int64_t, int32_t> per_update_domain;
  };
  struct ServiceUse {
    int64_t instances = 0;
    std::unordered_map<int32_t, HostServiceUse> hosts;
  };
  struct Call;  // context of one Place* call (placement.cc)

  AllocatorState() = default;

  // Placement (placement.cc).
  static Status ValidateService(const ServiceModel& service);
  Result<PlacementPlan> Place(const ServiceModel& service, const std::vector<InstanceRequest>& reqs,
                              const std::vector<std::string>& excluded, bool full_service);
  Result<std::vector<InstanceRequest>> FullServiceRequests(const ServiceModel& service) const;
  Status CheckExcluded(const std::vector<std::string>& excluded, Call& call) const;
  Status CheckRequests(const std::vector<InstanceRequest>& requests, Call& call) const;
  Status CheckTarget(const InstanceRequest& r, Call& call,
                     std::unordered_map<int32_t, Vec>& target_need) const;
  std::vector<std::variant<PlacedInstance, PendingInstance>> PlaceAll(
      Call& call, const std::vector<InstanceRequest>& requests);
  std::variant<PlacedInstance, PendingInstance> PlaceOne(Call& call, const InstanceRequest& req);
  PlacedInstance Commit(Call& call, const InstanceRequest& req, Instance* current, int32_t host,
                        std::optional<uint32_t> new_ip, uint64_t mac);
  int32_t FindHost(Call& call, const Vec& need, int64_t update_domain, int32_t current_host);
  int32_t SearchMostFree(const Vec& need, Call& call, int32_t current_host, bool skip_service);
  int32_t LeastUsedServiceHost(Call& call, const Vec& need, int64_t update_domain,
                               int32_t current_host) const;
  std::string PendingReason(Call& call, const Vec& need, int32_t current_host);
  void MaskServiceHosts(Call& call);

  void AddToHost(int32_t host, const std::string& service, int64_t update_domain,
                 const Resources& r);
  void RemoveFromHost(int32_t host, const std::string& service, int64_t update_domain,
                      const Resources& r);

  HostIndex hosts_;
  AddressPool addresses_;
  std::unordered_map<std::string, Instance> instances_;
  std::unordered_map<std::string, ServiceUse> services_;
};

// One-shot wrappers: build a state, place, return the plan.
Result<PlacementPlan> PlaceService(const std::vector<HostInfo>& hosts,
                                   const std::vector<ExistingAllocation>& existing,
                                   const ServiceModel& service, const AddressesInUse& in_use = {});
Result<PlacementPlan> PlaceInstances(const std::vector<HostInfo>& hosts,
                                     const std::vector<ExistingAllocation>& existing,
                                     const ServiceModel& service,
                                     const std::vector<InstanceRequest>& requests,
                                     const std::vector<std::string>& excluded_hosts = {},
                                     const AddressesInUse& in_use = {});

}  // namespace regen
