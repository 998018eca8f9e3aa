// The controller's durable state in memory (hosts, services, instances, upgrades, the topology
// revision) and the one path that changes it: Commit writes a StateChange to the store in one
// transaction and only then applies it to memory, so memory never holds what the store does not.
// A refused write returns its error with nothing applied; what the controller does then is
// ControllerCore::Commit's policy (stay up and re-read the store, or exit for a store whose
// refusals are fatal). Not thread-safe: the controller's main loop thread owns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/service_spec.h"
#include "controller/allocator.h"
#include "controller/maintenance.h"
#include "controller/store.h"
#include "controller/upgrade.h"

namespace regen {

// The exit status of a controller whose state store refused a write (EX_IOERR).
inline constexpr int kExitStoreWriteFailed = 74;

// Logs `status` as a failed write of the controller's own state and exits the process with
// kExitStoreWriteFailed (no destructors run: other threads may still be using the state). Only
// for stores whose refusals are fatal (Store::FailedWritesAreFatal: etcd).
[[noreturn]] void DieOnStoreWriteFailure(const Status& status);

// A stored service with its parsed spec and allocation model.
struct ServiceRuntime {
  ServiceRecord record;
  ServiceSpec spec;
  ServiceModel model;
};

// The service's allocation model from its spec.
Result<ServiceModel> ModelOf(const ServiceSpec& spec);

// Everything one step writes, applied all or nothing. Records are whole (the new value).
struct StateChange {
  std::vector<HostRecord> hosts;
  std::vector<ServiceRuntime> services;
  std::vector<InstanceRecord> instances;
  std::vector<std::string> deleted_instances;
  // Services removed (regenctl service delete), with their upgrade records.
  std::vector<std::string> deleted_services;
  std::vector<UpgradeState> upgrades;
  std::vector<OperationRecord> operations;
  std::vector<EventRecord> events;  // appended in order; their sequence is assigned
  struct Topology {
    int64_t revision = 0;
    std::string digest;
  };
  std::optional<Topology> topology;
  std::optional<MaintenanceRecord> maintenance;

  bool empty() const {
    return hosts.empty() && services.empty() && instances.empty() && deleted_instances.empty() &&
           deleted_services.empty() && upgrades.empty() && operations.empty() && events.empty() &&
           !topology && !maintenance;
  }
  // Adds or replaces (by name) an instance in this change.
  void Put(const InstanceRecord& inst);
  // The instance as this change would write it; null when the change does not hold it.
  InstanceRecord* Find(const std::string& name);
};

class ClusterState {
 public:
  explicit ClusterState(Store& store) : store_(store) {}

  // Reads everything the store holds. An unreadable or inconsistent store is an error (the
  // controller does not start on it).
  Status Load();

  // Writes `change` in one transaction, then applies it to memory. Returns its events with their
  // sequence numbers, or the store's error: then nothing of `change` is in memory.
  Result<std::vector<EventRecord>> Commit(StateChange change);
  bool FailedWritesAreFatal() const { return store_.FailedWritesAreFatal(); }

  // Memory-only updates of fields an agent restates on every connection (stored with the
  // host's next write).
  void NoteHeartbeat(const std::string& host, int64_t unix_ms);
  void NoteAppliedTopology(const std::string& host, int64_t revision);

  const std::map<std::string, HostRecord>& hosts() const { return hosts_; }
  const std::map<std::string, ServiceRuntime>& services() const { return services_; }
  const std::map<std::string, InstanceRecord>& instances() const { return instances_; }
  const std::map<std::string, UpgradeState>& upgrades() const { return upgrades_; }
  const HostRecord* host(const std::string& name) const;
  const ServiceRuntime* service(const std::string& name) const;
  const InstanceRecord* instance(const std::string& name) const;
  const UpgradeState* upgrade(const std::string& service) const;
  // The names of the instances allocated to `host` (any state), in name order: a host's desired
  // set and staging read these instead of every instance.
  const std::set<std::string>& instances_on(const std::string& host) const;
  int64_t topology_revision() const { return topology_revision_; }
  // "" when the store holds no digest (nothing was ever placed).
  const std::string& topology_digest() const { return topology_digest_; }
  const MaintenanceRecord& maintenance() const { return maintenance_; }

  // Reads that go to the store (idempotency of admin requests, the event log).
  Result<std::optional<OperationRecord>> FindOperation(const std::string& id) {
    return store_.FindOperation(id);
  }
  Result<std::vector<EventRecord>> EventsAfter(int64_t after, int64_t limit) {
    return store_.EventsAfter(after, limit);
  }

 private:
  static Status Write(StoreTxn& txn, StateChange& change);
  void Apply(StateChange&& change);
  // Keeps on_host_ right when the instance `name` goes from `before` to `after` (null: none).
  void Reindex(const std::string& name, const InstanceRecord* before, const InstanceRecord* after);

  Store& store_;
  std::map<std::string, HostRecord> hosts_;
  std::map<std::string, ServiceRuntime> services_;
  std::map<std::string, InstanceRecord> instances_;
  std::map<std::string, std::set<std::string>> on_host_;  // allocation.host -> instance names
  std::map<std::string, UpgradeState> upgrades_;
  int64_t topology_revision_ = 0;
  std::string topology_digest_;
  MaintenanceRecord maintenance_;
};

}  // namespace regen
