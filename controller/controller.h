// The controller: a thin facade that wires its parts and is what the gRPC server (controller/
// server.h) talks to. Agent messages and timers are handled here with the pure pieces
// (host_liveness.h, domain_report.h); the parts do the rest: healer.h (failure -> instance-mode
// allocation -> moves), moves.h (failover, drain), desired_state.h and topology.h (desired sets,
// the topology and its revision), admin_ops.h (regenctl's requests), upgrade_driver.h (rolling
// upgrades). Every state change goes through one write path (cluster_state.h: stored in one
// transaction, then applied to memory). A write the store refuses (a full disk, a held lock)
// does not end the process: the step stops writing, admin requests get UNAVAILABLE, the agents'
// leases are renewed as before, and Tick re-reads the store and replays what the refused steps
// were about (store_outage.cc). Transport-free and not thread-safe: owned by the controller's main
// loop thread.
//
// Health checks: a service's health_check travels in each instance's spec; the agent probes and
// reports each instance's health with its domains, and reports max_failed failed probes in a row
// as a failure detected by health check, healed like a crash. While an upgrade runs, an instance
// of the UD being upgraded counts as upgraded only once it runs the new version and (when it is
// health-checked) a probe of its current generation has passed; a health-check failure of an
// instance running the upgrade's new version counts as HealthCheckFailed for the upgrade.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "controller/admin_ops.h"
#include "controller/controller_core.h"
#include "controller/desired_state.h"
#include "controller/domain_report.h"
#include "controller/healer.h"
#include "controller/host_ops.h"
#include "controller/maintenance_ops.h"
#include "controller/moves.h"
#include "controller/upgrade_driver.h"

namespace regen {

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
  void SetEventListener(EventListener listener) { core_.event_listener = std::move(listener); }
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
  // A heartbeat as the lease keeper takes it (the server calls leases().OnHeartbeat on its gRPC
  // thread instead; Tick notices the host heard again), then what it means for a suspect or
  // down host. For tests and callers on the main loop.
  void OnHeartbeat(const std::string& host, const v1::Heartbeat& heartbeat, AgentSink* sink);
  // The hosts' leases; thread-safe (heartbeats are acknowledged there, on gRPC threads).
  LeaseKeeper& leases() { return core_.leases; }
  void OnDomainsReport(const std::string& host, const v1::DomainsReport& report);
  void OnDomainEvent(const std::string& host, const v1::DomainEvent& event);
  void OnDisconnect(const std::string& host, AgentSink* sink);
  // The agent of `host` applied topology `applied.revision` (recorded for ListHosts).
  void OnTopologyApplied(const std::string& host, const v1::TopologyApplied& applied,
                         AgentSink* sink);
  // Timers: suspect/down hosts, pending placements, moves whose old host went away.
  void Tick();
  // A step threw (a bug): what it left in memory besides the stored state (the allocator, the
  // current step's bookkeeping) cannot be trusted, so the store is re-read before the next
  // write, as after a refused write (store_outage.cc).
  void OnStepException();
  // HA mode: the hosts' leases live in etcd (controller/host_leases.h) and a host is down when
  // etcd deleted its alive key after the last put known of it; heartbeats only carry holds.
  // Set once, before the server starts; null (the default): embedded mode.
  void SetHostLeases(const HostLeaseSource* source) { core_.host_leases = source; }

  // ---- regenctl ----
  Result<v1::ApplyServiceResponse> ApplyService(const v1::ApplyServiceRequest& request);
  v1::ListServicesResponse ListServices() const { return admin_.ListServices(); }
  Result<v1::GetServiceResponse> GetService(const std::string& name) const {
    return admin_.GetService(name);
  }
  Result<v1::ListInstancesResponse> ListInstances(const std::string& service) const {
    return admin_.ListInstances(service);
  }
  v1::ListHostsResponse ListHosts() const;
  Result<v1::FailoverResponse> Failover(const v1::FailoverRequest& request);
  Result<v1::DrainResponse> Drain(const v1::DrainRequest& request);
  // regenctl service delete, host undrain/cordon/uncordon (controller_ops.cc). Undrain and
  // uncordon place pending instances at once (the host may be where they fit).
  Result<v1::DeleteServiceResponse> DeleteService(const v1::DeleteServiceRequest& request);
  Result<v1::HostInfo> ChangeHost(const v1::HostRequest& request, HostVerb verb);
  Result<std::vector<EventRecord>> EventsAfter(int64_t after, int64_t limit) {
    return core_.state.EventsAfter(after, limit);
  }

  // ---- rolling upgrades (controller/upgrade.h holds the rules) ----
  Result<v1::UpgradeStatus> UpgradeStart(const v1::UpgradeStartRequest& request);
  Result<v1::UpgradeStatus> UpgradeGet(const std::string& service) const {
    return upgrades_.Get(service);
  }
  Result<v1::UpgradeStatus> UpgradePause(const v1::UpgradeServiceRequest& request);
  Result<v1::UpgradeStatus> UpgradeResume(const v1::UpgradeServiceRequest& request);
  Result<v1::UpgradeStatus> UpgradeNextUd(const v1::UpgradeServiceRequest& request);
  Result<v1::UpgradeStatus> UpgradeRollback(const v1::UpgradeServiceRequest& request);

  // ---- maintenance of the controller's machine (controller/maintenance_ops.h) ----
  Result<v1::MaintenanceStatus> MaintenanceStart(const v1::MaintenanceStartRequest& request);
  Result<v1::MaintenanceStatus> MaintenanceEnd(const v1::MaintenanceEndRequest& request);
  v1::MaintenanceStatus MaintenanceStatusGet() const { return maintenance_.Status(); }

  // For tests and status.
  const std::map<std::string, InstanceRecord>& instances() const { return core_.state.instances(); }
  // Where each instance is now (instance -> location), for DNS and notifications.
  std::map<std::string, InstanceLocation> Locations() const;
  // The service's network.dns_name ("" when it has none, or for an unknown service).
  std::string DnsNameOf(const std::string& service) const;
  std::vector<std::string> ServiceNames() const;
  // Hosts with placed instances of `service`, and those instances (host -> instance names).
  std::map<std::string, std::vector<std::string>> HostsOf(const std::string& service) const;
  // Sends `message` on the host's agent session; false when the host has none.
  bool SendToHost(const std::string& host, const v1::ControllerMessage& message) const {
    return desired_.SendToHost(host, message);
  }
  int64_t WallMillis() const { return core_.clock.WallMillis(); }
  // The host's state name ("" for an unknown host).
  std::string HostState(const std::string& host) const;
  // The current topology revision (0 before anything was placed) and its content.
  int64_t topology_revision() const { return core_.state.topology_revision(); }
  v1::TopologyRevision Topology() const { return desired_.Topology(); }
  // The desired set the controller would send `host` now.
  std::vector<v1::InstanceSpec> DesiredFor(const std::string& host) const {
    return desired_.DesiredFor(host);
  }
  std::vector<v1::StagedImage> StageFor(const std::string& host) const {
    return desired_.StageFor(host);
  }
  std::string StagingTarget(const std::string& service) const {
    return desired_.StagingTarget(service);
  }
  bool StagedOn(const std::string& host, const std::string& service,
                const std::string& version) const {
    return desired_.StagedOn(host, service, version);
  }

 private:
  // Every public entry point that changes state holds a StepGuard; when the outermost one ends,
  // the step's events and topology changes go to the change listeners.
  class StepGuard {
   public:
    explicit StepGuard(Controller* c) : c_(c) {
      if (c_->step_depth_++ == 0) c_->core_.BeginStep();
    }
    ~StepGuard() {
      if (--c_->step_depth_ == 0) c_->PublishStep();
    }
    StepGuard(const StepGuard&) = delete;
    StepGuard& operator=(const StepGuard&) = delete;

   private:
    Controller* c_;
  };
  void PublishStep();
  // Records instances a service should have but the store lacks (pending).
  void EnsureServiceInstances();
  // Stores a (re)connected host's record and event, then opens its session. When the store
  // refuses, the session remembers the Hello (HostSession::unregistered) for the replay.
  void RegisterHost(const v1::Hello& hello, AgentSink* sink);
  // The host record and event of a Hello; false when the store refused them.
  bool StoreHostRecord(const v1::Hello& hello);

  // ---- a store that refuses writes (store_outage.cc) ----
  // Re-reads the store after a refused write (from Tick, every 500 ms to 2 s): memory is made
  // equal to the store again and the allocator rebuilt. False while it cannot be read.
  bool ResyncWithStore();
  // After a resync: what the refused steps were about is done again from what the agents last
  // said (Hellos not stored, every host's last report as if new), level-triggered like Tick.
  void ReplayAfterResync();
  // UNAVAILABLE naming the store's refusal of this step's write.
  Status StepRefusal() const;
  // A regenctl answer: `result`, or StepRefusal() when the store refused a write of this step.
  template <typename T>
  Result<T> Answer(Result<T> result) const {
    if (core_.step_store_error) return StepRefusal();
    return result;
  }
  void NoteStaging(const std::string& host, const v1::DomainsReport& report,
                   std::set<std::string>& services);
  // Stores the outcome of a report (running instances, finished moves) and heals its failures.
  void ApplyReport(const std::string& host, const ReportOutcome& outcome,
                   std::set<std::string>& services);
  // Declares the host down (`why`: its evidence) and heals its instances elsewhere; `evidence_ms`:
  // from the first evidence to now, for the heal-time figures.
  void HostDown(const std::string& host, const std::string& why, int64_t evidence_ms);
  // Tick's judgement of the hosts: by heartbeat times (embedded) or by their etcd leases (HA,
  // controller/etcd_liveness.cc).
  void JudgeByHeartbeats(bool maintenance);
  void JudgeByEtcdLeases(bool maintenance);
  // A maintenance, or a hold granted during one that may still run, keeps `host` from being
  // declared down.
  bool DownDeferred(const LeaseKeeper::HostLease* lease, bool maintenance) const;
  // HA: an agent keeps its lease in etcd, and it is not known gone; embedded: it does not.
  Status CheckLeaseMode(const v1::Hello& hello) const;
  // A suspect or down host whose agent is heard again on its current session comes back up (a
  // down one gets its desired set, then its lease again).
  void RecoverIfHeard(const std::string& host, const LeaseKeeper::HostLease& lease);

  ControllerCore core_;
  DesiredState desired_;
  UpgradeDriver upgrades_;
  Healer healer_;
  Moves moves_;
  AdminOps admin_;
  MaintenanceOps maintenance_;
  HostOps host_ops_;
  std::set<std::string> staging_errors_;  // "host/service/version: error" evented
  std::vector<ChangeListener> change_listeners_;
  int step_depth_ = 0;
  int64_t last_resync_ms_ = 0;        // the last attempt to re-read the store
  int64_t resync_interval_ms_ = 500;  // between attempts: 500 ms, doubled while refused, <= 2 s
  bool replay_pending_ = false;       // re-read, but the replay has not gone through yet
};

}  // namespace regen
