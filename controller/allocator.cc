#include "controller/allocator.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <tuple>
#include <utility>

#include "common/names.h"

namespace regen {
namespace {

constexpr int64_t kNeg = std::numeric_limits<int64_t>::min() / 4;  // an ineligible leaf
constexpr int64_t kScoreScale = int64_t{1} << 20;  // one dimension fully free scores this much
constexpr int kMaxSkipsBeforeMask = 8;
constexpr int64_t kMaxInstances = 1000000;
constexpr uint8_t kMaskExcluded = 1;
constexpr uint8_t kMaskService = 2;
constexpr uint64_t kMacPrefix = 0x525400000000ULL;
constexpr uint64_t kMacSpace = uint64_t{1} << 24;

std::array<int64_t, 4> ToVec(const Resources& r) {
  return {r.vcpus, r.memory_mib, r.disk_gib, r.bandwidth_mbps};
}

Resources& operator+=(Resources& a, const Resources& b) {
  a.vcpus += b.vcpus;
  a.memory_mib += b.memory_mib;
  a.disk_gib += b.disk_gib;
  a.bandwidth_mbps += b.bandwidth_mbps;
  return a;
}

Resources& operator-=(Resources& a, const Resources& b) {
  a.vcpus -= b.vcpus;
  a.memory_mib -= b.memory_mib;
  a.disk_gib -= b.disk_gib;
  a.bandwidth_mbps -= b.bandwidth_mbps;
  return a;
}

Resources FromVec(const std::array<int64_t, 4>& v) { return {v[0], v[1], v[2], v[3]}; }

bool Fits(const std::array<int64_t, 4>& free, const std::array<int64_t, 4>& need) {
  return free[0] >= need[0] && free[1] >= need[1] && free[2] >= need[2] && free[3] >= need[3];
}

bool Dominates(const std::array<int64_t, 4>& a, const std::array<int64_t, 4>& b) {
  return Fits(a, b);  // a >= b in every dimension
}

bool AnyNegative(const Resources& r) {
  return r.vcpus < 0 || r.memory_mib < 0 || r.disk_gib < 0 || r.bandwidth_mbps < 0;
}

const char* const kDimNames[4] = {"vCPU", "memory", "disk", "bandwidth"};
const char* const kDimUnits[4] = {"", " MiB", " GiB", " Mbps"};

// "short of vCPU by 1, memory by 2048 MiB"
std::string DescribeShortage(const std::array<int64_t, 4>& free,
                             const std::array<int64_t, 4>& need) {
  std::string out;
  for (int d = 0; d < 4; ++d) {
    if (free[d] >= need[d]) continue;
    out += out.empty() ? "short of " : ", ";
    out += std::string(kDimNames[d]) + " by " + std::to_string(need[d] - free[d]) + kDimUnits[d];
  }
  return out;
}

std::string FormatIp(uint32_t ip) {
  return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 0xff) + "." +
         std::to_string((ip >> 8) & 0xff) + "." + std::to_string(ip & 0xff);
}

std::optional<uint32_t> ParseIp(std::string_view text) {
  in_addr addr{};
  if (inet_pton(AF_INET, std::string(text).c_str(), &addr) != 1) return std::nullopt;
  return ntohl(addr.s_addr);
}

std::string FormatMac(uint64_t mac) {
  char buf[18];
  std::snprintf(
      buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", static_cast<unsigned>((mac >> 40) & 0xff),
      static_cast<unsigned>((mac >> 32) & 0xff), static_cast<unsigned>((mac >> 24) & 0xff),
      static_cast<unsigned>((mac >> 16) & 0xff), static_cast<unsigned>((mac >> 8) & 0xff),
      static_cast<unsigned>(mac & 0xff));
  return buf;
}

std::optional<uint64_t> ParseMac(std::string_view text) {
  if (!IsValidMac(text)) return std::nullopt;
  uint64_t mac = 0;
  for (size_t i = 0; i < text.size(); i += 3) {
    mac = (mac << 8) | std::stoul(std::string(text.substr(i, 2)), nullptr, 16);
  }
  return mac;
}

uint32_t PrefixMask(int prefix) { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
uint64_t SubnetKey(uint32_t network, int prefix) {
  return (uint64_t{network} << 8) | static_cast<uint64_t>(prefix);
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
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

const char* HostStateName(HostState state) {
  switch (state) {
    case HostState::kUp:
      return "up";
    case HostState::kSuspect:
      return "suspect";
    case HostState::kDown:
      return "down";
    case HostState::kDraining:
      return "draining";
  }
  return "unknown";
}

Result<HostState> ParseHostState(std::string_view text) {
  for (HostState s :
       {HostState::kUp, HostState::kSuspect, HostState::kDown, HostState::kDraining}) {
    if (text == HostStateName(s)) return s;
  }
  return InvalidArgument("host state: unknown value " + QuoteValue(text) +
                         " (use up, suspect, down or draining)");
}

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
// One Place* call.

struct AllocatorState::Call {
  const ServiceModel* service = nullptr;
  ServiceUse* use = nullptr;  // services_[service->name]; element references survive rehash
  Vec need{};
  std::optional<Subnet> subnet;
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

Result<AllocatorState::Subnet> AllocatorState::ParseSubnet(std::string_view service,
                                                           std::string_view text) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument("service " + std::string(service) + ": network.subnet " +
                           QuoteValue(text) + " " + why);
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return bad("is not an IPv4 subnet (write it as address/prefix, e.g. 10.10.0.0/24)");
  }
  std::optional<uint32_t> address = ParseIp(text.substr(0, slash));
  std::string_view prefix_text = text.substr(slash + 1);
  if (!address) return bad("does not start with a dotted IPv4 address (e.g. 10.10.0.0/24)");
  if (prefix_text.empty() || prefix_text.size() > 2 ||
      !std::all_of(prefix_text.begin(), prefix_text.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    return bad("has no prefix length after '/' (e.g. /24)");
  }
  int prefix = std::stoi(std::string(prefix_text));
  if (prefix < 8 || prefix > 30) {
    return bad("has prefix length " + std::to_string(prefix) +
               "; use 8 to 30 (network, gateway, broadcast and at least one instance address)");
  }
  uint32_t mask = PrefixMask(prefix);
  if ((*address & ~mask) != 0) {
    return bad("has host bits set; did you mean " + FormatIp(*address & mask) + "/" +
               std::to_string(prefix) + "?");
  }
  Subnet s;
  s.first = *address + 2;
  s.last = (*address | ~mask) - 1;
  s.key = SubnetKey(*address, prefix);
  return s;
}

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
  const Vec f = ToVec(s.flavor);
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
// Building and host changes.

Result<AllocatorState> AllocatorState::Build(const std::vector<HostInfo>& hosts,
                                             const std::vector<ExistingAllocation>& existing,
                                             const AddressesInUse& in_use) {
  AllocatorState state;
  state.hosts_.reserve(hosts.size());
  for (size_t i = 0; i < hosts.size(); ++i) {
    const HostInfo& h = hosts[i];
    const std::string field = "hosts[" + std::to_string(i) + "]";
    RETURN_IF_ERROR(ValidateName(field + ".name", h.name));
    if (AnyNegative(h.capacity) || AnyNegative(h.other_usage)) {
      return InvalidArgument(field + " (" + h.name + "): capacity and other usage must not be " +
                             "negative, got capacity " + DescribeResources(h.capacity) +
                             ", other usage " + DescribeResources(h.other_usage));
    }
    if (!state.host_index_.emplace(h.name, static_cast<int32_t>(i)).second) {
      return InvalidArgument(field + ": host " + h.name + " is listed twice");
    }
    state.hosts_.push_back({h.name, h.state, h.capacity, h.other_usage, {}, 0});
  }
  for (const std::string& ip : in_use.ips) {
    std::optional<uint32_t> v = ParseIp(ip);
    if (!v)
      return InvalidArgument("addresses in use: " + QuoteValue(ip) + " is not an IPv4 address");
    state.used_ips_.insert(*v);
  }
  for (const std::string& mac : in_use.macs) {
    std::optional<uint64_t> v = ParseMac(mac);
    if (!v)
      return InvalidArgument("addresses in use: " + QuoteValue(mac) + " is not a MAC address");
    state.used_macs_.insert(*v);
  }
  state.Grow(state.hosts_.size());
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
  auto host = host_index_.find(e.allocation.host);
  if (host == host_index_.end()) {
    return NotFound(who + "allocated on unknown host " + QuoteValue(e.allocation.host));
  }
  if (AnyNegative(e.allocation.resources)) {
    return InvalidArgument(who + "negative resources " + DescribeResources(e.allocation.resources));
  }
  Instance inst;
  inst.service = e.service;
  inst.update_domain = e.update_domain;
  inst.host = host->second;
  inst.resources = e.allocation.resources;
  if (!e.allocation.ip.empty()) {
    inst.ip_value = ParseIp(e.allocation.ip);
    if (!inst.ip_value) {
      return InvalidArgument(who + "ip " + QuoteValue(e.allocation.ip) + " is not IPv4");
    }
    if (used_ips_.count(*inst.ip_value)) {
      return AlreadyExists(who + "IP " + e.allocation.ip + " is already in use");
    }
    inst.ip = FormatIp(*inst.ip_value);
  }
  if (!e.allocation.mac.empty()) {
    inst.mac_value = ParseMac(e.allocation.mac);
    if (!inst.mac_value) {
      return InvalidArgument(who + "mac " + QuoteValue(e.allocation.mac) +
                             " is not a unicast MAC address");
    }
    if (used_macs_.count(*inst.mac_value)) {
      return AlreadyExists(who + "MAC " + e.allocation.mac + " is already in use");
    }
    inst.mac = FormatMac(*inst.mac_value);
  }
  if (inst.ip_value) used_ips_.insert(*inst.ip_value);
  if (inst.mac_value) used_macs_.insert(*inst.mac_value);
  AddToHost(inst.host, inst.service, inst.update_domain, inst.resources);
  instances_.emplace(e.instance, std::move(inst));
  return Status::Ok();
}

Status AllocatorState::UpsertHost(const HostInfo& h) {
  RETURN_IF_ERROR(ValidateName("host name", h.name));
  if (AnyNegative(h.capacity) || AnyNegative(h.other_usage)) {
    return InvalidArgument("host " + h.name + ": capacity and other usage must not be negative");
  }
  auto it = host_index_.find(h.name);
  if (it != host_index_.end()) {
    Host& host = hosts_[it->second];
    host.state = h.state;
    host.capacity = h.capacity;
    host.other_usage = h.other_usage;
    UpdateLeaf(it->second);
    return Status::Ok();
  }
  int32_t id = static_cast<int32_t>(hosts_.size());
  host_index_.emplace(h.name, id);
  hosts_.push_back({h.name, h.state, h.capacity, h.other_usage, {}, 0});
  if (hosts_.size() > leaves_) {
    Grow(hosts_.size() * 2);
  } else {
    UpdateLeaf(id);
  }
  return Status::Ok();
}

Status AllocatorState::SetHostState(std::string_view name, HostState state) {
  auto it = host_index_.find(std::string(name));
  if (it == host_index_.end()) return NotFound("host " + QuoteValue(name) + " is not known");
  hosts_[it->second].state = state;
  UpdateLeaf(it->second);
  return Status::Ok();
}

Status AllocatorState::Release(std::string_view name) {
  auto it = instances_.find(std::string(name));
  if (it == instances_.end()) {
    return NotFound("instance " + QuoteValue(name) + " holds no allocation");
  }
  Instance& inst = it->second;
  RemoveFromHost(inst.host, inst.service, inst.update_domain, inst.resources);
  if (inst.ip_value) FreeIp(*inst.ip_value);
  if (inst.mac_value) used_macs_.erase(*inst.mac_value);
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
      it->first, i.service, i.update_domain, {hosts_[i.host].name, i.resources, i.ip, i.mac}};
}

std::optional<Resources> AllocatorState::FreeOn(std::string_view host) const {
  auto it = host_index_.find(std::string(host));
  if (it == host_index_.end()) return std::nullopt;
  return FromVec(FreeVec(hosts_[it->second]));
}

void AllocatorState::AddToHost(int32_t host, const std::string& service, int64_t update_domain,
                               const Resources& r) {
  hosts_[host].allocated += r;
  ServiceUse& use = services_[service];
  ++use.instances;
  HostServiceUse& hu = use.hosts[host];
  ++hu.count;
  ++hu.per_update_domain[update_domain];
  UpdateLeaf(host);
}

void AllocatorState::RemoveFromHost(int32_t host, const std::string& service, int64_t update_domain,
                                    const Resources& r) {
  hosts_[host].allocated -= r;
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
  UpdateLeaf(host);
}

// ---------------------------------------------------------------------------------------------
// Addresses.

Result<uint32_t> AllocatorState::NextFreeIp(const Subnet& subnet) {
  uint32_t& hint = ip_hints_.try_emplace(subnet.key, subnet.first).first->second;
  uint64_t candidate = std::max(hint, subnet.first);
  for (auto it = used_ips_.lower_bound(static_cast<uint32_t>(candidate));
       candidate <= subnet.last && it != used_ips_.end() && *it == candidate; ++it) {
    ++candidate;
  }
  if (candidate > subnet.last) {
    hint = subnet.last;  // everything below is in use; FreeIp lowers it again
    return Unavailable("subnet " + FormatIp(subnet.first - 2) + "/" +
                       std::to_string(subnet.key & 0xff) + " has no free address (" +
                       std::to_string(uint64_t{subnet.last} - subnet.first + 1) +
                       " instance addresses, all in use)");
  }
  hint = static_cast<uint32_t>(candidate);
  return static_cast<uint32_t>(candidate);
}

void AllocatorState::FreeIp(uint32_t ip) {
  used_ips_.erase(ip);
  for (int prefix = 8; prefix <= 30; ++prefix) {
    auto it = ip_hints_.find(SubnetKey(ip & PrefixMask(prefix), prefix));
    if (it != ip_hints_.end() && it->second > ip) it->second = ip;
  }
}

uint64_t AllocatorState::NextFreeMac(std::string_view instance) const {
  uint64_t low = Fnv1a(instance) % kMacSpace;
  for (uint64_t tries = 0; tries < kMacSpace; ++tries) {
    uint64_t mac = kMacPrefix | ((low + tries) % kMacSpace);
    if (!used_macs_.count(mac)) return mac;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The index.

AllocatorState::Vec AllocatorState::FreeVec(const Host& h) const {
  Resources free = h.capacity;
  free -= h.other_usage;
  free -= h.allocated;
  return ToVec(free);
}

int64_t AllocatorState::Score(const Host& h) const {
  const Vec free = FreeVec(h);
  const Vec cap = ToVec(h.capacity);
  int64_t score = 0;
  for (int d = 0; d < kDims; ++d) {
    if (cap[d] > 0) score += free[d] * kScoreScale / cap[d];
  }
  return score;
}

AllocatorState::Node AllocatorState::LeafValue(int32_t host) const {
  if (host < 0 || static_cast<size_t>(host) >= hosts_.size())
    return {{kNeg, kNeg, kNeg, kNeg}, kNeg};
  const Host& h = hosts_[host];
  if (h.state != HostState::kUp || h.mask != 0) return {{kNeg, kNeg, kNeg, kNeg}, kNeg};
  return {FreeVec(h), Score(h)};
}

namespace {
void Combine(std::array<int64_t, 4>& out_free, int64_t& out_score, const std::array<int64_t, 4>& a,
             int64_t a_score, const std::array<int64_t, 4>& b, int64_t b_score) {
  for (int d = 0; d < 4; ++d) out_free[d] = std::max(a[d], b[d]);
  out_score = std::max(a_score, b_score);
}
}  // namespace

void AllocatorState::Grow(size_t hosts) {
  leaves_ = 1;
  while (leaves_ < hosts) leaves_ *= 2;
  tree_.assign(2 * leaves_, Node{{kNeg, kNeg, kNeg, kNeg}, kNeg});
  for (size_t i = 0; i < hosts_.size(); ++i)
    tree_[leaves_ + i] = LeafValue(static_cast<int32_t>(i));
  for (size_t v = leaves_ - 1; v >= 1; --v) {
    Combine(tree_[v].max_free, tree_[v].max_score, tree_[2 * v].max_free, tree_[2 * v].max_score,
            tree_[2 * v + 1].max_free, tree_[2 * v + 1].max_score);
  }
}

void AllocatorState::UpdateLeaf(int32_t host) {
  if (tree_.empty()) return;  // during Build, before Grow
  size_t v = leaves_ + static_cast<size_t>(host);
  tree_[v] = LeafValue(host);
  for (v /= 2; v >= 1; v /= 2) {
    Combine(tree_[v].max_free, tree_[v].max_score, tree_[2 * v].max_free, tree_[2 * v].max_score,
            tree_[2 * v + 1].max_free, tree_[2 * v + 1].max_score);
  }
}

void AllocatorState::SetMask(int32_t host, uint8_t bits, bool on) {
  uint8_t before = hosts_[host].mask;
  hosts_[host].mask = on ? (before | bits) : (before & ~bits);
  if (hosts_[host].mask != before) UpdateLeaf(host);
}

void AllocatorState::MaskServiceHosts(Call& call) {
  call.service_masked = true;
  for (const auto& [host, use] : call.use->hosts) {
    SetMask(host, kMaskService, true);
    call.masked.push_back(host);
  }
}

// Leftmost fitting host other than `current_host`.
int32_t AllocatorState::SearchFirstFit(const Vec& need, Call& call, int32_t current_host) {
  (void)call;
  size_t stack[128];
  size_t top = 0;
  stack[top++] = 1;
  while (top > 0) {
    size_t v = stack[--top];
    if (!Fits(tree_[v].max_free, need)) continue;
    if (v >= leaves_) {
      int32_t host = static_cast<int32_t>(v - leaves_);
      if (host == current_host) continue;
      return host;
    }
    stack[top++] = 2 * v + 1;
    stack[top++] = 2 * v;
  }
  return -1;
}

// The emptiest fitting host (ties: host order) other than `current_host` and, when
// `skip_service`, other than the hosts holding the call's service. Best-first: a node's max_score
// bounds every leaf below it, so the first acceptable leaf taken from the heap is the answer.
int32_t AllocatorState::SearchMostFree(const Vec& need, Call& call, int32_t current_host,
                                       bool skip_service) {
  // Heap entries: {score, -start, node}; std::push_heap keeps the largest on top.
  heap_.clear();
  heap_.push_back({tree_[1].max_score, 0, 1});
  int skips = 0;
  int32_t found = -1;
  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end());
    const auto [score, neg_start, v64] = heap_.back();
    heap_.pop_back();
    const size_t v = static_cast<size_t>(v64);
    if (score == kNeg || !Fits(tree_[v].max_free, need)) continue;
    if (v >= leaves_) {
      int32_t host = static_cast<int32_t>(v - leaves_);
      if (host == current_host ||
          (skip_service && !call.service_masked && call.use->hosts.count(host))) {
        ++skips;
        continue;
      }
      found = host;
      break;
    }
    // Children of v cover [start, start + width) split in two halves.
    int64_t start = -neg_start;
    size_t level_width = leaves_;
    for (size_t u = v; u > 1; u /= 2) level_width /= 2;
    int64_t half = static_cast<int64_t>(level_width / 2);
    heap_.push_back({tree_[2 * v].max_score, -start, static_cast<int64_t>(2 * v)});
    std::push_heap(heap_.begin(), heap_.end());
    heap_.push_back({tree_[2 * v + 1].max_score, -(start + half), static_cast<int64_t>(2 * v + 1)});
    std::push_heap(heap_.begin(), heap_.end());
  }
  call.skips += skips;
  if (skip_service && !call.service_masked && skips > kMaxSkipsBeforeMask) MaskServiceHosts(call);
  return found;
}

int32_t AllocatorState::FindHost(Call& call, const Vec& need, int64_t update_domain,
                                 int32_t current_host) {
  // A current host that the index cannot return anyway does not change what fits.
  int32_t key = current_host;
  if (key >= 0 && (hosts_[key].state != HostState::kUp || (hosts_[key].mask & kMaskExcluded))) {
    key = -1;
  }
  auto known_failure = [&](const std::vector<std::pair<Vec, int32_t>>& failed) {
    for (const auto& [n, k] : failed) {
      if (k == key && Dominates(need, n)) return true;
    }
    return false;
  };
  if (known_failure(call.failed)) return -1;

  int32_t found = -1;
  if (call.service->placement == PlacementPolicy::kPack) {
    found = SearchFirstFit(need, call, current_host);
  } else {
    if (!known_failure(call.tier0_failed)) {
      found = SearchMostFree(need, call, current_host, /*skip_service=*/true);
      if (found < 0) call.tier0_failed.emplace_back(need, key);
    }
    if (found < 0) {
      // Every fitting host already holds the service: fewest instances of the service, then of
      // this update domain, then the emptiest, then host order.
      std::tuple<int32_t, int32_t, int64_t, int32_t> best{0, 0, 0, -1};
      for (const auto& [host, use] : call.use->hosts) {
        const Host& h = hosts_[host];
        if (host == current_host || h.state != HostState::kUp || (h.mask & kMaskExcluded)) continue;
        if (!Fits(FreeVec(h), need)) continue;
        auto ud = use.per_update_domain.find(update_domain);
        std::tuple<int32_t, int32_t, int64_t, int32_t> k{
            use.count, ud == use.per_update_domain.end() ? 0 : ud->second, -Score(h), host};
        if (std::get<3>(best) < 0 || k < best) best = k;
      }
      found = std::get<3>(best);
    }
  }
  if (found < 0) call.failed.emplace_back(need, key);
  return found;
}

std::string AllocatorState::PendingReason(Call& call, const Vec& need, int32_t current_host) {
  // The emptiest eligible host, whether the index shows it or the service mask hides it.
  int32_t largest = SearchMostFree({0, 0, 0, 0}, call, current_host, /*skip_service=*/false);
  for (const auto& [host, use] : call.use->hosts) {
    const Host& h = hosts_[host];
    if (host == current_host || h.state != HostState::kUp || (h.mask & kMaskExcluded)) continue;
    if (!Fits(FreeVec(h), {0, 0, 0, 0})) continue;
    if (largest < 0 || Score(h) > Score(hosts_[largest]) ||
        (Score(h) == Score(hosts_[largest]) && host < largest)) {
      largest = host;
    }
  }
  std::vector<std::string> notes;
  if (!call.excluded_names.empty())
    notes.push_back("excluded: " + JoinNames(call.excluded_names, 5));
  if (current_host >= 0) notes.push_back("not on its current host " + hosts_[current_host].name);
  std::string reason;
  if (largest < 0) {
    reason = "no up host can take it: none of the " + std::to_string(hosts_.size()) +
             " known hosts is up with capacity left";
  } else {
    const Vec free = FreeVec(hosts_[largest]);
    reason = "no up host has " + DescribeResources(FromVec(need)) + " free";
    notes.push_back("largest free: " + hosts_[largest].name + " with " +
                    DescribeResources(FromVec(free)) + ", " + DescribeShortage(free, need));
  }
  if (!notes.empty()) {
    reason += " (";
    for (size_t i = 0; i < notes.size(); ++i) reason += (i ? "; " : "") + notes[i];
    reason += ")";
  }
  return reason;
}

// ---------------------------------------------------------------------------------------------
// Placement.

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
  uint32_t ip = 0;
  if (new_ip) {
    Result<uint32_t> next = NextFreeIp(*call.subnet);
    if (!next.ok()) return pending(next.status().message());
    ip = *next;
  }
  uint64_t mac = current && current->mac_value ? *current->mac_value : NextFreeMac(req.name);
  if (mac == 0) return pending("no free MAC address is left in 52:54:00:00:00:00/24");

  int32_t host = -1;
  if (!req.target_host.empty()) {
    host = host_index_.at(req.target_host);  // checked by Place
    if (!Fits(FreeVec(hosts_[host]), call.need)) host = -1;
  } else {
    host = FindHost(call, call.need, req.update_domain, current_host);
  }
  if (host < 0) return pending(PendingReason(call, call.need, current_host));

  // Commit.
  Instance next;
  next.service = service.name;
  next.update_domain = req.update_domain;
  next.host = host;
  next.resources = service.flavor;
  next.mac_value = mac;
  next.mac = FormatMac(mac);
  if (new_ip) {
    used_ips_.insert(ip);
    ip_hints_[call.subnet->key] = ip + 1;
    next.ip_value = ip;
    next.ip = FormatIp(ip);
  } else if (current) {
    next.ip_value = current->ip_value;
    next.ip = current->ip;
  }
  if (!current || !current->mac_value) used_macs_.insert(mac);

  PlacedInstance placed{req.name, service.name, req.update_domain, {}, std::nullopt};
  AddToHost(host, service.name, req.update_domain, service.flavor);
  if (call.service_masked && !(hosts_[host].mask & kMaskService)) {
    SetMask(host, kMaskService, true);
    call.masked.push_back(host);
  }
  if (current) {
    placed.previous =
        Allocation{hosts_[current_host].name, current->resources, current->ip, current->mac};
    if (new_ip && current->ip_value) call.ips_to_free.push_back(*current->ip_value);
    RemoveFromHost(current_host, current->service, current->update_domain, current->resources);
    Host& old = hosts_[current_host];
    if ((old.mask & kMaskService) && !call.use->hosts.count(current_host)) {
      SetMask(current_host, kMaskService, false);  // back among the hosts without the service
    }
    if (old.state == HostState::kUp && !(old.mask & kMaskExcluded)) {
      call.failed.clear();  // capacity appeared where the index can see it
      call.tier0_failed.clear();
    }
    *current = std::move(next);
  } else {
    current = &instances_.emplace(req.name, std::move(next)).first->second;
  }
  placed.allocation = {hosts_[host].name, current->resources, current->ip, current->mac};
  return placed;
}

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
  call.need = ToVec(service.flavor);
  if (!service.subnet.empty()) {
    ASSIGN_OR_RETURN(call.subnet, ParseSubnet(service.name, service.subnet));
  }

  std::vector<InstanceRequest> generated;
  const std::vector<InstanceRequest>* requests = &given;
  if (full_service) {
    auto svc = services_.find(service.name);
    if (svc != services_.end() && svc->second.instances > 0) {
      return FailedPrecondition("service " + service.name + " already holds " +
                                std::to_string(svc->second.instances) +
                                " allocations; release them before a full-service placement, " +
                                "or place single instances with instance mode");
    }
    generated.reserve(static_cast<size_t>(service.instances));
    for (int64_t i = 0; i < service.instances; ++i) {
      generated.push_back({service.name + "-" + std::to_string(i), i % service.update_domains, ""});
      RETURN_IF_ERROR(ValidateName("instance name", generated.back().name));
    }
    requests = &generated;
  }

  // Check every request before changing anything.
  std::vector<int32_t> excluded_ids;
  for (const std::string& name : excluded) {
    auto it = host_index_.find(name);
    if (it == host_index_.end()) {
      return NotFound("excluded host " + QuoteValue(name) + " is not a known host");
    }
    if (!Contains(excluded_ids, it->second)) {
      excluded_ids.push_back(it->second);
      call.excluded_names.push_back(name);
    }
  }
  std::unordered_set<std::string> seen;
  std::unordered_map<int32_t, Vec> target_need;
  for (const InstanceRequest& r : *requests) {
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
    auto t = host_index_.find(r.target_host);
    if (t == host_index_.end()) {
      return NotFound("target host " + QuoteValue(r.target_host) + " of instance " + r.name +
                      " is not a known host");
    }
    const Host& h = hosts_[t->second];
    if (h.state != HostState::kUp) {
      return FailedPrecondition("target host " + h.name + " of instance " + r.name + " is " +
                                HostStateName(h.state) + "; only hosts in state up take instances");
    }
    if (Contains(excluded_ids, t->second)) {
      return FailedPrecondition("target host " + h.name + " of instance " + r.name +
                                " is excluded (the failed host); choose another host");
    }
    if (cur != instances_.end() && cur->second.host == t->second) {
      return FailedPrecondition("instance " + r.name + " already runs on target host " + h.name +
                                "; choose another host");
    }
    Vec& sum = target_need[t->second];
    for (int d = 0; d < kDims; ++d) sum[d] += call.need[d];
    const Vec free = FreeVec(h);
    if (!Fits(free, sum)) {
      return FailedPrecondition(
          "target host " + h.name + " cannot take instance " + r.name + ": it has " +
          DescribeResources(FromVec(free)) + " free, " +
          (sum == call.need ? "the instance needs " : "the targeted instances need ") +
          DescribeResources(FromVec(sum)) + "; " + DescribeShortage(free, sum));
    }
  }

  // Masks are for this call only: clear them however the call ends.
  call.use = &services_[service.name];
  struct Unmask {
    AllocatorState* self;
    Call* call;
    ~Unmask() {
      for (int32_t h : call->masked) self->SetMask(h, kMaskExcluded | kMaskService, false);
    }
  } unmask{this, &call};
  for (int32_t id : excluded_ids) {
    SetMask(id, kMaskExcluded, true);
    call.masked.push_back(id);
  }

  // Targeted instances first, so that no other instance of the call takes their room. Spread
  // then goes update domain by update domain, so that the instances of one update domain take
  // consecutive turns round the hosts (with N hosts, no two of its first N share a host).
  const bool by_update_domain = service.placement == PlacementPolicy::kSpread;
  std::vector<size_t> order(requests->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const InstanceRequest& x = (*requests)[a];
    const InstanceRequest& y = (*requests)[b];
    return std::make_pair(x.target_host.empty(), by_update_domain ? x.update_domain : 0) <
           std::make_pair(y.target_host.empty(), by_update_domain ? y.update_domain : 0);
  });
  std::vector<std::variant<PlacedInstance, PendingInstance>> outcomes(requests->size());
  for (size_t i : order) outcomes[i] = PlaceOne(call, (*requests)[i]);
  for (uint32_t ip : call.ips_to_free) FreeIp(ip);
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
      if (!used_ips_.count(*inst.ip_value)) return Internal("IP " + inst.ip + " not marked used");
      if (FormatIp(*inst.ip_value) != inst.ip) return Internal("IP text of " + name + " differs");
    }
    if (inst.mac_value) {
      if (!macs.insert(*inst.mac_value).second) return Internal("MAC " + inst.mac + " held twice");
      if (!used_macs_.count(*inst.mac_value))
        return Internal("MAC " + inst.mac + " not marked used");
    }
    ServiceUse& use = services[inst.service];
    ++use.instances;
    ++use.hosts[inst.host].count;
    ++use.hosts[inst.host].per_update_domain[inst.update_domain];
  }
  for (size_t h = 0; h < hosts_.size(); ++h) {
    const Host& host = hosts_[h];
    if (!(allocated[h] == host.allocated)) {
      return Internal("host " + host.name + ": recorded allocations " +
                      DescribeResources(host.allocated) + " differ from their sum " +
                      DescribeResources(allocated[h]));
    }
    const Vec free = FreeVec(host);
    if (!Fits(free, {0, 0, 0, 0})) {
      return Internal("host " + host.name +
                      " is overcommitted: " + DescribeResources(FromVec(free)) + " free");
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
        return Internal("service " + name + ": counts on host " + hosts_[host].name + " differ");
      }
    }
  }
  if (leaves_ < hosts_.size() || tree_.size() != 2 * leaves_) return Internal("index too small");
  for (size_t v = 2 * leaves_ - 1; v >= 1; --v) {
    Node want;
    if (v >= leaves_) {
      want = LeafValue(static_cast<int32_t>(v - leaves_));
    } else {
      Combine(want.max_free, want.max_score, tree_[2 * v].max_free, tree_[2 * v].max_score,
              tree_[2 * v + 1].max_free, tree_[2 * v + 1].max_score);
    }
    if (want.max_free != tree_[v].max_free || want.max_score != tree_[v].max_score) {
      return Internal("index node " + std::to_string(v) + " is stale");
    }
  }
  return Status::Ok();
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
