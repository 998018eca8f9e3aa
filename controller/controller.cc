#include "controller/controller.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/names.h"

namespace regen {

namespace {

using nlohmann::json;

v1::Resources ToProto(const Resources& r) {
  v1::Resources p;
  p.set_vcpus(r.vcpus);
  p.set_memory_mib(r.memory_mib);
  p.set_disk_gib(r.disk_gib);
  p.set_bandwidth_mbps(r.bandwidth_mbps);
  return p;
}

Resources FromProto(const v1::Resources& p) {
  return {p.vcpus(), p.memory_mib(), p.disk_gib(), p.bandwidth_mbps()};
}

json ResourcesJson(const Resources& r) {
  return {{"vcpus", r.vcpus},
          {"memory_mib", r.memory_mib},
          {"disk_gib", r.disk_gib},
          {"bandwidth_mbps", r.bandwidth_mbps}};
}

Resources Add(Resources a, const Resources& b) {
  a.vcpus += b.vcpus;
  a.memory_mib += b.memory_mib;
  a.disk_gib += b.disk_gib;
  a.bandwidth_mbps += b.bandwidth_mbps;
  return a;
}

// Whether the agent probes instances of a service with `check` at `ip` (agent/health_tracker.h
// decides the same way).
bool Probed(const HealthCheck& check, const std::string& ip) {
  return (check.type == "tcp" || check.type == "http") && check.port > 0 && !ip.empty();
}

bool InDesiredState(const InstanceRecord& inst) {
  return (inst.state == "creating" || inst.state == "running") && inst.moving_from.empty();
}

// States in which an instance occupies its host and can fail there.
bool Active(const InstanceRecord& inst) {
  return inst.state == "creating" || inst.state == "running";
}

// "crashed" for DOMAIN_STATE_CRASHED.
std::string StateWord(v1::DomainState state) {
  std::string name = v1::DomainState_Name(state);
  if (name.rfind("DOMAIN_STATE_", 0) == 0) name = name.substr(13);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

// FNV-1a 64 of `text` as hex: a digest stable across builds (stored in the store's meta).
std::string Digest(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

constexpr char kTopologyRevisionKey[] = "topology_revision";
constexpr char kTopologyDigestKey[] = "topology_digest";

int64_t IndexOf(const std::string& name) {
  size_t dash = name.rfind('-');
  if (dash == std::string::npos) return 0;
  return std::strtoll(name.c_str() + dash + 1, nullptr, 10);
}

}  // namespace

Controller::Controller(const ControllerConfig& config, Store& store, Clock& clock)
    : config_(config), store_(store), clock_(clock) {
  auto policy = ParseManualStepPolicy(config.manual_upgrade_policy);
  upgrade_policy_.manual_policy = policy.ok() ? *policy : ManualStepPolicy::kBlock;
  upgrade_policy_.auto_rollback = config.auto_rollback;
  upgrade_policy_.max_failed_health_checks = config.max_failed_health_checks;
}

Result<ServiceModel> Controller::ModelOf(const ServiceSpec& spec) {
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

Status Controller::Load() {
  ASSIGN_OR_RETURN(StoreSnapshot snap, store_.LoadAll());
  hosts_.clear();
  services_.clear();
  auto now = clock_.Now();
  for (auto& [name, rec] : snap.hosts) {
    HostRuntime h;
    h.record = rec;
    h.last_heartbeat = now;  // every host gets host_down_after from now to reconnect
    hosts_[name] = std::move(h);
  }
  for (auto& [name, rec] : snap.services) {
    auto spec = ParseServiceSpec(rec.spec_yaml, "<stored service " + name + ">");
    if (!spec.ok()) return spec.status().WithContext("store: service " + name);
    auto model = ModelOf(*spec);
    if (!model.ok()) return model.status().WithContext("store: service " + name);
    // The current version is the record's: an upgrade changes it, not the applied YAML.
    if (!rec.version.empty() && spec->versions.count(rec.version)) spec->version = rec.version;
    services_[name] = {rec, *spec, *model};
  }
  upgrades_.clear();
  for (const auto& [key, value] : snap.meta) {
    if (key.rfind("upgrade/", 0) != 0) continue;
    auto state = ParseUpgradeStateJson(value);
    if (!state.ok()) return state.status().WithContext("store: " + key);
    upgrades_[state->service] = *state;
  }
  instances_ = std::move(snap.instances);
  // Nothing is published yet: the first step after a load publishes every topology (DNS and
  // the instances hear the whole picture after a restart).
  published_locations_.clear();
  locations_dirty_ = true;
  EnsureServiceInstances();
  RETURN_IF_ERROR(RebuildAllocator());
  // The topology revision survives a restart. When the state changed after the last revision was
  // stored (a crash between the two writes), SyncTopology below finds another digest and bumps.
  topology_revision_ = 0;
  topology_digest_.clear();
  if (auto it = snap.meta.find(kTopologyRevisionKey); it != snap.meta.end()) {
    topology_revision_ = std::strtoll(it->second.c_str(), nullptr, 10);
  }
  if (auto it = snap.meta.find(kTopologyDigestKey); it != snap.meta.end()) {
    topology_digest_ = it->second;
  } else {
    topology_digest_ = Digest("");  // the empty topology is revision 0
  }
  topology_msg_.Clear();
  *topology_msg_.mutable_topology() = BuildTopology();
  topology_msg_.mutable_topology()->set_revision(topology_revision_);
  SyncTopology();
  int resumed = 0;
  for (const auto& [name, inst] : instances_) {
    if (inst.state != "running") ++resumed;
  }
  spdlog::info("state loaded: {} hosts, {} services, {} instances ({} not yet running)",
               hosts_.size(), services_.size(), instances_.size(), resumed);
  return Status::Ok();
}

Status Controller::RebuildAllocator() {
  std::vector<HostInfo> hosts;
  for (const auto& [name, h] : hosts_) {
    HostInfo info;
    info.name = name;
    auto state = ParseHostState(h.record.state);
    info.state = state.ok() ? *state : HostState::kDown;
    info.capacity = h.record.capacity;
    hosts.push_back(info);
  }
  std::vector<ExistingAllocation> existing;
  for (const auto& [name, inst] : instances_) {
    if (inst.allocation.host.empty() || !hosts_.count(inst.allocation.host)) continue;
    existing.push_back({name, inst.service, inst.update_domain, inst.allocation});
  }
  auto state = AllocatorState::Build(hosts, {}, {});
  if (!state.ok()) return state.status();
  for (const auto& e : existing) {
    Status s = state->Adopt(e);
    if (!s.ok()) spdlog::error("allocation of {} not adopted: {}", e.instance, s.message());
  }
  alloc_ = std::move(state).value();
  return Status::Ok();
}

void Controller::EnsureServiceInstances() {
  for (const auto& [name, svc] : services_) {
    for (int64_t i = 0; i < svc.spec.instances; ++i) {
      std::string iname = name + "-" + std::to_string(i);
      if (instances_.count(iname)) continue;
      InstanceRecord inst;
      inst.name = iname;
      inst.service = name;
      inst.index = i;
      inst.update_domain = i % svc.spec.update_domains;
      inst.version = svc.spec.version;
      inst.state = "pending";
      inst.reason = "not yet placed";
      instances_[iname] = inst;
    }
  }
}

std::string Controller::HostState(const std::string& host) const {
  auto it = hosts_.find(host);
  return it == hosts_.end() ? "" : it->second.record.state;
}

// ---------------------------------------------------------------------------------------------
// Agents

Status Controller::OnHello(const v1::Hello& hello, AgentSink* sink) {
  StepGuard step(this);
  RETURN_IF_ERROR(ValidateName("hello.host", hello.host()));
  auto it = hosts_.find(hello.host());
  if (it != hosts_.end() && it->second.sink != nullptr && it->second.sink != sink) {
    // A session that still heartbeats belongs to a live agent: a second one is refused. A silent
    // one is a dead connection nobody closed (host rebooted, link cut): the newcomer replaces it.
    if (clock_.Now() - it->second.last_heartbeat < config_.heartbeat_interval * 3 / 2) {
      return FailedPrecondition("host " + hello.host() +
                                " already has a connected agent; a second agent for the same host "
                                "is refused (stop the other one, or fix host_name in agent.yaml)");
    }
    spdlog::warn("host {}: a new agent session replaces a silent one", hello.host());
    it->second.sink->Close();
    it->second.sink = nullptr;
  }
  HostRuntime& h = hosts_[hello.host()];
  bool is_new = h.record.name.empty();
  std::string old_state = h.record.state;
  h.record.name = hello.host();
  h.record.address = hello.address();
  h.record.capacity = FromProto(hello.capacity());
  h.record.last_heartbeat_unix_ms = clock_.WallMillis();
  h.record.applied_topology_revision = hello.applied_topology_revision();
  if (is_new || h.record.state == "down" || h.record.state == "suspect") h.record.state = "up";
  h.sink = sink;
  h.last_heartbeat = clock_.Now();
  h.reported = false;
  h.domains.clear();

  HostInfo info;
  info.name = h.record.name;
  info.capacity = h.record.capacity;
  info.state = *ParseHostState(h.record.state);
  Status s = alloc().UpsertHost(info);
  if (!s.ok()) spdlog::error("allocator: host {}: {}", info.name, s.message());

  std::vector<EventRecord> events;
  std::string msg = is_new ? "host joined" : "agent connected";
  if (!is_new && old_state != h.record.state) msg += " (was " + old_state + ")";
  msg += " capacity " + DescribeResources(h.record.capacity);
  events.push_back(MakeEvent("host_state", nullptr, h.record.name, msg));
  spdlog::info("host {} {}: {} domains reported", h.record.name, msg, hello.domains_size());
  RETURN_IF_ERROR(Persist({}, {&h.record}, std::move(events)));
  // The latest topology first (a changed tunnel address makes a new revision for everyone).
  if (!SyncTopology() && topology_revision_ > 0) SendTopology(h);
  PushDesired(hello.host());
  v1::DomainsReport report;
  report.set_host(hello.host());
  *report.mutable_domains() = hello.domains();
  *report.mutable_staged() = hello.staged();
  OnDomainsReport(hello.host(), report);
  PlacePending();
  return Status::Ok();
}

void Controller::OnHeartbeat(const std::string& host, const v1::Heartbeat& heartbeat,
                             AgentSink* sink) {
  StepGuard step(this);
  auto it = hosts_.find(host);
  if (it == hosts_.end() || it->second.sink != sink) return;
  HostRuntime& h = it->second;
  h.last_heartbeat = clock_.Now();
  h.record.last_heartbeat_unix_ms = clock_.WallMillis();
  if (h.record.state == "suspect" || h.record.state == "down") {
    // A down host's instances were healed elsewhere; its desired set already says so.
    SetHostState(h, "up", "heartbeats resumed");
    PushDesired(host);
  }
  v1::ControllerMessage ack;
  ack.mutable_heartbeat_ack()->set_sequence(heartbeat.sequence());
  ack.mutable_heartbeat_ack()->set_heartbeat_interval_ms(config_.heartbeat_interval.count());
  ack.mutable_heartbeat_ack()->set_fencing_lease_ms(config_.fencing_lease.count());
  sink->Send(ack);
}

void Controller::OnDomainsReport(const std::string& host, const v1::DomainsReport& report) {
  StepGuard step(this);
  auto hit = hosts_.find(host);
  if (hit == hosts_.end()) return;
  HostRuntime& h = hit->second;
  h.reported = true;
  std::map<std::string, v1::DomainStatus> before;
  before.swap(h.domains);
  for (const auto& d : report.domains()) h.domains[d.name()] = d;
  // Staged images: an upgrade waiting for one may now re-create instances on this host.
  std::set<std::string> staging_changed;
  {
    std::map<std::pair<std::string, std::string>, v1::StagedImage> staged;
    for (const auto& s : report.staged()) staged[{s.service(), s.version()}] = s;
    for (const auto& [key, s] : staged) {
      auto old = h.staged.find(key);
      if (old == h.staged.end() || old->second.error() != s.error() ||
          old->second.image() != s.image()) {
        staging_changed.insert(key.first);
        if (s.error().empty()) {
          spdlog::info("host {}: {} version {} staged ({})", host, key.first, key.second,
                       s.image());
        }
      }
      std::string id = host + "/" + key.first + "/" + key.second + ": " + s.error();
      if (!s.error().empty() && staging_errors_.insert(id).second) {
        spdlog::error("host {}: staging {} version {} failed: {}", host, key.first, key.second,
                      s.error());
        EventRecord e = MakeEvent("staging_failed", nullptr, host, s.error());
        e.service = key.first;
        e.json = json{{"kind", e.kind},        {"service", e.service}, {"host", host},
                      {"version", key.second}, {"image", s.image()},   {"message", s.error()}}
                     .dump();
        (void)Persist({}, {}, {e});
      }
    }
    h.staged = std::move(staged);
  }
  // Services whose upgrade may now move on: a probe of an instance passed for the first time.
  std::set<std::string> newly_passed;
  for (const auto& [name, d] : h.domains) {
    if (!d.health_passed()) continue;
    auto old = before.find(name);
    if (old != before.end() && old->second.health_passed() &&
        old->second.generation() == d.generation())
      continue;
    auto inst = instances_.find(name);
    if (inst != instances_.end() && inst->second.allocation.host == host) {
      newly_passed.insert(inst->second.service);
    }
  }

  std::vector<std::string> failed;
  std::vector<std::string> healed;       // became running
  std::vector<std::string> target_down;  // moves whose new host went down meanwhile
  std::set<std::string> touched;
  std::vector<const InstanceRecord*> changed;
  std::vector<EventRecord> events;
  for (auto& [name, inst] : instances_) {
    if (inst.moving_from == host && !h.domains.count(name)) {
      FinishMove(inst, touched);
      changed.push_back(&inst);
      events.push_back(MakeEvent("moved", &inst, inst.allocation.host,
                                 "left " + host + "; creating on " + inst.allocation.host));
      if (HostState(inst.allocation.host) == "down") target_down.push_back(name);
      continue;
    }
    if (inst.allocation.host != host || !inst.moving_from.empty()) continue;
    auto d = h.domains.find(name);
    if (d == h.domains.end() || d->second.generation() != inst.generation) continue;
    auto state = d->second.state();
    if (inst.state == "creating" && state == v1::DOMAIN_STATE_RUNNING) {
      inst.state = "running";
      inst.reason.clear();
      std::string msg = "running on " + host + " generation " + std::to_string(inst.generation);
      auto f = failed_at_ms_.find(name);
      if (f != failed_at_ms_.end()) {
        msg += "; healed " + std::to_string(clock_.WallMillis() - f->second) +
               " ms after the failure was detected";
        failed_at_ms_.erase(f);
      }
      healed.push_back(name);
      spdlog::info("instance {} {}", name, msg);
      EventRecord e = MakeEvent("running", &inst, host, msg);
      e.json = json{
          {"kind", e.kind},
          {"service", inst.service},
          {"instance", name},
          {"host", host},
          {"generation", inst.generation},
          {"version", inst.version},
          {"ip", inst.allocation.ip},
          {"mac", inst.allocation.mac},
          {"message",
           msg}}.dump();
      events.push_back(std::move(e));
      changed.push_back(&inst);
    } else if (Active(inst) &&
               (state == v1::DOMAIN_STATE_CRASHED || state == v1::DOMAIN_STATE_SHUTOFF)) {
      failed.push_back(name);
    }
  }
  if (!changed.empty() || !events.empty()) {
    if (Persist(changed, {}, std::move(events)).ok()) PushDesired(touched);
  }
  std::set<std::string> services = std::move(newly_passed);
  services.insert(staging_changed.begin(), staging_changed.end());
  for (const auto& name : healed) {
    const std::string service = instances_[name].service;
    auto up = upgrades_.find(service);
    if (up != upgrades_.end() && up->second.healing_in_progress.count(name)) {
      FeedUpgrade(service, upgrade_event::HealingDone{name});
    }
    services.insert(service);
  }
  for (const auto& service : services) DriveUpgrade(service);
  for (const auto& name : failed) {
    const auto& d = h.domains[name];
    Heal(name, "domain " + StateWord(d.state()) + " (" + d.reason() + ") on " + host, host);
  }
  // The old copy is gone but the new host is down: heal it elsewhere (its down host's instances
  // were healed before this one was Active, so nobody else will).
  for (const auto& name : target_down) {
    const std::string target = instances_[name].allocation.host;
    Heal(name, "host " + target + " went down while " + name + " was moving there", target);
  }
}

void Controller::OnDomainEvent(const std::string& host, const v1::DomainEvent& event) {
  StepGuard step(this);
  auto it = instances_.find(event.instance());
  if (it == instances_.end()) return;
  const InstanceRecord& inst = it->second;
  if (inst.allocation.host != host || inst.generation != event.generation() || !Active(inst)) {
    spdlog::debug("stale failure of {} generation {} on {} ignored", event.instance(),
                  event.generation(), host);
    return;
  }
  std::string by = event.detected_by() == v1::DETECTED_BY_EVENT  ? "event"
                   : event.detected_by() == v1::DETECTED_BY_POLL ? "poll"
                                                                 : "health check";
  if (event.detected_unix_ms() > 0) failed_at_ms_[event.instance()] = event.detected_unix_ms();
  detection_[event.instance()] = {
      event.detected_by() == v1::DETECTED_BY_HEALTH_CHECK ? "health_check" : by,
      event.detected_unix_ms() > 0 ? std::max<int64_t>(0, clock_.WallMillis() -
                                                              event.detected_unix_ms())
                                   : 0};
  if (event.detected_by() == v1::DETECTED_BY_HEALTH_CHECK) {
    // An upgraded instance failing its health check counts against the upgrade (which may fail
    // or roll back); then it is healed like any failure.
    auto up = upgrades_.find(inst.service);
    if (up != upgrades_.end() && IsActive(up->second) && inst.version == up->second.to_version &&
        up->second.to_version != up->second.from_version) {
      FeedUpgrade(inst.service, upgrade_event::HealthCheckFailed{inst.name});
    }
  }
  Heal(event.instance(),
       "domain " + StateWord(event.state()) + " (" + event.reason() + ") on " + host +
           ", detected by " + by,
       host, event.detected_by() == v1::DETECTED_BY_HEALTH_CHECK);
}

void Controller::OnDisconnect(const std::string& host, AgentSink* sink) {
  auto it = hosts_.find(host);
  if (it == hosts_.end() || it->second.sink != sink) return;
  it->second.sink = nullptr;
  spdlog::warn("agent of host {} disconnected; down after {} ms without heartbeats", host,
               config_.host_down_after.count());
}

void Controller::OnTopologyApplied(const std::string& host, const v1::TopologyApplied& applied,
                                   AgentSink* sink) {
  auto it = hosts_.find(host);
  if (it == hosts_.end() || it->second.sink != sink) return;
  // Kept in memory (an agent restates it in every Hello); stored with the host's next write.
  it->second.record.applied_topology_revision = applied.revision();
  spdlog::debug("host {} applied topology revision {} (latest {})", host, applied.revision(),
                topology_revision_);
}

void Controller::SetHostState(HostRuntime& h, const std::string& state, const std::string& why) {
  if (h.record.state == state) return;
  std::string old = h.record.state;
  h.record.state = state;
  Status s = alloc().SetHostState(h.record.name, *ParseHostState(state));
  if (!s.ok()) spdlog::error("allocator: host {}: {}", h.record.name, s.message());
  spdlog::log(state == "up" ? spdlog::level::info : spdlog::level::warn, "host {} {} -> {}: {}",
              h.record.name, old, state, why);
  (void)Persist(
      {}, {&h.record},
      {MakeEvent("host_state", nullptr, h.record.name, old + " -> " + state + ": " + why)});
}

void Controller::Tick() {
  StepGuard step(this);
  auto now = clock_.Now();
  for (auto& [name, h] : hosts_) {
    if (h.record.state == "down") continue;
    auto silent = now - h.last_heartbeat;
    auto silent_ms = std::chrono::duration_cast<std::chrono::milliseconds>(silent).count();
    if (silent > config_.host_down_after) {
      SetHostState(h, "down", "no heartbeat for " + std::to_string(silent_ms) + " ms");
      std::vector<std::string> lost;
      std::vector<std::string> target_down;  // moves whose new host is down too
      std::set<std::string> touched;
      std::vector<const InstanceRecord*> changed;
      for (auto& [iname, inst] : instances_) {
        if (inst.moving_from == name) {
          // The old copy is gone: the host fenced itself before host_down_after.
          FinishMove(inst, touched);
          changed.push_back(&inst);
          if (HostState(inst.allocation.host) == "down") target_down.push_back(iname);
        } else if (inst.allocation.host == name && Active(inst) && inst.moving_from.empty()) {
          lost.push_back(iname);
        }
      }
      if (!changed.empty() && Persist(changed, {}, {}).ok()) PushDesired(touched);
      for (const auto& iname : lost) {
        failed_at_ms_[iname] = clock_.WallMillis();
        detection_[iname] = {"host_down", silent_ms};  // from its last heartbeat
      }
      if (!lost.empty()) {
        Heal(lost, "host " + name + " down (no heartbeat for " + std::to_string(silent_ms) + " ms)",
             name);
      }
      for (const auto& iname : target_down) {
        const std::string target = instances_[iname].allocation.host;
        Heal(iname, "host " + target + " went down while " + iname + " was moving there", target);
      }
    } else if (h.record.state == "up" && silent > config_.heartbeat_interval * 3 / 2) {
      SetHostState(h, "suspect", "missed a heartbeat (" + std::to_string(silent_ms) + " ms)");
    }
  }
  PlacePending();
  DriveUpgrades();
}

void Controller::FinishMove(InstanceRecord& inst, std::set<std::string>& touched) {
  spdlog::info("instance {} left {}; creating it on {}", inst.name, inst.moving_from,
               inst.allocation.host);
  inst.moving_from.clear();
  inst.state = "creating";
  touched.insert(inst.allocation.host);
}

// ---------------------------------------------------------------------------------------------
// Healing

void Controller::Heal(const std::string& instance, const std::string& why,
                      const std::string& failed_host, bool still_running) {
  Heal(std::vector<std::string>{instance}, why, failed_host, still_running);
}

void Controller::Heal(const std::vector<std::string>& names, const std::string& why,
                      const std::string& failed_host, bool still_running) {
  std::map<std::string, std::vector<InstanceRequest>> by_service;
  std::vector<const InstanceRecord*> changed;
  std::vector<EventRecord> events;
  int64_t now_ms = clock_.WallMillis();
  for (const auto& name : names) {
    auto it = instances_.find(name);
    if (it == instances_.end() || !Active(it->second)) continue;
    InstanceRecord& inst = it->second;
    inst.state = "failed";
    inst.reason = why;
    failed_at_ms_.try_emplace(name, now_ms);
    spdlog::warn("instance {} generation {} failed: {}", name, inst.generation, why);
    EventRecord failure = MakeEvent("failure", &inst, failed_host, why);
    if (auto d = detection_.find(name); d != detection_.end()) {
      // How the failure was found and how long that took until this decision (metrics).
      json j = json::parse(failure.json);
      j["detected_by"] = d->second.first;
      j["detection_ms"] = d->second.second;
      failure.json = j.dump();
      detection_.erase(d);
    }
    events.push_back(std::move(failure));
    changed.push_back(&inst);
    by_service[inst.service].push_back({name, inst.update_domain, ""});
  }
  if (changed.empty()) return;
  // During an upgrade: pre-empt it, and heal with the version the DESIGN table gives.
  for (const InstanceRecord* inst : changed) {
    FeedUpgrade(inst->service, upgrade_event::InstanceFailed{inst->name, inst->update_domain});
    auto svc = services_.find(inst->service);
    if (svc == services_.end()) continue;
    auto up = upgrades_.find(inst->service);
    const UpgradeState* active =
        up != upgrades_.end() && IsActive(up->second) ? &up->second : nullptr;
    auto version = VersionForHealing(inst->update_domain, active, svc->second.spec.version);
    if (version.ok() && version->version != inst->version) {
      spdlog::info("instance {} is healed with version {} (was {}): {}", inst->name,
                   version->version, inst->version, version->reason);
      instances_[inst->name].version = version->version;
    }
    if (version.ok() && version->carry_staging()) {
      // Its new host is sent the same stage list as the failed one (StageFor): the image of
      // the upgrade's version is staged there before the upgrade reaches this UD.
      spdlog::info("instance {}: what was staged for version {} on {} is staged on its new host",
                   inst->name, version->carry_staged_version, failed_host);
    }
  }
  if (!Persist(changed, {}, std::move(events)).ok()) return;
  std::set<std::string> touched{failed_host};
  for (const auto& [service, requests] : by_service) {
    auto svc = services_.find(service);
    if (svc == services_.end()) continue;
    auto plan = alloc().PlaceInstances(svc->second.model, requests, {failed_host});
    if (!plan.ok()) {
      spdlog::error("healing {} instances of {}: {}", requests.size(), service,
                    plan.status().message());
      continue;
    }
    // A domain that still runs (failed its health check) is destroyed before its replacement
    // starts: no instance may ever run twice.
    ApplyPlacement(svc->second, *plan, "healing: " + why, touched, still_running);
  }
  PushDesired(touched);
}

void Controller::PlacePending() {
  std::map<std::string, std::vector<InstanceRequest>> by_service;
  for (const auto& [name, inst] : instances_) {
    if (inst.state == "pending" || inst.state == "failed") {
      by_service[inst.service].push_back({name, inst.update_domain, ""});
    }
  }
  if (by_service.empty()) return;
  std::set<std::string> touched;
  for (const auto& [service, requests] : by_service) {
    auto svc = services_.find(service);
    if (svc == services_.end()) continue;
    auto plan = alloc().PlaceInstances(svc->second.model, requests, {});
    if (!plan.ok()) {
      spdlog::error("placing pending instances of {}: {}", service, plan.status().message());
      continue;
    }
    if (plan->placed.empty()) {
      // Still nothing fits: record the reason only when it changed (no event storm).
      std::vector<const InstanceRecord*> changed;
      for (const auto& p : plan->pending) {
        InstanceRecord& inst = instances_[p.name];
        if (inst.state == "pending" && inst.reason == p.reason) continue;
        inst.state = "pending";
        inst.reason = p.reason;
        changed.push_back(&inst);
      }
      if (!changed.empty()) (void)Persist(changed, {}, {});
      continue;
    }
    ApplyPlacement(svc->second, *plan, "placed", touched, false);
  }
  PushDesired(touched);
}

void Controller::ApplyPlacement(const ServiceRuntime& svc, const PlacementPlan& plan,
                                const std::string& why, std::set<std::string>& touched,
                                bool planned_move) {
  std::vector<const InstanceRecord*> changed;
  std::vector<EventRecord> events;
  for (const auto& p : plan.placed) {
    InstanceRecord& inst = instances_[p.name];
    std::string old_host = p.previous ? p.previous->host : inst.allocation.host;
    bool had_run = inst.generation > 0;
    inst.name = p.name;
    inst.service = svc.record.name;
    inst.index = IndexOf(p.name);
    inst.update_domain = p.update_domain;
    if (inst.version.empty()) inst.version = svc.record.version;
    inst.allocation = p.allocation;
    inst.generation = had_run ? inst.generation + 1 : 1;
    inst.reason = why;
    if (planned_move && !old_host.empty()) {
      inst.state = "moving";
      inst.moving_from = old_host;
    } else {
      inst.state = "creating";
      inst.moving_from.clear();
    }
    touched.insert(p.allocation.host);
    if (!old_host.empty()) touched.insert(old_host);
    std::string msg = (old_host.empty() ? "placed on " : "from " + old_host + " to ") +
                      p.allocation.host + ", generation " + std::to_string(inst.generation) + ", " +
                      DescribeResources(p.allocation.resources) +
                      (p.allocation.ip.empty() ? "" : ", ip " + p.allocation.ip) + ", mac " +
                      p.allocation.mac + " (" + why + ")";
    spdlog::info("instance {} {}", p.name, msg);
    EventRecord e =
        MakeEvent(old_host.empty() ? "placement" : "reallocation", &inst, p.allocation.host, msg);
    e.json = json{{"kind", e.kind},
                  {"instance", inst.name},
                  {"service", inst.service},
                  {"old_host", old_host},
                  {"new_host", p.allocation.host},
                  {"generation", inst.generation},
                  {"version", inst.version},
                  {"resources", ResourcesJson(p.allocation.resources)},
                  {"ip", p.allocation.ip},
                  {"mac", p.allocation.mac}}
                 .dump();
    events.push_back(std::move(e));
    changed.push_back(&inst);
  }
  for (const auto& p : plan.pending) {
    InstanceRecord& inst = instances_[p.name];
    inst.name = p.name;
    inst.service = svc.record.name;
    inst.index = IndexOf(p.name);
    inst.update_domain = p.update_domain;
    if (inst.version.empty()) inst.version = svc.record.version;
    inst.state = "pending";
    inst.reason = p.reason;
    spdlog::warn("instance {} pending: {}", p.name, p.reason);
    events.push_back(MakeEvent("pending", &inst, "", p.reason));
    changed.push_back(&inst);
  }
  (void)Persist(changed, {}, std::move(events));
}

// ---------------------------------------------------------------------------------------------
// Persistence and delivery

Status Controller::Persist(const std::vector<const InstanceRecord*>& instances,
                           const std::vector<const HostRecord*>& hosts,
                           std::vector<EventRecord> events, const ServiceRecord* service) {
  std::vector<EventRecord> appended;
  Status s = store_.Transaction([&](StoreTxn& txn) -> Status {
    appended.clear();
    if (service != nullptr) RETURN_IF_ERROR(txn.PutService(*service));
    for (const auto* h : hosts) RETURN_IF_ERROR(txn.PutHost(*h));
    for (const auto* i : instances) RETURN_IF_ERROR(txn.PutInstance(*i));
    for (auto& e : events) {
      ASSIGN_OR_RETURN(e.sequence, txn.AppendEvent(e));
      appended.push_back(e);
    }
    return Status::Ok();
  });
  if (!s.ok()) {
    // The store is the truth: drop what memory holds beyond it and recompute from it.
    spdlog::critical("state store write failed: {}; reloading state from the store", s.message());
    auto sinks = std::map<std::string, AgentSink*>();
    for (auto& [name, h] : hosts_) sinks[name] = h.sink;
    if (Status l = Load(); !l.ok()) spdlog::critical("reload failed: {}", l.message());
    for (auto& [name, sink] : sinks) {
      if (hosts_.count(name)) hosts_[name].sink = sink;
    }
    return s;
  }
  if (!instances.empty()) locations_dirty_ = true;
  for (const auto& e : appended) EmitEvent(e);
  return Status::Ok();
}

std::vector<v1::InstanceSpec> Controller::DesiredFor(const std::string& host) const {
  std::vector<v1::InstanceSpec> out;
  for (const auto& [name, inst] : instances_) {
    if (inst.allocation.host == host && InDesiredState(inst)) out.push_back(SpecOf(inst));
  }
  return out;
}

std::string Controller::StagingTarget(const std::string& service) const {
  auto up = upgrades_.find(service);
  if (up == upgrades_.end() || !IsActive(up->second)) return "";
  const UpgradeState& u = up->second;
  if (u.state == UpgradePhase::kRollingBack || u.state == UpgradePhase::kFailed ||
      u.resume_to == UpgradePhase::kRollingBack) {
    return "";  // going back to what ran there before
  }
  auto svc = services_.find(service);
  if (svc == services_.end()) return "";
  auto v = svc->second.spec.versions.find(u.to_version);
  if (v == svc->second.spec.versions.end() || v->second.image.empty()) return "";
  return u.to_version;
}

std::vector<v1::StagedImage> Controller::StageFor(const std::string& host) const {
  std::set<std::string> services;
  for (const auto& [name, inst] : instances_) {
    if (inst.allocation.host == host && InDesiredState(inst)) services.insert(inst.service);
  }
  std::vector<v1::StagedImage> out;
  for (const auto& service : services) {
    std::string target = StagingTarget(service);
    if (target.empty()) continue;
    v1::StagedImage s;
    s.set_service(service);
    s.set_version(target);
    s.set_image(services_.at(service).spec.versions.at(target).image);
    out.push_back(std::move(s));
  }
  return out;
}

bool Controller::StagedOn(const std::string& host, const std::string& service,
                          const std::string& version) const {
  auto h = hosts_.find(host);
  if (h == hosts_.end()) return false;
  auto s = h->second.staged.find({service, version});
  if (s == h->second.staged.end() || !s->second.error().empty()) return false;
  auto svc = services_.find(service);
  if (svc == services_.end()) return false;
  auto v = svc->second.spec.versions.find(version);
  return v != svc->second.spec.versions.end() && s->second.image() == v->second.image;
}

void Controller::PushDesired(const std::string& host) {
  auto it = hosts_.find(host);
  if (it == hosts_.end() || it->second.sink == nullptr) return;
  v1::ControllerMessage msg;
  auto* action = msg.mutable_action();
  action->set_operation_id("desired-" + host + "-" + std::to_string(++desired_sequence_));
  auto* desired = action->mutable_desired();
  for (auto& spec : DesiredFor(host)) *desired->add_instances() = std::move(spec);
  for (auto& stage : StageFor(host)) *desired->add_stage() = std::move(stage);
  spdlog::debug("desired set for {}: {} instances ({})", host, desired->instances_size(),
                action->operation_id());
  it->second.sink->Send(msg);
}

v1::TopologyRevision Controller::BuildTopology() const {
  v1::TopologyRevision t;
  std::set<std::string> used_hosts;
  for (const auto& [name, inst] : instances_) {
    // Placed and occupying its host (a moving instance's location is already the new host).
    if (inst.allocation.host.empty()) continue;
    if (!Active(inst) && inst.state != "moving") continue;
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
    auto h = hosts_.find(host);
    auto* th = t.add_hosts();
    th->set_name(host);
    if (h != hosts_.end()) th->set_address(h->second.record.address);
  }
  return t;
}

v1::TopologyRevision Controller::Topology() const { return topology_msg_.topology(); }

bool Controller::SyncTopology() {
  v1::TopologyRevision t = BuildTopology();
  std::string content;
  (void)t.SerializeToString(&content);  // no maps: deterministic
  std::string digest = Digest(content);
  if (digest == topology_digest_) return false;
  int64_t revision = topology_revision_ + 1;
  EventRecord e = MakeEvent("topology", nullptr, "",
                            "topology revision " + std::to_string(revision) + ": " +
                                std::to_string(t.instances_size()) + " instances on " +
                                std::to_string(t.hosts_size()) + " hosts");
  e.json = json{{"kind", e.kind},
                {"revision", revision},
                {"instances", t.instances_size()},
                {"hosts", t.hosts_size()}}
               .dump();
  std::vector<EventRecord> appended;
  Status s = store_.Transaction([&](StoreTxn& txn) -> Status {
    appended.clear();
    RETURN_IF_ERROR(txn.SetMeta(kTopologyRevisionKey, std::to_string(revision)));
    RETURN_IF_ERROR(txn.SetMeta(kTopologyDigestKey, digest));
    EventRecord copy = e;
    ASSIGN_OR_RETURN(copy.sequence, txn.AppendEvent(copy));
    appended.push_back(copy);
    return Status::Ok();
  });
  if (!s.ok()) {
    // Never send a revision the store does not hold: a restart would reuse its number.
    spdlog::critical("topology revision {} not stored: {}; not sent", revision, s.message());
    return false;
  }
  topology_revision_ = revision;
  topology_digest_ = digest;
  t.set_revision(revision);
  *topology_msg_.mutable_topology() = std::move(t);
  if (event_listener_) {
    for (const auto& a : appended) event_listener_(a);
  }
  // Every connected agent at once: Send only queues on the session's own writer.
  int sent = 0;
  for (auto& [name, h] : hosts_) {
    if (h.sink == nullptr) continue;
    h.sink->Send(topology_msg_);
    ++sent;
  }
  spdlog::info("topology revision {} ({} instances, {} hosts) sent to {} agents", revision,
               topology_msg_.topology().instances_size(), topology_msg_.topology().hosts_size(),
               sent);
  return true;
}

void Controller::SendTopology(HostRuntime& host) {
  if (host.sink != nullptr) host.sink->Send(topology_msg_);
}

void Controller::PushDesired(const std::set<std::string>& hosts) {
  SyncTopology();
  for (const auto& h : hosts) {
    if (!h.empty()) PushDesired(h);
  }
}

v1::InstanceSpec Controller::SpecOf(const InstanceRecord& inst) const {
  v1::InstanceSpec spec;
  spec.set_name(inst.name);
  spec.set_service(inst.service);
  spec.set_update_domain(inst.update_domain);
  spec.set_version(inst.version);
  spec.set_generation(inst.generation);
  auto svc = services_.find(inst.service);
  if (svc != services_.end()) {
    spec.set_dns_name(svc->second.spec.dns_name);
    auto v = svc->second.spec.versions.find(inst.version);
    if (v != svc->second.spec.versions.end()) {
      spec.set_image(v->second.image);
      spec.set_domain_template(v->second.domain_template);
      for (const auto& [k, val] : v->second.metadata) (*spec.mutable_metadata())[k] = val;
    }
  }
  if (svc != services_.end() && Probed(svc->second.spec.health_check, inst.allocation.ip)) {
    const HealthCheck& c = svc->second.spec.health_check;
    auto* h = spec.mutable_health_check();
    h->set_type(c.type);
    h->set_port(c.port);
    h->set_path(c.path);
    h->set_interval_ms(c.interval.count());
    h->set_timeout_ms(c.timeout.count());
    h->set_max_failed(c.max_failed);
  }
  auto* a = spec.mutable_allocation();
  a->set_host(inst.allocation.host);
  *a->mutable_resources() = ToProto(inst.allocation.resources);
  a->set_ip(inst.allocation.ip);
  a->set_mac(inst.allocation.mac);
  return spec;
}

v1::InstanceInfo Controller::InfoOf(const InstanceRecord& inst) const {
  v1::InstanceInfo info;
  info.set_name(inst.name);
  info.set_service(inst.service);
  info.set_update_domain(inst.update_domain);
  info.set_version(inst.version);
  info.set_host(inst.allocation.host);
  info.set_state(inst.state);
  info.set_generation(inst.generation);
  Resources r = inst.allocation.resources;
  if (inst.allocation.host.empty()) {
    auto svc = services_.find(inst.service);
    if (svc != services_.end()) r = svc->second.spec.flavor;
  }
  *info.mutable_resources() = ToProto(r);
  info.set_ip(inst.allocation.ip);
  info.set_mac(inst.allocation.mac);
  std::string reason = inst.reason;
  if (!inst.moving_from.empty()) reason = "moving from " + inst.moving_from + ": " + reason;
  info.set_reason(reason);
  info.set_health(HealthWord(inst));
  return info;
}

bool Controller::HealthPassed(const InstanceRecord& inst) const {
  auto svc = services_.find(inst.service);
  if (svc == services_.end() || !Probed(svc->second.spec.health_check, inst.allocation.ip)) {
    return true;
  }
  auto h = hosts_.find(inst.allocation.host);
  if (h == hosts_.end()) return false;
  auto d = h->second.domains.find(inst.name);
  return d != h->second.domains.end() && d->second.generation() == inst.generation &&
         d->second.health_passed();
}

std::string Controller::HealthWord(const InstanceRecord& inst) const {
  auto svc = services_.find(inst.service);
  if (svc == services_.end() || !Probed(svc->second.spec.health_check, inst.allocation.ip)) {
    return "none";
  }
  auto h = hosts_.find(inst.allocation.host);
  if (h == hosts_.end()) return "unknown";
  auto d = h->second.domains.find(inst.name);
  if (d == h->second.domains.end() || d->second.generation() != inst.generation) return "unknown";
  switch (d->second.health()) {
    case v1::HEALTH_STATE_PASSING:
      return "passing";
    case v1::HEALTH_STATE_FAILING:
      return "failing";
    default:
      return "unknown";
  }
}

EventRecord Controller::MakeEvent(std::string kind, const InstanceRecord* inst, std::string host,
                                  std::string message) const {
  EventRecord e;
  e.unix_ms = clock_.WallMillis();
  e.kind = std::move(kind);
  if (inst != nullptr) {
    e.service = inst->service;
    e.instance = inst->name;
  }
  e.host = std::move(host);
  e.message = std::move(message);
  e.json = json{{"kind", e.kind},
                {"service", e.service},
                {"instance", e.instance},
                {"host", e.host},
                {"message", e.message}}
               .dump();
  return e;
}

// ---------------------------------------------------------------------------------------------
// regenctl

Result<v1::ApplyServiceResponse> Controller::ApplyService(const v1::ApplyServiceRequest& request) {
  StepGuard step(this);
  std::string file = request.file_name().empty() ? "<request>" : request.file_name();
  ASSIGN_OR_RETURN(ServiceSpec spec, ParseServiceSpec(request.spec_yaml(), file));
  ASSIGN_OR_RETURN(ServiceModel model, ModelOf(spec));
  v1::ApplyServiceResponse resp;
  resp.set_service(spec.name);
  if (!request.operation_id().empty()) {
    ASSIGN_OR_RETURN(auto done, store_.FindOperation(request.operation_id()));
    if (done) {
      for (const auto& [name, inst] : instances_) {
        if (inst.service == spec.name && inst.state == "pending")
          resp.add_pending(name + ": " + inst.reason);
      }
      return resp;  // applied before: nothing happens twice
    }
  }
  auto existing = services_.find(spec.name);
  std::set<std::string> touched;
  std::vector<EventRecord> events;
  std::vector<std::string> removed;
  ServiceRuntime svc;
  if (existing == services_.end()) {
    svc.record = {spec.name, request.spec_yaml(), spec.version, 1};
    svc.spec = spec;
    svc.model = model;
    AllocatorState trial = alloc();
    ASSIGN_OR_RETURN(PlacementPlan plan, trial.PlaceService(model));
    // Persist the service first so ApplyPlacement's records refer to a stored service.
    events.push_back(
        MakeEvent("service", nullptr, "",
                  "service " + spec.name + " created: " + std::to_string(spec.instances) +
                      " instances in " + std::to_string(spec.update_domains) + " update domains, " +
                      DescribeResources(spec.flavor) + " each, version " + spec.version));
    events.back().service = spec.name;
    RETURN_IF_ERROR(Persist({}, {}, std::move(events), &svc.record));
    alloc_ = std::move(trial);
    services_[spec.name] = svc;
    ApplyPlacement(services_[spec.name], plan, "deployed", touched, false);
    resp.set_created(true);
  } else {
    ServiceRuntime& cur = existing->second;
    const ServiceSpec& old = cur.spec;
    auto refuse = [&](const std::string& field, const std::string& from, const std::string& to) {
      return FailedPrecondition(file + ": service " + spec.name + ": changing " + field +
                                " of a deployed service is not supported (\"" + from + "\" -> \"" +
                                to + "\"); only instances, versions, health_check " +
                                "and placement may change; versions roll out with `regenctl "
                                "upgrade start`");
    };
    if (!(old.flavor == spec.flavor))
      return refuse("flavor", DescribeResources(old.flavor), DescribeResources(spec.flavor));
    if (old.subnet != spec.subnet) return refuse("network.subnet", old.subnet, spec.subnet);
    if (old.ip_policy != spec.ip_policy)
      return refuse("network.ip_policy", old.ip_policy, spec.ip_policy);
    if (old.update_domains != spec.update_domains)
      return refuse("update_domains", std::to_string(old.update_domains),
                    std::to_string(spec.update_domains));
    if (old.version != spec.version) return refuse("version", old.version, spec.version);
    if (cur.record.spec_yaml == request.spec_yaml()) return resp;  // unchanged
    ServiceRecord record = cur.record;
    record.spec_yaml = request.spec_yaml();
    record.generation += 1;
    std::vector<InstanceRequest> added;
    for (int64_t i = old.instances; i < spec.instances; ++i) {
      added.push_back({spec.name + "-" + std::to_string(i), i % spec.update_domains, ""});
    }
    for (int64_t i = spec.instances; i < old.instances; ++i) {
      removed.push_back(spec.name + "-" + std::to_string(i));
    }
    events.push_back(MakeEvent("service", nullptr, "",
                               "service " + spec.name +
                                   " updated: " + std::to_string(old.instances) + " -> " +
                                   std::to_string(spec.instances) + " instances"));
    events.back().service = spec.name;
    // Removals: the instance leaves its host's desired set and frees its allocation.
    RETURN_IF_ERROR(store_.Transaction([&](StoreTxn& txn) -> Status {
      RETURN_IF_ERROR(txn.PutService(record));
      for (const auto& name : removed) RETURN_IF_ERROR(txn.DeleteInstance(name));
      for (auto& e : events) {
        ASSIGN_OR_RETURN(e.sequence, txn.AppendEvent(e));
      }
      return Status::Ok();
    }));
    for (const auto& e : events) EmitEvent(e);
    if (!removed.empty()) locations_dirty_ = true;
    for (const auto& name : removed) {
      auto it = instances_.find(name);
      if (it == instances_.end()) continue;
      touched.insert(it->second.allocation.host);
      if (it->second.moving_from.size()) touched.insert(it->second.moving_from);
      (void)alloc().Release(name);
      instances_.erase(it);
    }
    cur.record = record;
    cur.spec = spec;
    cur.model = model;
    if (!added.empty()) {
      ASSIGN_OR_RETURN(PlacementPlan plan, alloc().PlaceInstances(model, added));
      ApplyPlacement(cur, plan, "scaled up", touched, false);
    }
  }
  if (!request.operation_id().empty()) {
    OperationRecord op{request.operation_id(), "deploy",           spec.name, "{}", "done",
                       clock_.WallMillis(),    clock_.WallMillis()};
    spdlog::info("op={} kind=deploy target={}: done", request.operation_id(), spec.name);
    (void)store_.Transaction([&](StoreTxn& txn) { return txn.PutOperation(op); });
  }
  PushDesired(touched);
  for (const auto& [name, inst] : instances_) {
    if (inst.service == spec.name && inst.state == "pending")
      resp.add_pending(name + ": " + inst.reason);
  }
  return resp;
}

v1::ListServicesResponse Controller::ListServices() const {
  v1::ListServicesResponse resp;
  for (const auto& [name, svc] : services_) {
    auto* s = resp.add_services();
    s->set_name(name);
    s->set_instances(svc.spec.instances);
    s->set_update_domains(svc.spec.update_domains);
    s->set_version(svc.spec.version);
    *s->mutable_flavor() = ToProto(svc.spec.flavor);
    s->set_subnet(svc.spec.subnet);
    s->set_dns_name(svc.spec.dns_name);
    int64_t running = 0;
    for (const auto& [iname, inst] : instances_) {
      if (inst.service == name && inst.state == "running") ++running;
    }
    s->set_running(running);
  }
  return resp;
}

Result<v1::GetServiceResponse> Controller::GetService(const std::string& name) const {
  RETURN_IF_ERROR(ValidateName("service", name));
  auto it = services_.find(name);
  if (it == services_.end()) return NotFound("service \"" + name + "\" does not exist");
  v1::GetServiceResponse resp;
  const v1::ListServicesResponse all = ListServices();
  for (const auto& s : all.services()) {
    if (s.name() == name) *resp.mutable_service() = s;
  }
  resp.set_spec_yaml(it->second.record.spec_yaml);
  for (const auto& [iname, inst] : instances_) {
    if (inst.service == name) *resp.add_instances() = InfoOf(inst);
  }
  return resp;
}

Result<v1::ListInstancesResponse> Controller::ListInstances(const std::string& service) const {
  if (!service.empty()) {
    RETURN_IF_ERROR(ValidateName("service", service));
    if (!services_.count(service)) return NotFound("service \"" + service + "\" does not exist");
  }
  v1::ListInstancesResponse resp;
  std::vector<const InstanceRecord*> sorted;
  for (const auto& [name, inst] : instances_) {
    if (service.empty() || inst.service == service) sorted.push_back(&inst);
  }
  std::sort(sorted.begin(), sorted.end(), [](const InstanceRecord* a, const InstanceRecord* b) {
    return a->service != b->service ? a->service < b->service : a->index < b->index;
  });
  for (const auto* inst : sorted) *resp.add_instances() = InfoOf(*inst);
  return resp;
}

v1::ListHostsResponse Controller::ListHosts() const {
  v1::ListHostsResponse resp;
  std::map<std::string, Resources> allocated;
  for (const auto& [name, inst] : instances_) {
    if (!inst.allocation.host.empty())
      allocated[inst.allocation.host] =
          Add(allocated[inst.allocation.host], inst.allocation.resources);
  }
  for (const auto& [name, h] : hosts_) {
    auto* info = resp.add_hosts();
    info->set_name(name);
    info->set_address(h.record.address);
    info->set_state(h.record.state);
    *info->mutable_capacity() = ToProto(h.record.capacity);
    *info->mutable_allocated() = ToProto(allocated[name]);
    info->set_last_heartbeat_unix_ms(h.record.last_heartbeat_unix_ms);
    info->set_applied_topology_revision(h.record.applied_topology_revision);
  }
  return resp;
}

Result<v1::FailoverResponse> Controller::Failover(const v1::FailoverRequest& request) {
  StepGuard step(this);
  RETURN_IF_ERROR(ValidateName("instance", request.instance()));
  if (!request.to_host().empty()) RETURN_IF_ERROR(ValidateName("to_host", request.to_host()));
  auto it = instances_.find(request.instance());
  if (it == instances_.end())
    return NotFound("instance \"" + request.instance() + "\" does not exist");
  v1::FailoverResponse resp;
  if (!request.operation_id().empty()) {
    ASSIGN_OR_RETURN(auto done, store_.FindOperation(request.operation_id()));
    if (done) {
      *resp.mutable_instance() = InfoOf(it->second);
      return resp;
    }
  }
  InstanceRecord& inst = it->second;
  if (inst.state != "running" && inst.state != "creating") {
    return FailedPrecondition("instance " + inst.name + " is " + inst.state +
                              (inst.reason.empty() ? "" : " (" + inst.reason + ")") +
                              "; only a running instance can fail over");
  }
  if (!request.to_host().empty() && request.to_host() == inst.allocation.host) {
    return InvalidArgument("failover " + inst.name + ": --to " + request.to_host() +
                           " is the host it already runs on");
  }
  auto svc = services_.find(inst.service);
  if (svc == services_.end()) return Internal("instance " + inst.name + " has no service");
  AllocatorState trial = alloc();
  ASSIGN_OR_RETURN(PlacementPlan plan,
                   trial.PlaceInstances(svc->second.model,
                                        {{inst.name, inst.update_domain, request.to_host()}}));
  if (plan.placed.empty()) {
    return FailedPrecondition("failover " + inst.name + ": no other host can take it: " +
                              (plan.pending.empty() ? "" : plan.pending[0].reason));
  }
  alloc_ = std::move(trial);
  std::set<std::string> touched;
  ApplyPlacement(svc->second, plan, "failover requested by operator", touched, true);
  if (!request.operation_id().empty()) {
    OperationRecord op{request.operation_id(), "failover",         inst.name, "{}", "done",
                       clock_.WallMillis(),    clock_.WallMillis()};
    spdlog::info("op={} kind=failover target={}: done", request.operation_id(), inst.name);
    (void)store_.Transaction([&](StoreTxn& txn) { return txn.PutOperation(op); });
  }
  PushDesired(touched);
  *resp.mutable_instance() = InfoOf(inst);
  return resp;
}

Result<v1::DrainResponse> Controller::Drain(const v1::DrainRequest& request) {
  StepGuard step(this);
  RETURN_IF_ERROR(ValidateName("host", request.host()));
  auto hit = hosts_.find(request.host());
  if (hit == hosts_.end()) return NotFound("host \"" + request.host() + "\" is not known");
  if (hit->second.record.state == "down") {
    return FailedPrecondition("host " + request.host() +
                              " is down; its instances are healed already");
  }
  SetHostState(hit->second, "draining", "drain requested by operator");
  v1::DrainResponse resp;
  std::set<std::string> touched;
  for (auto& [name, inst] : instances_) {
    if (inst.allocation.host != request.host() || !Active(inst) || !inst.moving_from.empty())
      continue;
    auto svc = services_.find(inst.service);
    if (svc == services_.end()) continue;
    auto plan = alloc().PlaceInstances(svc->second.model, {{name, inst.update_domain, ""}});
    if (!plan.ok() || plan->placed.empty()) {
      std::string why = !plan.ok() ? plan.status().message() : plan->pending[0].reason;
      spdlog::warn("drain {}: {} stays: {}", request.host(), name, why);
      continue;
    }
    ApplyPlacement(svc->second, *plan, "host " + request.host() + " drained", touched, true);
    *resp.add_moved() = InfoOf(inst);
  }
  PushDesired(touched);
  return resp;
}

Result<std::vector<EventRecord>> Controller::EventsAfter(int64_t after, int64_t limit) {
  return store_.EventsAfter(after, limit);
}

// ---------------------------------------------------------------------------------------------
// Change listeners (DNS, notifications)

Status Controller::RecordEvent(EventRecord event) {
  StepGuard step(this);
  if (event.unix_ms == 0) event.unix_ms = clock_.WallMillis();
  return Persist({}, {}, {std::move(event)});
}

void Controller::EmitEvent(const EventRecord& e) {
  if (event_listener_) event_listener_(e);
  if (change_listeners_.empty()) return;
  step_events_.push_back(e);
  if (step_depth_ == 0) PublishStep();  // outside any step (not expected): publish at once
}

std::map<std::string, InstanceLocation> Controller::Locations() const {
  std::map<std::string, InstanceLocation> out;
  for (const auto& [name, inst] : instances_) {
    InstanceLocation& l = out[name];
    l.service = inst.service;
    if (inst.state != "pending") l.host = inst.allocation.host;
    l.ip = inst.allocation.ip;
    l.mac = inst.allocation.mac;
  }
  return out;
}

std::string Controller::DnsNameOf(const std::string& service) const {
  auto it = services_.find(service);
  return it == services_.end() ? "" : it->second.spec.dns_name;
}

std::vector<std::string> Controller::ServiceNames() const {
  std::vector<std::string> out;
  for (const auto& [name, svc] : services_) out.push_back(name);
  return out;
}

std::map<std::string, std::vector<std::string>> Controller::HostsOf(
    const std::string& service) const {
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [name, inst] : instances_) {
    if (inst.service != service || inst.state == "pending" || inst.allocation.host.empty()) {
      continue;
    }
    out[inst.allocation.host].push_back(name);
  }
  return out;
}

bool Controller::SendToHost(const std::string& host, const v1::ControllerMessage& message) const {
  auto it = hosts_.find(host);
  if (it == hosts_.end() || it->second.sink == nullptr) return false;
  it->second.sink->Send(message);
  return true;
}

void Controller::PublishStep() {
  ControllerChanges changes;
  changes.events.swap(step_events_);
  if (locations_dirty_) {
    locations_dirty_ = false;
    std::map<std::string, InstanceLocation> now = Locations();
    for (const auto& [name, loc] : now) {
      auto old = published_locations_.find(name);
      if (old == published_locations_.end() || !(old->second == loc)) {
        changes.topology_changed.insert(loc.service);
      }
    }
    for (const auto& [name, loc] : published_locations_) {
      if (!now.count(name)) changes.topology_changed.insert(loc.service);  // removed
    }
    published_locations_ = std::move(now);
  }
  // The network topology's revision (bumped and stored by SyncTopology as locations change).
  changes.topology_revision = topology_revision_;
  if (changes.events.empty() && changes.topology_changed.empty()) return;
  for (const auto& listener : change_listeners_) listener(*this, changes);
}

// ---------------------------------------------------------------------------------------------
// Rolling upgrades

std::set<std::string> Controller::HealingOf(const std::string& service) const {
  std::set<std::string> out;
  for (const auto& [name, inst] : instances_) {
    if (inst.service != service) continue;
    if (inst.state == "failed" || (inst.state == "pending" && inst.generation > 0) ||
        ((inst.state == "creating" || inst.state == "moving") && failed_at_ms_.count(name))) {
      out.insert(name);
    }
  }
  return out;
}

v1::UpgradeStatus Controller::StatusOf(const UpgradeState& u) const {
  v1::UpgradeStatus st;
  st.set_service(u.service);
  st.set_from_version(u.from_version);
  st.set_to_version(u.to_version);
  st.set_mode(UpgradeModeName(u.mode));
  st.set_state(UpgradePhaseName(u.state));
  st.set_current_ud(u.current_ud);
  for (int64_t ud : u.upgraded_uds) st.add_upgraded_uds(ud);
  for (const auto& name : u.healing_in_progress) st.add_healing_in_progress(name);
  st.set_started_at_unix_ms(u.started_at_unix_ms);
  st.set_updated_at_unix_ms(u.updated_at_unix_ms);
  st.set_message(u.message);
  return st;
}

Status Controller::SaveUpgrade(const UpgradeState& u) {
  EventRecord e =
      MakeEvent("upgrade", nullptr, "", u.message.empty() ? DescribeUpgrade(u) : u.message);
  e.service = u.service;
  e.json = UpgradeStateToJson(u).dump();
  RETURN_IF_ERROR(store_.Transaction([&](StoreTxn& txn) -> Status {
    RETURN_IF_ERROR(txn.SetMeta("upgrade/" + u.service, UpgradeStateToJson(u).dump()));
    ASSIGN_OR_RETURN(e.sequence, txn.AppendEvent(e));
    return Status::Ok();
  }));
  upgrades_[u.service] = u;
  spdlog::info("upgrade: {}", e.message);
  EmitEvent(e);
  return Status::Ok();
}

void Controller::FeedUpgrade(const std::string& service, UpgradeEventKind event) {
  auto it = upgrades_.find(service);
  if (it == upgrades_.end() || !IsActive(it->second)) return;
  auto next = Apply(it->second, {std::move(event), clock_.WallMillis()}, upgrade_policy_);
  if (!next.ok()) {
    spdlog::warn("upgrade of {}: {}", service, next.status().message());
    return;
  }
  if (*next == it->second) return;
  (void)SaveUpgrade(*next);
}

Result<v1::UpgradeStatus> Controller::ApplyUpgradeEvent(const std::string& service,
                                                        UpgradeEventKind event) {
  StepGuard step(this);
  RETURN_IF_ERROR(ValidateName("service", service));
  if (!services_.count(service)) return NotFound("service \"" + service + "\" does not exist");
  auto it = upgrades_.find(service);
  if (it == upgrades_.end()) {
    return FailedPrecondition("service " + service +
                              " has no upgrade (start one with `regenctl upgrade start " + service +
                              " --to-version V`)");
  }
  ASSIGN_OR_RETURN(UpgradeState next,
                   Apply(it->second, {std::move(event), clock_.WallMillis()}, upgrade_policy_));
  if (!(next == it->second)) RETURN_IF_ERROR(SaveUpgrade(next));
  DriveUpgrade(service);
  return StatusOf(upgrades_[service]);
}

Result<v1::UpgradeStatus> Controller::UpgradeStart(const v1::UpgradeStartRequest& request) {
  StepGuard step(this);
  RETURN_IF_ERROR(ValidateName("service", request.service()));
  auto svc = services_.find(request.service());
  if (svc == services_.end()) {
    return NotFound("service \"" + request.service() + "\" does not exist");
  }
  const ServiceSpec& spec = svc->second.spec;
  if (!spec.versions.count(request.to_version())) {
    std::string known;
    for (const auto& [v, unused] : spec.versions) known += (known.empty() ? "" : ", ") + v;
    return InvalidArgument("upgrade start: to_version \"" + request.to_version() +
                           "\" is not a version of service " + request.service() +
                           " (known: " + known + "; add it to the spec and apply it first)");
  }
  if (request.to_version() == spec.version) {
    return FailedPrecondition("service " + request.service() + " already runs version " +
                              spec.version);
  }
  ASSIGN_OR_RETURN(UpgradeMode mode,
                   ParseUpgradeMode(request.mode().empty() ? "auto" : request.mode()));
  if (!request.operation_id().empty()) {
    ASSIGN_OR_RETURN(auto done, store_.FindOperation(request.operation_id()));
    if (done && upgrades_.count(request.service())) return StatusOf(upgrades_[request.service()]);
  }
  upgrade_event::Start start;
  start.service = request.service();
  start.from_version = spec.version;
  start.to_version = request.to_version();
  start.mode = mode;
  start.update_domains = spec.update_domains;
  start.healing_in_progress = HealingOf(request.service());
  UpgradeState current;
  auto it = upgrades_.find(request.service());
  if (it != upgrades_.end()) current = it->second;
  ASSIGN_OR_RETURN(UpgradeState next,
                   Apply(current, {start, clock_.WallMillis()}, upgrade_policy_));
  RETURN_IF_ERROR(SaveUpgrade(next));
  if (!request.operation_id().empty()) {
    OperationRecord op{request.operation_id(), "upgrade",          request.service(), "{}", "done",
                       clock_.WallMillis(),    clock_.WallMillis()};
    spdlog::info("op={} kind=upgrade target={}: done", request.operation_id(), request.service());
    (void)store_.Transaction([&](StoreTxn& txn) { return txn.PutOperation(op); });
  }
  DriveUpgrade(request.service());
  return StatusOf(upgrades_[request.service()]);
}

Result<v1::UpgradeStatus> Controller::UpgradeGet(const std::string& service) const {
  RETURN_IF_ERROR(ValidateName("service", service));
  if (!services_.count(service)) return NotFound("service \"" + service + "\" does not exist");
  auto it = upgrades_.find(service);
  if (it == upgrades_.end()) return NotFound("service " + service + " has never been upgraded");
  return StatusOf(it->second);
}

Result<v1::UpgradeStatus> Controller::UpgradePause(const v1::UpgradeServiceRequest& r) {
  return ApplyUpgradeEvent(r.service(), upgrade_event::Pause{});
}
Result<v1::UpgradeStatus> Controller::UpgradeResume(const v1::UpgradeServiceRequest& r) {
  return ApplyUpgradeEvent(r.service(), upgrade_event::Resume{});
}
Result<v1::UpgradeStatus> Controller::UpgradeNextUd(const v1::UpgradeServiceRequest& r) {
  return ApplyUpgradeEvent(r.service(), upgrade_event::NextUd{r.force()});
}
Result<v1::UpgradeStatus> Controller::UpgradeRollback(const v1::UpgradeServiceRequest& r) {
  return ApplyUpgradeEvent(r.service(), upgrade_event::Rollback{});
}

void Controller::DriveUpgrades() {
  std::vector<std::string> active;
  for (const auto& [service, u] : upgrades_) {
    if (IsActive(u)) active.push_back(service);
  }
  for (const auto& service : active) DriveUpgrade(service);
}

void Controller::DriveUpgrade(const std::string& service) {
  PushStagingIfChanged(service);
  DriveUpgradeSteps(service);
  PushStagingIfChanged(service);  // the upgrade may have ended or turned back
}

void Controller::PushStagingIfChanged(const std::string& service) {
  // The stage list changes when an upgrade starts, turns back or ends: every host of the service
  // hears it at once (images are staged ahead of the UD that needs them, and removed after).
  std::string target = StagingTarget(service);
  if (stage_pushed_[service] == target) return;
  stage_pushed_[service] = target;
  std::set<std::string> hosts;
  for (const auto& [name, inst] : instances_) {
    if (inst.service == service) hosts.insert(inst.allocation.host);
  }
  if (!target.empty()) {
    spdlog::info("upgrade of {}: staging version {} on {} hosts", service, target, hosts.size());
  } else {
    spdlog::info("upgrade of {}: nothing to stage any more on {} hosts", service, hosts.size());
  }
  PushDesired(hosts);
}

void Controller::DriveUpgradeSteps(const std::string& service) {
  for (int step = 0; step < 64; ++step) {
    auto it = upgrades_.find(service);
    auto svc = services_.find(service);
    if (it == upgrades_.end() || svc == services_.end()) return;
    const UpgradeState u = it->second;
    UpgradeAction action = NextAction(u);
    if (action.kind == UpgradeActionKind::kDone) {
      if (u.state == UpgradePhase::kCompleted && svc->second.spec.version != u.to_version) {
        svc->second.spec.version = u.to_version;
        svc->second.record.version = u.to_version;
        (void)Persist({}, {}, {}, &svc->second.record);
        spdlog::info("service {} now runs version {}", service, u.to_version);
      }
      return;
    }
    if (action.kind != UpgradeActionKind::kUpgradeUd &&
        action.kind != UpgradeActionKind::kRollBackUd) {
      return;
    }
    const bool up = action.kind == UpgradeActionKind::kUpgradeUd;
    const std::string& target = up ? u.to_version : u.from_version;
    bool ud_done = true;
    std::vector<const InstanceRecord*> changed;
    std::vector<EventRecord> events;
    std::set<std::string> touched;
    for (auto& [name, inst] : instances_) {
      if (inst.service != service || inst.update_domain != action.ud) continue;
      if (u.healing_in_progress.count(name)) {
        ud_done = false;  // healed with the version the table gives; counted when it runs
        continue;
      }
      if (inst.version != target) {
        ud_done = false;
        if (inst.state != "running" || !inst.moving_from.empty()) continue;
        // Staged first: the new version's image must be on the instance's host.
        if (up && !StagingTarget(service).empty() &&
            !StagedOn(inst.allocation.host, service, target)) {
          continue;
        }
        // Re-created in place with the new version: same host, resources, IP, MAC.
        inst.version = target;
        inst.generation += 1;
        inst.state = "creating";
        inst.reason = (up ? "upgrading to " : "rolling back to ") + target + " (UD " +
                      std::to_string(action.ud) + ")";
        events.push_back(
            MakeEvent(up ? "upgrade_instance" : "rollback_instance", &inst, inst.allocation.host,
                      inst.reason + ", generation " + std::to_string(inst.generation)));
        changed.push_back(&inst);
        touched.insert(inst.allocation.host);
      } else if (inst.state != "running" || (up && !HealthPassed(inst))) {
        ud_done = false;  // upgrading: running is not enough, its first probe must pass
      }
    }
    if (!changed.empty()) {
      if (!Persist(changed, {}, std::move(events)).ok()) return;
      PushDesired(touched);
    }
    if (!ud_done) return;
    UpgradeEventKind done = up ? UpgradeEventKind(upgrade_event::UdInstancesUpgraded{action.ud})
                               : UpgradeEventKind(upgrade_event::RolledBackUd{action.ud});
    auto next = Apply(u, {done, clock_.WallMillis()}, upgrade_policy_);
    if (!next.ok()) {
      spdlog::error("upgrade of {}: {}", service, next.status().message());
      return;
    }
    if (*next == u || !SaveUpgrade(*next).ok()) return;
  }
}

}  // namespace regen
