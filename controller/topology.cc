#include "controller/topology.h"

#include <cstdio>

namespace regen {

namespace {

// The two tests BuildTopology and LocationsOf make of an instance's state.
bool InTopology(const InstanceRecord& inst) {
  return !inst.allocation.host.empty() &&
         (IsActive(inst.state) || inst.state == InstanceState::kMoving);
}
bool Placed(const InstanceRecord& inst) { return inst.state != InstanceState::kPending; }

}  // namespace

bool ChangesTopology(const InstanceRecord* before, const InstanceRecord& after) {
  if (before == nullptr) return true;
  return InTopology(*before) != InTopology(after) || Placed(*before) != Placed(after) ||
         before->service != after.service || before->allocation.host != after.allocation.host ||
         before->allocation.ip != after.allocation.ip ||
         before->allocation.mac != after.allocation.mac || before->generation != after.generation;
}

bool ChangesTopology(const HostRecord* before, const HostRecord& after) {
  return before == nullptr || before->address != after.address;
}

v1::TopologyRevision BuildTopology(const std::map<std::string, InstanceRecord>& instances,
                                   const std::map<std::string, HostRecord>& hosts) {
  v1::TopologyRevision t;
  std::set<std::string> used_hosts;
  for (const auto& [name, inst] : instances) {
    if (!InTopology(inst)) continue;
    auto* ti = t.add_instances();
    ti->set_name(name);
    ti->set_service(inst.service);
    ti->set_host(inst.allocation.host);
    ti->set_ip(inst.allocation.ip);
    ti->set_mac(inst.allocation.mac);
    ti->set_generation(inst.generation);
    used_hosts.insert(inst.allocation.host);
  }
  for (const auto& host : used_hosts) {
    auto h = hosts.find(host);
    auto* th = t.add_hosts();
    th->set_name(host);
    if (h != hosts.end()) th->set_address(h->second.address);
  }
  return t;
}

std::string TopologyDigest(const v1::TopologyRevision& topology) {
  std::string content;
  (void)topology.SerializeToString(&content);  // no maps: deterministic
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : content) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::map<std::string, InstanceLocation> LocationsOf(
    const std::map<std::string, InstanceRecord>& instances) {
  std::map<std::string, InstanceLocation> out;
  for (const auto& [name, inst] : instances) {
    InstanceLocation& l = out[name];
    l.service = inst.service;
    if (Placed(inst)) l.host = inst.allocation.host;
    l.ip = inst.allocation.ip;
    l.mac = inst.allocation.mac;
  }
  return out;
}

void TopologyTracker::Reset(const std::string& digest) {
  // The empty topology is revision 0.
  digest_ = digest.empty() ? TopologyDigest(v1::TopologyRevision()) : digest;
  // Nothing is published yet: the first step after a load publishes every service's locations
  // (DNS and the instances hear the whole picture after a restart).
  published_.clear();
}

TopologyDelta TopologyTracker::Observe(const std::map<std::string, InstanceRecord>& instances,
                                       const std::map<std::string, HostRecord>& hosts) {
  TopologyDelta delta;
  delta.topology = BuildTopology(instances, hosts);
  delta.digest = TopologyDigest(delta.topology);
  delta.revision_changed = delta.digest != digest_;
  std::map<std::string, InstanceLocation> now = LocationsOf(instances);
  for (const auto& [name, loc] : now) {
    auto old = published_.find(name);
    if (old == published_.end() || !(old->second == loc)) delta.services.insert(loc.service);
  }
  for (const auto& [name, loc] : published_) {
    if (!now.count(name)) delta.services.insert(loc.service);  // removed
  }
  published_ = std::move(now);
  return delta;
}

}  // namespace regen
