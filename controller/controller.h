// The controller's decisions and state: hosts and their heartbeats, services, instances and their
// allocations, healing, planned moves (failover, drain). Transport-free: the gRPC server
// (controller/server.h) feeds it agent messages and admin requests and gives each agent session an
// AgentSink. Not thread-safe: owned by the controller's main loop thread.
//
// Healing (DESIGN.md, "Healing"): a failed instance (agent event or report, or its host down) is
// placed by the allocator in instance mode on another host with the same resources, IP and MAC,
// generation + 1; the new host's desired set gains it and the old host's loses it, in the same
// step. Desired sets are level-triggered: every change sends the host its whole set.
//
// Topology (DESIGN.md, "Healing" step 5): every placed instance (host, IP, MAC, generation) and
// the tunnel address of each host holding one form the network topology. Whenever it changes (a
// heal, drain, failover, upgrade step, deploy, scale-down or removal; found by comparing it after
// every placement change) its revision (store meta key topology_revision) goes up by one and the
// whole topology is sent to every connected agent at once, before any desired set, while the new
// domain is still being created: each agent session has its own writer, so no agent waits for
// another. An agent that says Hello gets the latest revision. Agents ack with TopologyApplied; the
// revision each host applied shows in ListHosts.
//
// Health checks: a service's health_check travels in each instance's spec; the agent probes and
// reports each instance's health with its domains, and reports max_failed failed probes in a row
// as a failure detected by health check, healed like a crash. While an upgrade runs, an instance
// of the UD being upgraded counts as upgraded only once it runs the new version and (when it is
// health-checked) a probe of its current generation has passed; a health-check failure of an
// instance running the upgrade's new version counts as HealthCheckFailed for the upgrade.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/proto/regen.pb.h"
#include "config/controller_config.h"
#include "config/service_spec.h"
#include "controller/allocator.h"
#include "controller/store.h"
#include "controller/upgrade.h"

namespace regen {

// Where the controller sends messages to one connected agent. Send must not block for long and
// is called from the main loop thread only.
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

class Controller {
 public:
  // Called after every appended event (on the main loop thread), e.g. to wake `events --follow`.
  using EventListener = std::function<void(const EventRecord&)>;
  // Called at the end of every step that appended events or changed a topology (main loop
  // thread). Must not call back into the controller's mutating methods.
  using ChangeListener = std::function<void(const Controller&, const ControllerChanges&)>;

  Controller(const ControllerConfig& config, Store& store, Clock& clock);

  // Loads the store and resumes what was in flight. Hosts get host_down_after from now to
  // reconnect before they count as down.
  Status Load();
  void SetEventListener(EventListener listener) { event_listener_ = std::move(listener); }
  void AddChangeListener(ChangeListener listener) {
    change_listeners_.push_back(std::move(listener));
  }
  // Stores an event raised outside the controller's own decisions (DNS updates failing or
  // recovering); it reaches the event and change listeners like any other.
  Status RecordEvent(EventRecord event);

  // ---- agents ----
  // A Hello on a new session. Refused (the session should be closed with the message) for a bad
  // host name or when another live session already speaks for that host.
  Status OnHello(const v1::Hello& hello, AgentSink* sink);
  void OnHeartbeat(const std::string& host, const v1::Heartbeat& heartbeat, AgentSink* sink);
  void OnDomainsReport(const std::string& host, const v1::DomainsReport& report);
  void OnDomainEvent(const std::string& host, const v1::DomainEvent& event);
  void OnDisconnect(const std::string& host, AgentSink* sink);
  // The agent of `host` applied topology `applied.revision` (recorded for ListHosts).
  void OnTopologyApplied(const std::string& host, const v1::TopologyApplied& applied,
                         AgentSink* sink);
  // Timers: suspect/down hosts, pending placements, moves whose old host went away.
  void Tick();

  // ---- regenctl ----
  Result<v1::ApplyServiceResponse> ApplyService(const v1::ApplyServiceRequest& request);
  v1::ListServicesResponse ListServices() const;
  Result<v1::GetServiceResponse> GetService(const std::string& name) const;
  Result<v1::ListInstancesResponse> ListInstances(const std::string& service) const;
  v1::ListHostsResponse ListHosts() const;
  Result<v1::FailoverResponse> Failover(const v1::FailoverRequest& request);
  Result<v1::DrainResponse> Drain(const v1::DrainRequest& request);
  Result<std::vector<EventRecord>> EventsAfter(int64_t after, int64_t limit);

  // ---- rolling upgrades (controller/upgrade.h holds the rules) ----
  Result<v1::UpgradeStatus> UpgradeStart(const v1::UpgradeStartRequest& request);
  Result<v1::UpgradeStatus> UpgradeGet(const std::string& service) const;
  Result<v1::UpgradeStatus> UpgradePause(const v1::UpgradeServiceRequest& request);
  Result<v1::UpgradeStatus> UpgradeResume(const v1::UpgradeServiceRequest& request);
  Result<v1::UpgradeStatus> UpgradeNextUd(const v1::UpgradeServiceRequest& request);
  Result<v1::UpgradeStatus> UpgradeRollback(const v1::UpgradeServiceRequest& request);

  // For tests and status.
  const std::map<std::string, InstanceRecord>& instances() const { return instances_; }
  // Where each instance is now (instance -> location), for DNS and notifications.
  std::map<std::string, InstanceLocation> Locations() const;
  // The service's network.dns_name ("" when it has none, or for an unknown service).
  std::string DnsNameOf(const std::string& service) const;
  std::vector<std::string> ServiceNames() const;
  // Hosts with placed instances of `service`, and those instances (host -> instance names).
  std::map<std::string, std::vector<std::string>> HostsOf(const std::string& service) const;
  // Sends `message` on the host's agent session; false when the host has none.
  bool SendToHost(const std::string& host, const v1::ControllerMessage& message) const;
  int64_t WallMillis() const { return clock_.WallMillis(); }
  std::string HostState(const std::string& host) const;
  // The current topology revision (0 before anything was placed) and its content.
  int64_t topology_revision() const { return topology_revision_; }
  v1::TopologyRevision Topology() const;
  // The desired set the controller would send `host` now.
  std::vector<v1::InstanceSpec> DesiredFor(const std::string& host) const;
  // The images to stage on `host`: for every service with an instance there whose upgrade goes
  // forward (not rolling back or failed), the target version's image, if it has one. A host that
  // receives a healed instance of such a service gets it too (the DESIGN table's "staged on the
  // new host").
  std::vector<v1::StagedImage> StageFor(const std::string& host) const;
  // The service's upgrade target when it must be staged before instances are re-created ("" if
  // none), and whether `host` reports it staged.
  std::string StagingTarget(const std::string& service) const;
  bool StagedOn(const std::string& host, const std::string& service,
                const std::string& version) const;

 private:
  struct HostRuntime {
    HostRecord record;
    AgentSink* sink = nullptr;
    Clock::TimePoint last_heartbeat{};
    bool reported = false;                            // a DomainsReport arrived on this session
    std::map<std::string, v1::DomainStatus> domains;  // last report
    // Images staged on the host (service, version) -> the agent's word (error empty: staged).
    std::map<std::pair<std::string, std::string>, v1::StagedImage> staged;
  };
  struct ServiceRuntime {
    ServiceRecord record;
    ServiceSpec spec;
    ServiceModel model;
  };

  static Result<ServiceModel> ModelOf(const ServiceSpec& spec);
  Status RebuildAllocator();
  AllocatorState& alloc() { return *alloc_; }

  // Healing and placement.
  // `still_running`: the failed domain still runs on failed_host (a failed health check), so the
  // heal is a move: the new host creates it only once failed_host has destroyed it.
  void Heal(const std::string& instance, const std::string& why, const std::string& failed_host,
            bool still_running = false);
  // Several instances of one failure (a host down): one placement call per service.
  void Heal(const std::vector<std::string>& instances, const std::string& why,
            const std::string& failed_host, bool still_running = false);
  // Creates records (pending) for instances a service should have but the store lacks.
  void EnsureServiceInstances();
  void PlacePending();
  // Records a plan the allocator already committed: instances, events; persisted together.
  void ApplyPlacement(const ServiceRuntime& svc, const PlacementPlan& plan, const std::string& why,
                      std::set<std::string>& touched_hosts, bool planned_move);
  void SetHostState(HostRuntime& host, const std::string& state, const std::string& why);
  void FinishMove(InstanceRecord& inst, std::set<std::string>& touched);

  // Upgrades.
  Result<v1::UpgradeStatus> ApplyUpgradeEvent(const std::string& service, UpgradeEventKind event);
  Status SaveUpgrade(const UpgradeState& state);
  // Applies `event` to the service's active upgrade (if any) and saves it; errors are logged.
  void FeedUpgrade(const std::string& service, UpgradeEventKind event);
  // True when `inst` needs no probe (no health check, or no IP to probe) or its host reported a
  // passed probe of its current generation.
  bool HealthPassed(const InstanceRecord& inst) const;
  // "none", or the health its host last reported: "unknown", "passing", "failing".
  std::string HealthWord(const InstanceRecord& inst) const;
  // Carries the upgrade of `service` forward as far as it can go now.
  void PushStagingIfChanged(const std::string& service);
  void DriveUpgradeSteps(const std::string& service);
  void DriveUpgrade(const std::string& service);
  void DriveUpgrades();
  std::set<std::string> HealingOf(const std::string& service) const;
  v1::UpgradeStatus StatusOf(const UpgradeState& state) const;

  // Change listeners: every public entry point holds a StepGuard; when the outermost one ends,
  // the step's events and topology changes go to the listeners.
  class StepGuard {
   public:
    explicit StepGuard(Controller* c) : c_(c) { ++c_->step_depth_; }
    ~StepGuard() {
      if (--c_->step_depth_ == 0) c_->PublishStep();
    }
    StepGuard(const StepGuard&) = delete;
    StepGuard& operator=(const StepGuard&) = delete;

   private:
    Controller* c_;
  };
  void PublishStep();
  void EmitEvent(const EventRecord& e);

  // Persistence and delivery.
  Status Persist(const std::vector<const InstanceRecord*>& instances,
                 const std::vector<const HostRecord*>& hosts, std::vector<EventRecord> events,
                 const ServiceRecord* service = nullptr);
  void PushDesired(const std::string& host);
  // Pushes the topology first when it changed (SyncTopology), then each host's desired set.
  void PushDesired(const std::set<std::string>& hosts);
  // The topology without its revision, from the instances and hosts in memory.
  v1::TopologyRevision BuildTopology() const;
  // When the topology differs from the last one: bumps and persists the revision (with a
  // "topology" event) and sends it to every connected agent. True when it changed.
  bool SyncTopology();
  void SendTopology(HostRuntime& host);
  v1::InstanceSpec SpecOf(const InstanceRecord& inst) const;
  v1::InstanceInfo InfoOf(const InstanceRecord& inst) const;
  EventRecord MakeEvent(std::string kind, const InstanceRecord* inst, std::string host,
                        std::string message) const;

  const ControllerConfig config_;
  Store& store_;
  Clock& clock_;
  EventListener event_listener_;
  std::map<std::string, HostRuntime> hosts_;
  std::map<std::string, ServiceRuntime> services_;
  std::map<std::string, InstanceRecord> instances_;
  std::map<std::string, std::string> stage_pushed_;  // service -> staging target last pushed
  std::set<std::string> staging_errors_;              // "host/service/version: error" evented
  std::map<std::string, int64_t> failed_at_ms_;  // instance -> detection time (time to heal)
  // instance -> (detected by: event | poll | health_check | host_down, ms from the first evidence
  // (the agent's detection; the host's last heartbeat) to the controller's decision).
  std::map<std::string, std::pair<std::string, int64_t>> detection_;
  std::optional<AllocatorState> alloc_;
  std::map<std::string, UpgradeState> upgrades_;  // service -> its (last) upgrade
  UpgradePolicy upgrade_policy_;
  uint64_t desired_sequence_ = 0;
  int64_t topology_revision_ = 0;
  std::string topology_digest_;         // of BuildTopology() at topology_revision_
  v1::ControllerMessage topology_msg_;  // the latest revision, as sent

  std::vector<ChangeListener> change_listeners_;
  int step_depth_ = 0;
  std::vector<EventRecord> step_events_;  // appended during the current step
  bool locations_dirty_ = true;           // instances were written during the step
  std::map<std::string, InstanceLocation> published_locations_;
};

}  // namespace regen
