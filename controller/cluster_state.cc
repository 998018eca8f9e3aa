#include "controller/cluster_state.h"

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/log.h"

namespace regen {

namespace {

constexpr char kTopologyRevisionKey[] = "topology_revision";
constexpr char kTopologyDigestKey[] = "topology_digest";
constexpr char kUpgradePrefix[] = "upgrade/";

}  // namespace

void DieOnStoreWriteFailure(const Status& status) {
  spdlog::critical(
      "state store write failed: {}; exiting with status {} (this store's refusals are fatal: a "
      "standby or the restarted controller reloads the state from the store; nothing of the "
      "failed step was applied)",
      status.message(), kExitStoreWriteFailed);
  spdlog::default_logger()->flush();
  // Also straight to stderr: the last words of a dying daemon must not depend on its log sinks.
  std::fprintf(stderr, "regen-controller: state store write failed: %s; exiting with status %d\n",
               status.message().c_str(), kExitStoreWriteFailed);
  std::fflush(stderr);
  std::_Exit(kExitStoreWriteFailed);
}

Result<ServiceModel> ModelOf(const ServiceSpec& spec) {
  ServiceModel m;
  m.name = spec.name;
  m.instances = spec.instances;
  m.update_domains = spec.update_domains;
  m.flavor = spec.flavor;
  m.subnet = spec.subnet;
  ASSIGN_OR_RETURN(m.ip_policy, ParseIpPolicy(spec.ip_policy));
  ASSIGN_OR_RETURN(m.placement, ParsePlacementPolicy(spec.placement));
  return m;
}

void StateChange::Put(const InstanceRecord& inst) {
  for (auto& i : instances) {
    if (i.name == inst.name) {
      i = inst;
      return;
    }
  }
  instances.push_back(inst);
}

InstanceRecord* StateChange::Find(const std::string& name) {
  for (auto& i : instances) {
    if (i.name == name) return &i;
  }
  return nullptr;
}

Status ClusterState::Load() {
  ASSIGN_OR_RETURN(StoreSnapshot snap, store_.LoadAll());
  std::map<std::string, ServiceRuntime> services;
  for (auto& [name, rec] : snap.services) {
    auto spec = ParseServiceSpec(rec.spec_yaml, "<stored service " + name + ">");
    if (!spec.ok()) return spec.status().WithContext("store: service " + name);
    auto model = ModelOf(*spec);
    if (!model.ok()) return model.status().WithContext("store: service " + name);
    // The current version is the record's: an upgrade changes it, not the applied YAML.
    if (!rec.version.empty() && spec->versions.count(rec.version)) spec->version = rec.version;
    services[name] = {rec, *spec, *model};
  }
  std::map<std::string, UpgradeState> upgrades;
  for (const auto& [key, value] : snap.meta) {
    if (key.rfind(kUpgradePrefix, 0) != 0) continue;
    if (value.empty()) continue;  // the upgrade record of a deleted service
    auto state = ParseUpgradeStateJson(value);
    if (!state.ok()) return state.status().WithContext("store: " + key);
    upgrades[state->service] = *state;
  }
  int64_t revision = 0;
  if (auto it = snap.meta.find(kTopologyRevisionKey); it != snap.meta.end()) {
    revision = std::strtoll(it->second.c_str(), nullptr, 10);
  }
  std::string digest;
  if (auto it = snap.meta.find(kTopologyDigestKey); it != snap.meta.end()) digest = it->second;
  MaintenanceRecord maintenance;
  if (auto it = snap.meta.find(kMaintenanceKey); it != snap.meta.end()) {
    ASSIGN_OR_RETURN(maintenance, ParseMaintenanceJson(it->second));
  }
  hosts_ = std::move(snap.hosts);
  services_ = std::move(services);
  instances_ = std::move(snap.instances);
  on_host_.clear();
  for (const auto& [name, inst] : instances_) Reindex(name, nullptr, &inst);
  upgrades_ = std::move(upgrades);
  topology_revision_ = revision;
  topology_digest_ = std::move(digest);
  maintenance_ = maintenance;
  return Status::Ok();
}

Status ClusterState::Write(StoreTxn& txn, StateChange& change) {
  for (const auto& s : change.services) RETURN_IF_ERROR(txn.PutService(s.record));
  for (const auto& h : change.hosts) RETURN_IF_ERROR(txn.PutHost(h));
  for (const auto& i : change.instances) RETURN_IF_ERROR(txn.PutInstance(i));
  for (const auto& name : change.deleted_instances) RETURN_IF_ERROR(txn.DeleteInstance(name));
  for (const auto& name : change.deleted_services) {
    RETURN_IF_ERROR(txn.DeleteService(name));
    RETURN_IF_ERROR(txn.SetMeta(kUpgradePrefix + name, ""));  // no record (the store has no delete)
  }
  for (const auto& u : change.upgrades) {
    RETURN_IF_ERROR(txn.SetMeta(kUpgradePrefix + u.service, UpgradeStateToJson(u).dump()));
  }
  for (const auto& op : change.operations) RETURN_IF_ERROR(txn.PutOperation(op));
  if (change.topology) {
    RETURN_IF_ERROR(txn.SetMeta(kTopologyRevisionKey, std::to_string(change.topology->revision)));
    RETURN_IF_ERROR(txn.SetMeta(kTopologyDigestKey, change.topology->digest));
  }
  if (change.maintenance) {
    RETURN_IF_ERROR(txn.SetMeta(kMaintenanceKey, MaintenanceToJson(*change.maintenance)));
  }
  for (auto& e : change.events) {
    ASSIGN_OR_RETURN(e.sequence, txn.AppendEvent(e));
  }
  return Status::Ok();
}

Result<std::vector<EventRecord>> ClusterState::Commit(StateChange change) {
  if (change.empty()) return std::vector<EventRecord>{};
  RETURN_IF_ERROR(store_.Transaction([&](StoreTxn& txn) { return Write(txn, change); }));
  std::vector<EventRecord> events = change.events;
  Apply(std::move(change));
  return events;
}

void ClusterState::Apply(StateChange&& change) {
  for (auto& s : change.services) services_[s.record.name] = std::move(s);
  for (auto& h : change.hosts) hosts_[h.name] = std::move(h);
  for (auto& i : change.instances) {
    auto it = instances_.find(i.name);
    Reindex(i.name, it == instances_.end() ? nullptr : &it->second, &i);
    instances_[i.name] = std::move(i);
  }
  for (const auto& name : change.deleted_instances) {
    auto it = instances_.find(name);
    if (it == instances_.end()) continue;
    Reindex(name, &it->second, nullptr);
    instances_.erase(it);
  }
  for (const auto& name : change.deleted_services) {
    services_.erase(name);
    upgrades_.erase(name);
  }
  for (auto& u : change.upgrades) upgrades_[u.service] = std::move(u);
  if (change.topology) {
    topology_revision_ = change.topology->revision;
    topology_digest_ = std::move(change.topology->digest);
  }
  if (change.maintenance) maintenance_ = *change.maintenance;
}

void ClusterState::Reindex(const std::string& name, const InstanceRecord* before,
                           const InstanceRecord* after) {
  if (before != nullptr && after != nullptr && before->allocation.host == after->allocation.host) {
    return;
  }
  if (before != nullptr && !before->allocation.host.empty()) {
    auto it = on_host_.find(before->allocation.host);
    if (it != on_host_.end()) {
      it->second.erase(name);
      if (it->second.empty()) on_host_.erase(it);
    }
  }
  if (after != nullptr && !after->allocation.host.empty()) {
    on_host_[after->allocation.host].insert(name);
  }
}

const std::set<std::string>& ClusterState::instances_on(const std::string& host) const {
  static const std::set<std::string> none;
  auto it = on_host_.find(host);
  return it == on_host_.end() ? none : it->second;
}

void ClusterState::NoteHeartbeat(const std::string& host, int64_t unix_ms) {
  auto it = hosts_.find(host);
  if (it != hosts_.end()) it->second.last_heartbeat_unix_ms = unix_ms;
}

void ClusterState::NoteAppliedTopology(const std::string& host, int64_t revision) {
  auto it = hosts_.find(host);
  if (it != hosts_.end()) it->second.applied_topology_revision = revision;
}

const HostRecord* ClusterState::host(const std::string& name) const {
  auto it = hosts_.find(name);
  return it == hosts_.end() ? nullptr : &it->second;
}

const ServiceRuntime* ClusterState::service(const std::string& name) const {
  auto it = services_.find(name);
  return it == services_.end() ? nullptr : &it->second;
}

const InstanceRecord* ClusterState::instance(const std::string& name) const {
  auto it = instances_.find(name);
  return it == instances_.end() ? nullptr : &it->second;
}

const UpgradeState* ClusterState::upgrade(const std::string& service) const {
  auto it = upgrades_.find(service);
  return it == upgrades_.end() ? nullptr : &it->second;
}

}  // namespace regen
