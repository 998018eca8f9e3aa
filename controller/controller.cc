#include "controller/controller.h"

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/names.h"
#include "controller/hello_check.h"
#include "controller/host_liveness.h"

namespace regen {

namespace {

using nlohmann::json;

// Every host's tunnel address, and which connected agents run the network (CheckHelloAddress).
KnownAddresses KnownHostAddresses(const ControllerCore& core) {
  KnownAddresses known;
  for (const auto& [name, h] : core.state.hosts()) known.address_of[name] = h.address;
  for (const auto& [name, session] : core.sessions) {
    if (session.sink != nullptr && session.network) known.network_hosts.insert(name);
  }
  return known;
}

}  // namespace

Controller::Controller(const ControllerConfig& config, Store& store, Clock& clock)
    : core_(config, store, clock),
      desired_(core_),
      upgrades_(core_, desired_),
      healer_(core_, desired_, upgrades_),
      moves_(core_, desired_, healer_),
      admin_(core_, desired_, healer_, upgrades_),
      maintenance_(core_),
      host_ops_(core_) {}

Status Controller::Load() {
  RETURN_IF_ERROR(core_.state.Load());
  core_.sessions.clear();
  auto now = core_.clock.Now();
  std::map<std::string, Clock::TimePoint> seed;
  for (const auto& [name, rec] : core_.state.hosts()) {
    core_.sessions[name];
    seed[name] = now;  // host_down_after from now to reconnect
  }
  core_.leases.Seed(seed);
  maintenance_.Load();
  core_.step_events.clear();
  core_.topology_dirty = true;
  EnsureServiceInstances();
  RETURN_IF_ERROR(core_.RebuildAllocator());
  // The topology revision survives a restart. When the state changed after the last revision was
  // stored (a crash between the two writes), SyncTopology below finds another digest and bumps.
  desired_.Reset();
  desired_.SyncTopology();
  int resumed = 0;
  for (const auto& [name, inst] : core_.state.instances()) {
    if (inst.state != InstanceState::kRunning) ++resumed;
  }
  spdlog::info("state loaded: {} hosts, {} services, {} instances ({} not yet running)",
               core_.state.hosts().size(), core_.state.services().size(),
               core_.state.instances().size(), resumed);
  return Status::Ok();
}

void Controller::EnsureServiceInstances() {
  StateChange change;
  for (const auto& [name, svc] : core_.state.services()) {
    for (int64_t i = 0; i < svc.spec.instances; ++i) {
      std::string iname = name + "-" + std::to_string(i);
      if (core_.state.instance(iname)) continue;
      InstanceRecord inst;
      inst.name = iname;
      inst.service = name;
      inst.index = i;
      inst.update_domain = i % svc.spec.update_domains;
      inst.version = upgrades_.VersionForNew(name, inst.update_domain, svc.spec.version);
      inst.state = InstanceState::kPending;
      inst.reason = "not yet placed";
      change.instances.push_back(std::move(inst));
    }
  }
  core_.Commit(std::move(change));
}

std::string Controller::HostState(const std::string& host) const {
  const HostRecord* h = core_.state.host(host);
  return h == nullptr ? "" : HostStateName(h->state);
}

// ---------------------------------------------------------------------------------------------
// Agents

bool Controller::StoreHostRecord(const v1::Hello& hello) {
  const HostRecord* cur = core_.state.host(hello.host());
  bool is_new = cur == nullptr;
  HostRecord h = is_new ? HostRecord{} : *cur;
  std::string old_state = HostStateName(h.state);
  h.name = hello.host();
  h.address = hello.address();
  h.capacity = FromProto(hello.capacity());
  h.last_heartbeat_unix_ms = core_.clock.WallMillis();
  h.applied_topology_revision = hello.applied_topology_revision();
  h.domain_type = hello.domain_type();
  h.domain_type_reason = hello.domain_type_reason();
  if (is_new || h.state == regen::HostState::kDown || h.state == regen::HostState::kSuspect) {
    h.state = is_new ? regen::HostState::kUp : h.held;  // back to what the operator made it
  }
  std::string msg = is_new ? "host joined" : "agent connected";
  if (!is_new && old_state != HostStateName(h.state)) msg += " (was " + old_state + ")";
  msg += " capacity " + DescribeResources(h.capacity);
  if (!h.domain_type.empty()) msg += ", domain type " + h.domain_type;
  spdlog::info("host {} {}: {} domains reported", h.name, msg, hello.domains_size());
  StateChange change;
  change.hosts.push_back(h);
  change.events.push_back(core_.MakeEvent(EventKind::kHostState, nullptr, h.name, msg));
  core_.Commit(std::move(change));
  if (core_.step_store_error) return false;
  Status s = core_.alloc().UpsertHost({h.name, h.state, h.capacity, {}});
  if (!s.ok()) spdlog::error("allocator: host {}: {}", h.name, s.message());
  return true;
}

void Controller::RegisterHost(const v1::Hello& hello, AgentSink* sink) {
  bool stored = StoreHostRecord(hello);
  HostSession& session = core_.sessions[hello.host()];
  auto staged = std::move(session.staged);  // kept across sessions: only changes are news
  session = HostSession{};
  session.staged = std::move(staged);
  session.sink = sink;
  session.etcd_lease_revision = hello.etcd_lease_revision();
  session.network = hello.network();
  session.topology_deltas = hello.topology_deltas();
  if (!stored) {
    session.unregistered = hello;
    spdlog::warn(
        "host {}: its record is not stored (the store refuses writes); its agent is "
        "served and its lease renewed, and it is registered once the store writes",
        hello.host());
  }
}

Status Controller::OnHello(const v1::Hello& hello, AgentSink* sink) {
  StepGuard step(this);
  RETURN_IF_ERROR(ValidateName("hello.host", hello.host()));
  RETURN_IF_ERROR(CheckHello(hello));  // nothing of a bad Hello is stored
  RETURN_IF_ERROR(
      CheckHelloAddress(hello, KnownHostAddresses(core_), core_.config.allow_loopback_hosts));
  RETURN_IF_ERROR(CheckLeaseMode(hello));
  HostSession* existing = core_.session(hello.host());
  if (existing != nullptr && existing->sink != nullptr && existing->sink != sink) {
    // A session whose stream already ended (the lease keeper closed it on the gRPC thread; the
    // main loop hears of it a moment later) is no obstacle: an agent re-says Hello at once after
    // a fence.
    auto lease = core_.leases.Get(hello.host());
    if (lease && lease->sink == existing->sink &&
        SessionIsLive(core_.clock.Now() - lease->last_heartbeat, core_.config)) {
      return FailedPrecondition("host " + hello.host() +
                                " already has a connected agent; a second agent for the same host "
                                "is refused (stop the other one, or fix host_name in agent.yaml)");
    }
    spdlog::warn("host {}: a new agent session replaces a silent one", hello.host());
    existing->sink->Close();
    existing->sink = nullptr;
  }
  RegisterHost(hello, sink);
  healer_.RecreateFenced(hello.host(), BoundFenced(hello.fenced()));
  // The latest topology first (a changed tunnel address makes a new revision for everyone): a new
  // session gets its whole slice, then deltas.
  desired_.ForgetSent(hello.host());
  desired_.SyncTopology();
  if (core_.state.topology_revision() > 0) desired_.SendTopology(hello.host());
  desired_.PushDesired(hello.host());
  v1::DomainsReport report;
  report.set_host(hello.host());
  *report.mutable_domains() = hello.domains();
  *report.mutable_staged() = hello.staged();
  report.set_complete(true);  // a Hello lists every domain of the host
  OnDomainsReport(hello.host(), report);
  healer_.PlacePending();
  // Its heartbeats are acknowledged from now on, after its desired set on the same stream.
  core_.leases.Open(hello.host(), sink);
  return Status::Ok();
}

void Controller::OnHeartbeat(const std::string& host, const v1::Heartbeat& heartbeat,
                             AgentSink* sink) {
  StepGuard step(this);
  core_.leases.OnHeartbeat(host, sink, heartbeat);
  if (auto lease = core_.leases.Get(host)) RecoverIfHeard(host, *lease);
}

void Controller::RecoverIfHeard(const std::string& host, const LeaseKeeper::HostLease& lease) {
  const HostRecord* h = core_.state.host(host);
  const HostSession* session = core_.session(host);
  if (h == nullptr || lease.sink == nullptr || session == nullptr || session->sink != lease.sink) {
    return;
  }
  if (h->state != regen::HostState::kSuspect && h->state != regen::HostState::kDown) return;
  if (!SessionIsLive(core_.clock.Now() - lease.last_heartbeat, core_.config)) return;
  core_.state.NoteHeartbeat(host, lease.last_heartbeat_unix_ms);
  // A down host's instances were healed elsewhere; its desired set already says so, and it goes
  // out before the lease is renewed again (an agent that fenced follows only a new desired set).
  moves_.SetHostState(host, h->held, "heartbeats resumed");
  desired_.PushDesired(host);
  core_.leases.Open(host, lease.sink);
}

void Controller::NoteStaging(const std::string& host, const v1::DomainsReport& report,
                             std::set<std::string>& services) {
  HostSession& h = core_.sessions[host];
  StagingOutcome staging = ClassifyStaging(h.staged, report.staged());
  StateChange change;
  for (const auto& [key, s] : staging.staged) {
    if (staging.changed.count(key.first) && s.error().empty() && !h.staged.count(key)) {
      spdlog::info("host {}: {} version {} staged ({})", host, key.first, key.second, s.image());
    }
  }
  std::vector<std::string> new_errors;
  for (const auto& s : staging.failed) {
    std::string id = host + "/" + s.service() + "/" + s.version() + ": " + s.error();
    if (staging_errors_.count(id)) continue;
    new_errors.push_back(id);
    spdlog::error("host {}: staging {} version {} failed: {}", host, s.service(), s.version(),
                  s.error());
    EventRecord e = core_.MakeEvent(EventKind::kStagingFailed, nullptr, host, s.error());
    e.service = s.service();
    e.json = json{{"kind", EventKindName(e.kind)}, {"service", e.service}, {"host", host},
                  {"version", s.version()},        {"image", s.image()},   {"message", s.error()}}
                 .dump();
    change.events.push_back(std::move(e));
  }
  core_.Commit(std::move(change));
  // Evented once; a refused event is raised again with the next report.
  if (!core_.step_store_error) staging_errors_.insert(new_errors.begin(), new_errors.end());
  h.staged = std::move(staging.staged);
  services.insert(staging.changed.begin(), staging.changed.end());
}

void Controller::ApplyReport(const std::string& host, const ReportOutcome& outcome,
                             std::set<std::string>& services) {
  StateChange change;
  std::set<std::string> touched;
  std::vector<std::string> target_down;  // moves whose new host went down meanwhile
  for (const auto& name : outcome.finished_moves) {
    InstanceRecord inst = FinishMove(*core_.state.instance(name));
    touched.insert(inst.allocation.host);
    change.events.push_back(
        core_.MakeEvent(EventKind::kMoved, &inst, inst.allocation.host,
                        "left " + host + "; creating on " + inst.allocation.host));
    if (core_.IsHostDown(inst.allocation.host)) target_down.push_back(name);
    change.instances.push_back(std::move(inst));
  }
  for (const auto& name : outcome.now_running) {
    InstanceRecord inst = *core_.state.instance(name);
    inst.state = InstanceState::kRunning;
    inst.reason.clear();
    std::string msg = "running on " + host + " generation " + std::to_string(inst.generation);
    if (auto f = core_.failed_at_ms.find(name); f != core_.failed_at_ms.end()) {
      msg += "; healed " + std::to_string(core_.clock.WallMillis() - f->second) +
             " ms after the failure was detected";
      core_.failed_at_ms.erase(f);
    }
    spdlog::info("instance {} {}", name, msg);
    EventRecord e = core_.MakeEvent(EventKind::kRunning, &inst, host, msg);
    e.json = json{
        {"kind", EventKindName(e.kind)},
        {"service", inst.service},
        {"instance", name},
        {"host", host},
        {"generation", inst.generation},
        {"version", inst.version},
        {"ip", inst.allocation.ip},
        {"mac", inst.allocation.mac},
        {"message",
         msg}}.dump();
    change.events.push_back(std::move(e));
    change.instances.push_back(std::move(inst));
  }
  if (!change.empty()) {
    core_.Commit(std::move(change));
    desired_.PushDesired(touched);
  }
  for (const auto& name : outcome.now_running) {
    const std::string service = core_.state.instance(name)->service;
    const UpgradeState* up = core_.state.upgrade(service);
    if (up != nullptr && up->healing_in_progress.count(name)) {
      upgrades_.Feed(service, upgrade_event::HealingDone{name});
    }
    services.insert(service);
  }
  for (const auto& service : services) upgrades_.Drive(service);
  const HostSession& h = core_.sessions[host];
  for (const auto& name : outcome.failed) {
    const auto& d = h.domains.at(name);
    healer_.Heal(name, "domain " + DomainStateWord(d.state()) + " (" + d.reason() + ") on " + host,
                 host);
  }
  // Level-triggered (issue 15 finding 6): a complete report without a running instance's domain,
  // a health verdict whose event never came. Each heals once (the instance leaves Active).
  for (const auto& name : outcome.gone) {
    healer_.Heal(name, "domain missing from the complete report of " + host, host);
  }
  for (const auto& name : outcome.health_failed) {
    OnDomainEvent(host, HealthFailureEvent(host, h.domains.at(name)));
  }
  // The old copy is gone but the new host is down: heal it elsewhere (its down host's instances
  // were healed before this one was Active, so nobody else will).
  for (const auto& name : target_down) {
    const std::string target = core_.state.instance(name)->allocation.host;
    healer_.Heal(name, "host " + target + " went down while " + name + " was moving there", target);
  }
}

void Controller::OnDomainsReport(const std::string& host, const v1::DomainsReport& raw) {
  StepGuard step(this);
  const v1::DomainsReport report = BoundReport(raw);
  HostSession* h = core_.session(host);
  if (h == nullptr) return;
  h->reported = true;
  h->complete = report.complete();
  std::map<std::string, v1::DomainStatus> before;
  before.swap(h->domains);
  for (const auto& d : report.domains()) h->domains[d.name()] = d;
  // Staged images: an upgrade waiting for one may now re-create instances on this host.
  std::set<std::string> services;
  NoteStaging(host, report, services);
  ReportOutcome outcome =
      ClassifyReport(host, before, h->domains, core_.state.instances(), report.complete());
  services.insert(outcome.newly_passed.begin(), outcome.newly_passed.end());
  ApplyReport(host, outcome, services);
}

void Controller::OnDomainEvent(const std::string& host, const v1::DomainEvent& raw) {
  StepGuard step(this);
  const v1::DomainEvent event = BoundEvent(raw);
  const InstanceRecord* inst = core_.state.instance(event.instance());
  if (inst == nullptr) return;
  if (inst->allocation.host != host || inst->generation != event.generation() ||
      !IsActive(inst->state)) {
    spdlog::debug("stale failure of {} generation {} on {} ignored", event.instance(),
                  event.generation(), host);
    return;
  }
  bool by_health = event.detected_by() == v1::DETECTED_BY_HEALTH_CHECK;
  std::string by = event.detected_by() == v1::DETECTED_BY_EVENT  ? "event"
                   : event.detected_by() == v1::DETECTED_BY_POLL ? "poll"
                                                                 : "health check";
  int64_t detected = event.detected_unix_ms();
  if (detected > 0) core_.failed_at_ms[event.instance()] = detected;
  core_.detection[event.instance()] = {
      by_health ? "health_check" : by,
      detected > 0 ? std::max<int64_t>(0, core_.clock.WallMillis() - detected) : 0};
  if (by_health) {
    // An upgraded instance failing its health check counts against the upgrade (which may fail
    // or roll back); then it is healed like any failure.
    const UpgradeState* up = core_.state.upgrade(inst->service);
    auto counted = core_.health_counted.find(inst->name);
    if (up != nullptr && IsActive(*up) && inst->version == up->to_version &&
        up->to_version != up->from_version &&
        (counted == core_.health_counted.end() || counted->second != inst->generation)) {
      core_.health_counted[inst->name] = inst->generation;
      upgrades_.Feed(inst->service, upgrade_event::HealthCheckFailed{inst->name});
    }
  }
  healer_.Heal(event.instance(),
               "domain " + DomainStateWord(event.state()) + " (" + event.reason() + ") on " + host +
                   ", detected by " + by,
               host, by_health);
}

void Controller::OnDisconnect(const std::string& host, AgentSink* sink) {
  core_.leases.Close(host, sink);
  HostSession* h = core_.session(host);
  if (h == nullptr || h->sink != sink) return;
  h->sink = nullptr;
  if (core_.host_leases != nullptr) {
    spdlog::warn(
        "agent of host {} disconnected; its lease is in etcd: down only when etcd "
        "deletes its alive key",
        host);
    return;
  }
  spdlog::warn("agent of host {} disconnected; down after {} ms without heartbeats", host,
               core_.config.host_down_after.count());
}

void Controller::OnTopologyApplied(const std::string& host, const v1::TopologyApplied& applied,
                                   AgentSink* sink) {
  HostSession* h = core_.session(host);
  if (h == nullptr || h->sink != sink) return;
  if (applied.snapshot_needed()) {
    // A delta did not fit what the agent has (it should not happen within one session). Its
    // revision is the agent's latest, not one it applied: not recorded.
    spdlog::warn("host {}: the agent at topology revision {} asked for its whole slice", host,
                 applied.revision());
    desired_.ForgetSent(host);
    desired_.SendTopology(host);
    return;
  }
  // Kept in memory (an agent restates it in every Hello); stored with the host's next write.
  core_.state.NoteAppliedTopology(host, applied.revision());
  spdlog::debug("host {} applied topology revision {} (latest {})", host, applied.revision(),
                core_.state.topology_revision());
}

void Controller::HostDown(const std::string& host, const std::string& why, int64_t evidence_ms) {
  core_.leases.Suspend(host);  // no new lease before it follows a new desired set
  moves_.SetHostState(host, regen::HostState::kDown, why);
  std::vector<std::string> lost;
  std::vector<std::string> target_down;  // moves whose new host is down too
  std::set<std::string> touched;
  StateChange change;
  for (const auto& [iname, inst] : core_.state.instances()) {
    if (inst.moving_from == host) {
      // The old copy is gone: the host fenced itself before host_down_after.
      InstanceRecord next = FinishMove(inst);
      touched.insert(next.allocation.host);
      if (core_.IsHostDown(next.allocation.host)) target_down.push_back(iname);
      change.instances.push_back(std::move(next));
    } else if (inst.allocation.host == host && IsActive(inst.state) && inst.moving_from.empty()) {
      lost.push_back(iname);
    }
  }
  if (!change.empty()) {
    core_.Commit(std::move(change));
    desired_.PushDesired(touched);
  }
  for (const auto& iname : lost) {
    core_.failed_at_ms[iname] = core_.clock.WallMillis();
    core_.detection[iname] = {"host_down", evidence_ms};  // from the first evidence
  }
  if (!lost.empty()) {
    healer_.Heal(lost, "host " + host + " down (" + why + ")", host);
  }
  for (const auto& iname : target_down) {
    const std::string target = core_.state.instance(iname)->allocation.host;
    healer_.Heal(iname, "host " + target + " went down while " + iname + " was moving there",
                 target);
  }
}

void Controller::Tick() {
  StepGuard step(this);
  int64_t now_ms = core_.clock.WallMillis();
  if (core_.resync_needed && now_ms - last_resync_ms_ >= resync_interval_ms_) {
    last_resync_ms_ = now_ms;
    if (ResyncWithStore()) replay_pending_ = true;
  }
  if (replay_pending_ && !core_.resync_needed) ReplayAfterResync();
  if (maintenance_.Expire()) spdlog::info("maintenance over: healing what waited");
  bool maintenance = core_.InMaintenance();
  if (core_.host_leases != nullptr) {
    JudgeByEtcdLeases(maintenance);
  } else {
    JudgeByHeartbeats(maintenance);
  }
  healer_.PlacePending();
  if (!maintenance) upgrades_.DriveAll();  // an upgrade step waits for the maintenance's end
}

bool Controller::DownDeferred(const LeaseKeeper::HostLease* lease, bool maintenance) const {
  // Maintenance: nobody is declared down while it runs, nor before a hold granted during it can
  // have run out (the agent keeps its domains until then).
  return maintenance || (lease != nullptr && lease->hold_bound != Clock::TimePoint{} &&
                         core_.clock.Now() < lease->hold_bound + core_.config.host_down_after);
}

void Controller::JudgeByHeartbeats(bool maintenance) {
  auto now = core_.clock.Now();
  // By name, from a copy: a step below may add sessions or change host records.
  for (const auto& [name, lease] : core_.leases.All()) {
    RecoverIfHeard(name, lease);
    const HostRecord* h = core_.state.host(name);
    if (h == nullptr) continue;
    auto silent = now - lease.last_heartbeat;
    auto silent_ms = std::chrono::duration_cast<std::chrono::milliseconds>(silent).count();
    LivenessVerdict verdict = JudgeHost(h->state, silent, core_.config);
    if (verdict == LivenessVerdict::kDown && DownDeferred(&lease, maintenance)) {
      verdict = h->state == regen::HostState::kUp ? LivenessVerdict::kSuspect
                                                  : LivenessVerdict::kNoChange;
    }
    switch (verdict) {
      case LivenessVerdict::kDown:
        HostDown(name, "no heartbeat for " + std::to_string(silent_ms) + " ms", silent_ms);
        break;
      case LivenessVerdict::kSuspect:
        moves_.SetHostState(name, regen::HostState::kSuspect,
                            "missed a heartbeat (" + std::to_string(silent_ms) + " ms)");
        break;
      case LivenessVerdict::kNoChange:
        break;
    }
  }
}

v1::ListHostsResponse Controller::ListHosts() const {
  v1::ListHostsResponse resp = admin_.ListHosts();
  for (v1::HostInfo& info : *resp.mutable_hosts()) {
    auto lease = core_.leases.Get(info.name());
    if (lease && lease->last_heartbeat_unix_ms > info.last_heartbeat_unix_ms()) {
      info.set_last_heartbeat_unix_ms(lease->last_heartbeat_unix_ms);
    }
  }
  *resp.mutable_maintenance() = maintenance_.Status();
  return resp;
}

// ---------------------------------------------------------------------------------------------
// Change listeners (DNS, notifications)

Status Controller::RecordEvent(EventRecord event) {
  StepGuard step(this);
  if (event.unix_ms == 0) event.unix_ms = core_.clock.WallMillis();
  StateChange change;
  change.events.push_back(std::move(event));
  core_.Commit(std::move(change));
  if (core_.step_store_error) return StepRefusal();
  return Status::Ok();
}

std::map<std::string, InstanceLocation> Controller::Locations() const {
  return LocationsOf(core_.state.instances());
}

std::string Controller::DnsNameOf(const std::string& service) const {
  const ServiceRuntime* svc = core_.state.service(service);
  return svc == nullptr ? "" : svc->spec.dns_name;
}

std::vector<std::string> Controller::ServiceNames() const {
  std::vector<std::string> out;
  for (const auto& [name, svc] : core_.state.services()) out.push_back(name);
  return out;
}

std::map<std::string, std::vector<std::string>> Controller::HostsOf(
    const std::string& service) const {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [name, inst] : core_.state.instances()) {
    if (inst.service != service || inst.state == InstanceState::kPending ||
        inst.allocation.host.empty()) {
      continue;
    }
    out[inst.allocation.host].push_back(name);
  }
  return out;
}

void Controller::PublishStep() {
  ControllerChanges changes;
  // The one "what changed" check (TopologyTracker): a new revision is stored and sent (its event
  // joins this step's), and the services whose locations changed during the step are listed.
  changes.topology_changed = desired_.TakeChangedServices();
  changes.events.swap(core_.step_events);
  changes.topology_revision = core_.state.topology_revision();
  if (change_listeners_.empty()) return;
  if (changes.events.empty() && changes.topology_changed.empty()) return;
  for (const auto& listener : change_listeners_) listener(*this, changes);
}

}  // namespace regen
