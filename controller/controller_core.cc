#include "controller/controller_core.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "controller/topology.h"

namespace regen {

std::string DomainStateWord(v1::DomainState state) {
  std::string name = v1::DomainState_Name(state);
  if (name.rfind("DOMAIN_STATE_", 0) == 0) name = name.substr(13);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

bool Probed(const HealthCheck& check, const std::string& ip) {
  return (check.type == "tcp" || check.type == "http") && check.port > 0 && !ip.empty();
}

bool InDesiredState(const InstanceRecord& inst) {
  return IsActive(inst.state) && inst.moving_from.empty();
}

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

std::vector<EventRecord> ControllerCore::Commit(StateChange change) {
  if (change.empty()) return {};
  if (step_store_error || resync_needed) {
    // The step already lost a write, or memory may differ from the store: nothing is written
    // until the controller has re-read it.
    if (!step_store_error) {
      step_store_error = Unavailable(
          "not tried: the controller has not re-read the store since its last refused write: " +
          outage_error);
    }
    ++outage_refusals;
    return {};
  }
  // Only writes that can change the topology or an instance's location make the next
  // SyncTopology compare the whole state (controller/topology.h).
  bool topology_inputs_written =
      !change.deleted_instances.empty() || !change.deleted_services.empty();
  for (const auto& inst : change.instances) {
    topology_inputs_written |= ChangesTopology(state.instance(inst.name), inst);
  }
  for (const auto& host : change.hosts) {
    topology_inputs_written |= ChangesTopology(state.host(host.name), host);
  }
  const std::vector<std::string> deleted = change.deleted_instances;
  auto committed = state.Commit(std::move(change));
  if (!committed.ok()) {
    OnStoreRefused(committed.status());
    return {};
  }
  std::vector<EventRecord> events = std::move(committed).value();
  ++step_commits;
  for (const auto& name : deleted) {  // what the controller keeps per instance goes with it
    failed_at_ms.erase(name);
    detection.erase(name);
    health_counted.erase(name);
    failure_logged.erase(name);
  }
  if (outage_since_ms != 0) {
    spdlog::info(
        "state store writes again, after {} refused writes over {} ms; what they were "
        "about is replayed from the agents' last reports",
        outage_refusals, clock.WallMillis() - outage_since_ms);
    outage_since_ms = 0;
    outage_refusals = 0;
  }
  if (topology_inputs_written) topology_dirty = true;
  for (const auto& e : events) {
    if (event_listener) event_listener(e);
    step_events.push_back(e);
  }
  return events;
}

void ControllerCore::OnStoreRefused(const Status& status) {
  if (state.FailedWritesAreFatal()) DieOnStoreWriteFailure(status);
  step_store_error = status;
  outage_error = status.message();
  resync_needed = true;
  ++outage_refusals;
  int64_t now = clock.WallMillis();
  if (outage_since_ms == 0) {
    outage_since_ms = now;
    outage_logged_ms = now;
    spdlog::error(
        "state store write failed: {}; nothing of it was applied. The controller stays up: agents' "
        "leases are still renewed (no VM is stopped for this), admin requests that need a write "
        "get UNAVAILABLE, and writes are tried again after the store is re-read",
        status.message());
  } else if (now - outage_logged_ms >= 10000) {
    outage_logged_ms = now;
    spdlog::error("state store still refuses writes ({} refused in {} ms): {}", outage_refusals,
                  now - outage_since_ms, status.message());
  }
}

EventRecord ControllerCore::MakeEvent(EventKind kind, const InstanceRecord* inst, std::string host,
                                      std::string message) const {
  EventRecord e;
  e.unix_ms = clock.WallMillis();
  e.kind = kind;
  if (inst != nullptr) {
    e.service = inst->service;
    e.instance = inst->name;
  }
  e.host = std::move(host);
  e.message = std::move(message);
  e.json = nlohmann::json{{"kind", EventKindName(e.kind)},
                          {"service", e.service},
                          {"instance", e.instance},
                          {"host", e.host},
                          {"message", e.message}}
               .dump();
  return e;
}

Status ControllerCore::RebuildAllocator() {
  std::vector<HostInfo> hosts;
  for (const auto& [name, h] : state.hosts()) hosts.push_back({name, h.state, h.capacity, {}});
  auto built = AllocatorState::Build(hosts, {}, {});
  if (!built.ok()) return built.status();
  for (const auto& [name, inst] : state.instances()) {
    if (inst.allocation.host.empty() || !state.host(inst.allocation.host)) continue;
    Status s = built->Adopt({name, inst.service, inst.update_domain, inst.allocation});
    if (!s.ok()) spdlog::error("allocation of {} not adopted: {}", name, s.message());
  }
  alloc_ = std::move(built).value();
  return Status::Ok();
}

HostSession* ControllerCore::session(const std::string& host) {
  auto it = sessions.find(host);
  return it == sessions.end() ? nullptr : &it->second;
}

const HostSession* ControllerCore::session(const std::string& host) const {
  auto it = sessions.find(host);
  return it == sessions.end() ? nullptr : &it->second;
}

bool ControllerCore::IsHostDown(const std::string& host) const {
  const HostRecord* h = state.host(host);
  return h != nullptr && h->state == HostState::kDown;
}

}  // namespace regen
