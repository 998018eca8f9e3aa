#include "common/topology_slices.h"

#include <algorithm>

namespace regen {

namespace {

bool SameEntry(const v1::TopologyInstance& a, const v1::TopologyInstance& b) {
  return a.service() == b.service() && a.host() == b.host() && a.ip() == b.ip() &&
         a.mac() == b.mac() && a.generation() == b.generation() && a.port() == b.port();
}

// Adds `instances` to `out` (name order), and the host of each with its address in `index`.
void AddWithHosts(const std::map<std::string, const v1::TopologyInstance*>& instances,
                  const TopologyIndex& index, v1::TopologyRevision* out) {
  std::set<std::string> hosts;
  for (const auto& [name, i] : instances) {
    *out->add_instances() = *i;
    hosts.insert(i->host());
  }
  for (const auto& h : hosts) {
    auto* th = out->add_hosts();
    th->set_name(h);
    th->set_address(index.address_of(h));
  }
}

const std::vector<const v1::TopologyInstance*>& NoInstances() {
  static const std::vector<const v1::TopologyInstance*> none;
  return none;
}

}  // namespace

TopologyIndex::TopologyIndex(std::shared_ptr<const v1::TopologyRevision> topology)
    : topology_(std::move(topology)) {
  for (const auto& h : topology_->hosts()) address_of_[h.name()] = h.address();
  for (const auto& i : topology_->instances()) {
    by_name_[i.name()] = &i;
    by_service_[i.service()].push_back(&i);
    services_on_host_[i.host()].insert(i.service());
  }
  // BuildTopology lists instances in name order already; a topology from elsewhere may not.
  for (auto& [service, list] : by_service_) {
    std::sort(list.begin(), list.end(),
              [](const auto* a, const auto* b) { return a->name() < b->name(); });
  }
}

const v1::TopologyInstance* TopologyIndex::instance(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const std::vector<const v1::TopologyInstance*>& TopologyIndex::of_service(
    const std::string& service) const {
  auto it = by_service_.find(service);
  return it == by_service_.end() ? NoInstances() : it->second;
}

const std::set<std::string>& TopologyIndex::services_on(const std::string& host) const {
  static const std::set<std::string> none;
  auto it = services_on_host_.find(host);
  return it == services_on_host_.end() ? none : it->second;
}

std::string TopologyIndex::address_of(const std::string& host) const {
  auto it = address_of_.find(host);
  return it == address_of_.end() ? "" : it->second;
}

v1::TopologyRevision TopologyIndex::SliceFor(const std::string& host) const {
  v1::TopologyRevision out;
  out.set_revision(revision());
  std::map<std::string, const v1::TopologyInstance*> instances;
  for (const auto& service : services_on(host)) {
    for (const auto* i : of_service(service)) instances[i->name()] = i;
  }
  AddWithHosts(instances, *this, &out);
  return out;
}

std::map<std::string, v1::TopologyRevision> SliceDeltas(const TopologyIndex& before,
                                                        const TopologyIndex& after) {
  // The instances whose entry changed (added, removed, or any field), and those on a host whose
  // tunnel address changed (their host entry must be sent again).
  std::set<std::string> changed;
  const auto& old_list = before.topology().instances();
  const auto& new_list = after.topology().instances();
  for (const auto& i : new_list) {
    const v1::TopologyInstance* old = before.instance(i.name());
    if (old == nullptr || !SameEntry(*old, i) ||
        before.address_of(i.host()) != after.address_of(i.host())) {
      changed.insert(i.name());
    }
  }
  for (const auto& i : old_list) {
    if (after.instance(i.name()) == nullptr) changed.insert(i.name());
  }
  // The services they belong to, and every host that runs one of those (before or after).
  std::map<std::string, std::set<std::string>> changed_by_service;
  for (const auto& name : changed) {
    const v1::TopologyInstance* i = after.instance(name);
    if (i == nullptr) i = before.instance(name);
    changed_by_service[i->service()].insert(name);
  }
  std::set<std::string> hosts;
  for (const auto& [service, names] : changed_by_service) {
    for (const auto* i : before.of_service(service)) hosts.insert(i->host());
    for (const auto* i : after.of_service(service)) hosts.insert(i->host());
  }
  std::map<std::string, v1::TopologyRevision> out;
  for (const auto& host : hosts) {
    const std::set<std::string>& was = before.services_on(host);
    const std::set<std::string>& is = after.services_on(host);
    std::map<std::string, const v1::TopologyInstance*> upserts;
    std::set<std::string> removed;
    for (const auto& service : is) {
      if (!was.count(service)) {
        for (const auto* i : after.of_service(service)) upserts[i->name()] = i;  // new to it
        continue;
      }
      auto c = changed_by_service.find(service);
      if (c == changed_by_service.end()) continue;
      for (const auto& name : c->second) {
        if (const auto* i = after.instance(name)) {
          upserts[name] = i;
        } else {
          removed.insert(name);
        }
      }
    }
    for (const auto& service : was) {
      if (is.count(service)) continue;
      for (const auto* i : before.of_service(service)) removed.insert(i->name());  // gone from it
    }
    if (upserts.empty() && removed.empty()) continue;
    v1::TopologyRevision& d = out[host];
    d.set_revision(after.revision());
    d.set_base_revision(before.revision());
    AddWithHosts(upserts, after, &d);
    for (const auto& name : removed) d.add_removed_instances(name);
  }
  return out;
}

v1::TopologyRevision ApplyTopologyDelta(const v1::TopologyRevision& base,
                                        const v1::TopologyRevision& delta) {
  std::map<std::string, v1::TopologyInstance> instances;
  for (const auto& i : base.instances()) instances[i.name()] = i;
  for (const auto& name : delta.removed_instances()) instances.erase(name);
  for (const auto& i : delta.instances()) instances[i.name()] = i;
  std::map<std::string, std::string> addresses;
  for (const auto& h : base.hosts()) addresses[h.name()] = h.address();
  for (const auto& h : delta.hosts()) addresses[h.name()] = h.address();
  std::set<std::string> named;
  v1::TopologyRevision out;
  out.set_revision(delta.revision());
  for (auto& [name, i] : instances) {
    named.insert(i.host());
    *out.add_instances() = std::move(i);
  }
  for (const auto& [name, address] : addresses) {
    if (!named.count(name)) continue;
    auto* th = out.add_hosts();
    th->set_name(name);
    th->set_address(address);
  }
  return out;
}

}  // namespace regen
