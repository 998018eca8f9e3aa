#include "controller/desired_state.h"

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "controller/address_pool.h"

namespace regen {

void DesiredState::Reset() {
  tracker_.Reset(core_.state.topology_digest());
  auto t = std::make_shared<v1::TopologyRevision>(
      BuildTopology(core_.state.instances(), core_.state.hosts()));
  t->set_revision(core_.state.topology_revision());
  current_ = TopologyIndex(std::move(t));
  sent_.clear();
  // What connected agents have may not be cut from this state (a re-read after a refused write):
  // the next revision goes whole to every one of them. (At a load nobody is connected yet.)
  whole_to_all_ = false;
  for (const auto& [host, session] : core_.sessions) whole_to_all_ |= session.sink != nullptr;
  changed_services_.clear();
}

std::vector<const InstanceRecord*> DesiredState::DesiredOn(const std::string& host) const {
  std::vector<const InstanceRecord*> out;
  for (const auto& name : core_.state.instances_on(host)) {
    const InstanceRecord* inst = core_.state.instance(name);
    if (InDesiredState(*inst)) out.push_back(inst);
  }
  return out;
}

std::vector<v1::InstanceSpec> DesiredState::DesiredFor(const std::string& host) const {
  std::vector<v1::InstanceSpec> out;
  for (const InstanceRecord* inst : DesiredOn(host)) out.push_back(SpecOf(*inst));
  return out;
}

std::string DesiredState::StagingTarget(const std::string& service) const {
  const UpgradeState* u = core_.state.upgrade(service);
  if (u == nullptr || !IsActive(*u)) return "";
  if (u->state == UpgradePhase::kRollingBack || u->state == UpgradePhase::kFailed ||
      u->resume_to == UpgradePhase::kRollingBack) {
    return "";  // going back to what ran there before
  }
  const ServiceRuntime* svc = core_.state.service(service);
  if (svc == nullptr) return "";
  auto v = svc->spec.versions.find(u->to_version);
  if (v == svc->spec.versions.end() || v->second.image.empty()) return "";
  return u->to_version;
}

std::vector<v1::StagedImage> DesiredState::StageFor(const std::string& host) const {
  std::set<std::string> services;
  for (const InstanceRecord* inst : DesiredOn(host)) services.insert(inst->service);
  std::vector<v1::StagedImage> out;
  for (const auto& service : services) {
    std::string target = StagingTarget(service);
    if (target.empty()) continue;
    v1::StagedImage s;
    s.set_service(service);
    s.set_version(target);
    s.set_image(core_.state.service(service)->spec.versions.at(target).image);
    out.push_back(std::move(s));
  }
  return out;
}

bool DesiredState::StagedOn(const std::string& host, const std::string& service,
                            const std::string& version) const {
  const HostSession* h = core_.session(host);
  if (h == nullptr) return false;
  auto s = h->staged.find({service, version});
  if (s == h->staged.end() || !s->second.error().empty()) return false;
  const ServiceRuntime* svc = core_.state.service(service);
  if (svc == nullptr) return false;
  auto v = svc->spec.versions.find(version);
  return v != svc->spec.versions.end() && s->second.image() == v->second.image;
}

void DesiredState::PushDesired(const std::string& host) {
  const HostSession* h = core_.session(host);
  if (h == nullptr || h->sink == nullptr) return;
  v1::ControllerMessage msg;
  auto* action = msg.mutable_action();
  action->set_operation_id("desired-" + host + "-" + std::to_string(++desired_sequence_));
  auto* desired = action->mutable_desired();
  for (auto& spec : DesiredFor(host)) *desired->add_instances() = std::move(spec);
  for (auto& stage : StageFor(host)) *desired->add_stage() = std::move(stage);
  spdlog::debug("desired set for {}: {} instances ({})", host, desired->instances_size(),
                action->operation_id());
  h->sink->Send(msg);
}

void DesiredState::PushDesired(const std::set<std::string>& hosts) {
  SyncTopology();
  for (const auto& h : hosts) {
    if (!h.empty()) PushDesired(h);
  }
}

bool DesiredState::SyncTopology() {
  if (!core_.topology_dirty) return false;  // nothing it is built from was written
  core_.topology_dirty = false;
  TopologyDelta delta = tracker_.Observe(core_.state.instances(), core_.state.hosts());
  changed_services_.insert(delta.services.begin(), delta.services.end());
  if (!delta.revision_changed) {
    // After a re-read of the store (Reset) the stored revision may be newer than what the agents
    // were sent (a write reported refused that was stored after all): they get it whole now.
    if (whole_to_all_) SendSlices(current_);
    return false;
  }
  const v1::TopologyRevision& t = delta.topology;
  int64_t revision = core_.state.topology_revision() + 1;
  EventRecord e = core_.MakeEvent(EventKind::kTopology, nullptr, "",
                                  "topology revision " + std::to_string(revision) + ": " +
                                      std::to_string(t.instances_size()) + " instances on " +
                                      std::to_string(t.hosts_size()) + " hosts");
  e.json = nlohmann::json{{"kind", EventKindName(e.kind)},
                          {"revision", revision},
                          {"instances", t.instances_size()},
                          {"hosts", t.hosts_size()}}
               .dump();
  StateChange change;
  change.topology = StateChange::Topology{revision, delta.digest};
  change.events.push_back(std::move(e));
  // Stored before it is sent: a restart never reuses a revision number an agent has seen.
  core_.Commit(std::move(change));
  if (core_.step_store_error) {
    core_.topology_dirty = true;  // refused: neither accepted nor sent; tried again later
    return false;
  }
  tracker_.Accept(delta.digest);
  auto next = std::make_shared<v1::TopologyRevision>(std::move(delta.topology));
  next->set_revision(revision);
  TopologyIndex before = std::move(current_);
  current_ = TopologyIndex(std::move(next));
  SendSlices(before);
  return true;
}

void DesiredState::SendSlices(const TopologyIndex& before) {
  int sent = 0;
  int whole = 0;
  uint64_t bytes = 0;
  if (whole_to_all_) {
    whole_to_all_ = false;
    sent_.clear();
    for (const auto& [host, session] : core_.sessions) {
      if (session.sink == nullptr) continue;
      bytes += SendWhole(host, session.sink);
      ++sent;
      ++whole;
    }
  } else {
    for (auto& [host, d] : SliceDeltas(before, current_)) {
      const HostSession* h = core_.session(host);
      if (h == nullptr || h->sink == nullptr) continue;
      ++sent;
      auto s = sent_.find(host);
      if (s == sent_.end() || s->second.sink != h->sink || !h->topology_deltas) {
        // Nothing to build on in this session, or an agent that takes no deltas.
        bytes += SendWhole(host, h->sink);
        ++whole;
        continue;
      }
      // Its slice did not change between what it was sent and `before` (else it would have been
      // sent): the delta applies on top of what it has.
      d.set_base_revision(s->second.revision);
      s->second.revision = current_.revision();
      v1::ControllerMessage msg;
      *msg.mutable_topology() = std::move(d);
      bytes += msg.ByteSizeLong();
      h->sink->Send(msg);  // only queues on the session's own writer
    }
  }
  const v1::TopologyRevision& t = current_.topology();
  spdlog::info(
      "topology revision {} ({} instances, {} hosts): sent to the {} agents whose slice changed "
      "({} whole), {} bytes",
      current_.revision(), t.instances_size(), t.hosts_size(), sent, whole, bytes);
}

uint64_t DesiredState::SendWhole(const std::string& host, AgentSink* sink) {
  v1::ControllerMessage msg;
  *msg.mutable_topology() = current_.SliceFor(host);
  sent_[host] = {sink, current_.revision()};
  sink->Send(msg);
  return msg.ByteSizeLong();
}

void DesiredState::SendTopology(const std::string& host) {
  const HostSession* h = core_.session(host);
  if (h == nullptr || h->sink == nullptr) return;
  auto s = sent_.find(host);
  if (s != sent_.end() && s->second.sink == h->sink && s->second.revision == current_.revision()) {
    return;  // this session has it
  }
  SendWhole(host, h->sink);
}

bool DesiredState::SendToHost(const std::string& host, const v1::ControllerMessage& message) const {
  const HostSession* h = core_.session(host);
  if (h == nullptr || h->sink == nullptr) return false;
  h->sink->Send(message);
  return true;
}

std::set<std::string> DesiredState::TakeChangedServices() {
  SyncTopology();
  std::set<std::string> out;
  out.swap(changed_services_);
  return out;
}

v1::InstanceSpec DesiredState::SpecOf(const InstanceRecord& inst) const {
  v1::InstanceSpec spec;
  spec.set_name(inst.name);
  spec.set_service(inst.service);
  spec.set_update_domain(inst.update_domain);
  spec.set_version(inst.version);
  spec.set_generation(inst.generation);
  const ServiceRuntime* svc = core_.state.service(inst.service);
  if (svc != nullptr) {
    spec.set_dns_name(svc->spec.dns_name);
    if (auto net = AddressPool::ParseSubnet(svc->spec.name, svc->spec.subnet); net.ok()) {
      spec.set_prefix_len(net->prefix_len);
      spec.set_gateway(AddressPool::FormatIp(net->first - 1));
    }
    auto v = svc->spec.versions.find(inst.version);
    if (v != svc->spec.versions.end()) {
      spec.set_image(v->second.image);
      spec.set_domain_template(v->second.domain_template);
      for (const auto& [k, val] : v->second.metadata) (*spec.mutable_metadata())[k] = val;
    }
  }
  if (svc != nullptr && Probed(svc->spec.health_check, inst.allocation.ip)) {
    const HealthCheck& c = svc->spec.health_check;
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

v1::InstanceInfo DesiredState::InfoOf(const InstanceRecord& inst) const {
  v1::InstanceInfo info;
  info.set_name(inst.name);
  info.set_service(inst.service);
  info.set_update_domain(inst.update_domain);
  info.set_version(inst.version);
  info.set_host(inst.allocation.host);
  info.set_state(InstanceStateName(inst.state));
  info.set_generation(inst.generation);
  Resources r = inst.allocation.resources;
  if (inst.allocation.host.empty()) {
    const ServiceRuntime* svc = core_.state.service(inst.service);
    if (svc != nullptr) r = svc->spec.flavor;
  }
  *info.mutable_resources() = ToProto(r);
  info.set_ip(inst.allocation.ip);
  info.set_mac(inst.allocation.mac);
  std::string reason = inst.reason;
  if (!inst.moving_from.empty()) reason = "moving from " + inst.moving_from + ": " + reason;
  info.set_reason(reason);
  info.set_health(HealthWord(inst));
  // Each generation gets a fresh overlay on its version's image (agent/disk_preparer.h): a heal
  // or a move never carries the old disk.
  info.set_disk("none");
  if (const ServiceRuntime* svc = core_.state.service(inst.service); svc != nullptr) {
    auto v = svc->spec.versions.find(inst.version);
    if (v != svc->spec.versions.end() && !v->second.image.empty()) {
      info.set_disk("overlay:" + v->second.image);
    }
  }
  return info;
}

const v1::DomainStatus* DesiredState::ReportedDomain(const InstanceRecord& inst) const {
  const HostSession* h = core_.session(inst.allocation.host);
  if (h == nullptr) return nullptr;
  auto d = h->domains.find(inst.name);
  if (d == h->domains.end() || d->second.generation() != inst.generation) return nullptr;
  return &d->second;
}

bool DesiredState::HealthPassed(const InstanceRecord& inst) const {
  const ServiceRuntime* svc = core_.state.service(inst.service);
  if (svc == nullptr || !Probed(svc->spec.health_check, inst.allocation.ip)) return true;
  const v1::DomainStatus* d = ReportedDomain(inst);
  return d != nullptr && d->health_passed();
}

std::string DesiredState::HealthWord(const InstanceRecord& inst) const {
  const ServiceRuntime* svc = core_.state.service(inst.service);
  if (svc == nullptr || !Probed(svc->spec.health_check, inst.allocation.ip)) return "none";
  const v1::DomainStatus* d = ReportedDomain(inst);
  if (d == nullptr) return "unknown";
  switch (d->health()) {
    case v1::HEALTH_STATE_PASSING:
      return "passing";
    case v1::HEALTH_STATE_FAILING:
      return "failing";
    default:
      return "unknown";
  }
}

}  // namespace regen
