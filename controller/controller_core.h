// What the controller's parts share (controller/controller.h wires them): the durable state and
// its one write path (ClusterState::Commit through ControllerCore::Commit, with the policy for a
// store that refuses a write), the allocator, the agents' sessions, and the bookkeeping of the
// current step. Not thread-safe: the controller's main loop thread owns it and every part.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/proto/regen.pb.h"
#include "config/controller_config.h"
#include "controller/allocator.h"
#include "controller/cluster_state.h"
#include "controller/host_leases.h"
#include "controller/lease_keeper.h"
#include "controller/store.h"
#include "controller/upgrade.h"

namespace regen {

// Where the controller sends messages to one connected agent. Send must not block for long; it is
// called from the main loop and (heartbeat acks, controller/lease_keeper.h) from gRPC threads, so
// it must be thread-safe.
class AgentSink {
 public:
  virtual ~AgentSink() = default;
  virtual void Send(const v1::ControllerMessage& message) = 0;
  // Ends the session (the agent reconnects). Called when a newer session replaces a silent one.
  virtual void Close() {}
};

// Where an instance is, as its peers, DNS and notifications see it: host "" while it is not
// placed. A change of any of these is a topology change of its service.
struct InstanceLocation {
  std::string service;
  std::string host;
  std::string ip;
  std::string mac;
  bool operator==(const InstanceLocation&) const = default;
};

// What one step of the controller (an agent message, a tick, an admin request) changed, handed to
// the change listeners once the step is over (all its records stored and desired sets sent).
struct ControllerChanges {
  std::vector<EventRecord> events;  // appended during the step, in order
  // Services whose instances' locations (host, IP, MAC) changed, or that lost or gained instances.
  std::set<std::string> topology_changed;
  int64_t topology_revision = 0;  // bumped once per step that changed a topology
};

// An agent's session and what it last said (memory only: an agent restates it on reconnect).
struct HostSession {
  AgentSink* sink = nullptr;  // its heartbeats and lease: leases (LeaseKeeper)
  bool reported = false;      // a DomainsReport arrived on this session
  std::map<std::string, v1::DomainStatus> domains;  // last report
  // HA: the etcd revision of the agent's alive key as its Hello named it.
  int64_t etcd_lease_revision = 0;
  bool network = false;          // its Hello said it programs OVS (its tunnel address is its own)
  bool topology_deltas = false;  // its Hello said it applies topology deltas
  bool complete = false;         // the last report listed every domain of the host
  // The Hello whose host record the store refused (issue 15): registered again once it writes.
  std::optional<v1::Hello> unregistered;
  // Images staged on the host (service, version) -> the agent's word (error empty: staged).
  std::map<std::pair<std::string, std::string>, v1::StagedImage> staged;
};

// "crashed" for DOMAIN_STATE_CRASHED.
std::string DomainStateWord(v1::DomainState state);
// Whether the agent probes instances of a service with `check` at `ip` (agent/health_tracker.h
// decides the same way).
bool Probed(const HealthCheck& check, const std::string& ip);
// In its host's desired set: creating or running, and not leaving for another host.
bool InDesiredState(const InstanceRecord& inst);
v1::Resources ToProto(const Resources& r);
Resources FromProto(const v1::Resources& p);

class ControllerCore {
 public:
  using EventListener = std::function<void(const EventRecord&)>;

  ControllerCore(const ControllerConfig& config, Store& store, Clock& clock)
      : config(config), clock(clock), state(store), leases(config, clock) {}

  // The parts' one write path: ClusterState::Commit, then the events go to the event listener
  // and into the current step. When the store refuses (a full disk, a lost lock, an I/O error),
  // nothing of `change` is applied and {} is returned; the step's later writes are not tried
  // (step_store_error), and no write is tried until the controller has re-read the store
  // (resync_needed; Controller::ResyncWithStore). Agents' leases do not depend on the store, so
  // they keep their VMs meanwhile. For a store whose refusals are fatal (etcd) the process exits
  // (DieOnStoreWriteFailure).
  std::vector<EventRecord> Commit(StateChange change);
  // The outermost step begins: its own writes may be tried again.
  void BeginStep() {
    step_store_error.reset();
    step_commits = 0;
  }
  EventRecord MakeEvent(EventKind kind, const InstanceRecord* inst, std::string host,
                        std::string message) const;
  // Builds the allocator from the state (at load).
  Status RebuildAllocator();
  AllocatorState& alloc() { return *alloc_; }
  void set_alloc(AllocatorState a) { alloc_ = std::move(a); }

  HostSession* session(const std::string& host);
  const HostSession* session(const std::string& host) const;
  // A known host in state down (an unknown host is not).
  bool IsHostDown(const std::string& host) const;
  // regenctl maintenance runs: nothing is healed.
  bool InMaintenance() const { return state.maintenance().Active(clock.WallMillis()); }

  const ControllerConfig config;
  Clock& clock;
  ClusterState state;
  // The hosts' leases: heartbeats are acknowledged there, on gRPC threads (thread-safe).
  LeaseKeeper leases;
  // HA mode: the hosts' leases in etcd (thread-safe; not owned); null in embedded mode.
  const HostLeaseSource* host_leases = nullptr;
  std::map<std::string, HostSession> sessions;
  EventListener event_listener;
  // instance -> detection time (time to heal).
  std::map<std::string, int64_t> failed_at_ms;
  // instance -> (detected by: event | poll | health_check | host_down, ms from the first evidence
  // (the agent's detection; the host's last heartbeat) to the controller's decision).
  std::map<std::string, std::pair<std::string, int64_t>> detection;
  // instance -> the generation whose failed health check was counted against the upgrade: the
  // agent's event and its report's level-triggered verdict are one failure, and during a
  // maintenance (nothing healed, same generation) they would otherwise count twice.
  std::map<std::string, int64_t> health_counted;
  // instance -> the failure last logged (generation, why): a decision replayed after a refused
  // store write is not logged again.
  std::map<std::string, std::pair<int64_t, std::string>> failure_logged;
  // The current step's events.
  std::vector<EventRecord> step_events;
  // The store refused a write of this step (or was not tried: resync_needed); its error.
  std::optional<Status> step_store_error;
  int step_commits = 0;  // writes of this step that were stored
  // A write was refused and the store not re-read since: memory may lag or lead it.
  bool resync_needed = false;
  // The current outage: writes refused since `outage_since_ms` (0: none), last logged at.
  int64_t outage_since_ms = 0;
  int64_t outage_refusals = 0;
  std::string outage_error;  // the store's last refusal
  int64_t outage_logged_ms = 0;
  // Instances or hosts were written since the topology was last checked (DesiredState): only
  // then can it differ, so a step that wrote neither (a heartbeat) costs no topology rebuild.
  bool topology_dirty = true;

 private:
  void OnStoreRefused(const Status& status);

  std::optional<AllocatorState> alloc_;
};

}  // namespace regen
