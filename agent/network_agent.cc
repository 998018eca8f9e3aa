#include "agent/network_agent.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "common/backoff.h"
#include "common/log.h"
#include "common/topology_slices.h"

namespace regen {

namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

ovs::Topology TopologyFromProto(const v1::TopologyRevision& topology) {
  ovs::Topology t;
  t.revision = topology.revision();
  for (const auto& h : topology.hosts()) t.hosts.push_back({h.name(), h.address()});
  for (const auto& i : topology.instances()) {
    ovs::TopologyInstance in;
    in.name = i.name();
    in.service = i.service();
    in.host = i.host();
    in.ip = i.ip();
    in.mac = Lower(i.mac());
    in.generation = i.generation();
    t.instances.push_back(std::move(in));
  }
  return t;
}

NetworkAgent::NetworkAgent(NetworkAgentOptions options, ovs::VSwitch& vswitch, Clock& clock)
    : options_(std::move(options)), vswitch_(vswitch), clock_(clock) {}

NetworkAgent::~NetworkAgent() { Stop(); }

void NetworkAgent::SetAppliedCallback(AppliedCallback callback) {
  MutexLock lock(mu_);
  on_applied_ = std::move(callback);
}

void NetworkAgent::Start() {
  {
    MutexLock lock(mu_);
    stop_ = false;
  }
  worker_ = std::thread([this] { Run(); });
}

void NetworkAgent::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (worker_.joinable()) worker_.join();
}

bool NetworkAgent::Submit(const v1::TopologyRevision& topology) {
  MutexLock lock(mu_);
  const int64_t latest = latest_ ? latest_->revision() : 0;
  const bool whole = topology.base_revision() == 0;
  // A whole slice at the revision this agent has: a new session's first message. Its content is
  // what the controller has now, which may differ from what this revision held here (a controller
  // that reloaded its store after a refused write; one that sent the whole cluster): it replaces
  // it; unchanged content changes no flow.
  const bool same_revision_again = whole && latest_ && topology.revision() == latest;
  if (!same_revision_again && topology.revision() <= latest) {
    spdlog::debug("topology revision {} dropped: revision {} is already known", topology.revision(),
                  latest);
    return false;
  }
  if (!whole && topology.base_revision() != latest) {
    spdlog::warn(
        "topology revision {} is a delta on revision {}, but this agent has revision {}: asking "
        "the controller for this host's whole slice",
        topology.revision(), topology.base_revision(), latest);
    snapshot_needed_ = true;
    return false;
  }
  latest_ = std::make_shared<const v1::TopologyRevision>(
      whole ? topology : ApplyTopologyDelta(*latest_, topology));
  snapshot_needed_ = false;
  // Same revision: the worker syncs its flows to it now, not at the next resync.
  if (same_revision_again) poked_ = true;
  cv_.notify_all();
  return true;
}

bool NetworkAgent::snapshot_needed() const {
  MutexLock lock(mu_);
  return snapshot_needed_;
}

void NetworkAgent::Poke() {
  MutexLock lock(mu_);
  poked_ = true;
  cv_.notify_all();
}

int64_t NetworkAgent::applied_revision() const {
  MutexLock lock(mu_);
  return applied_revision_;
}

int64_t NetworkAgent::latest_revision() const {
  MutexLock lock(mu_);
  return latest_ ? latest_->revision() : 0;
}

Result<int64_t> NetworkAgent::EnsureBridgeAndTunnel(std::vector<ovs::PortInfo>* ports,
                                                    bool* bridge_lost) {
  // Checked from one port listing; created again only when missing or changed (after an OVS
  // restart that lost OVSDB they come back).
  const std::string& bridge = options_.bridge;
  *bridge_lost = false;
  if (auto listed = vswitch_.ListPorts(bridge); listed.ok()) {
    *ports = std::move(listed).value();
  } else if (listed.status().code() == Code::kNotFound) {
    *bridge_lost = true;
    RETURN_IF_ERROR(vswitch_.EnsureBridge(bridge));
  } else {
    return listed.status();
  }
  auto tunnel_it = std::find_if(ports->begin(), ports->end(), [&](const ovs::PortInfo& p) {
    return p.name == options_.tunnel_port;
  });
  auto option = [](const ovs::PortInfo& p, const std::string& key) {
    auto it = p.options.find(key);
    return it == p.options.end() ? std::string() : it->second;
  };
  if (tunnel_it != ports->end() && tunnel_it->type == ovs::PortType::kVxlan &&
      tunnel_it->ofport > 0 && option(*tunnel_it, "remote_ip") == "flow" &&
      option(*tunnel_it, "local_ip") == options_.tunnel_ip) {
    return tunnel_it->ofport;
  }
  ovs::PortSpec tunnel;
  tunnel.name = options_.tunnel_port;
  tunnel.type = ovs::PortType::kVxlan;
  tunnel.remote_ip = "flow";
  tunnel.local_ip = options_.tunnel_ip;
  tunnel.ofport_request = options_.tunnel_ofport;
  ASSIGN_OR_RETURN(ovs::PortInfo tunnel_info, vswitch_.EnsurePort(bridge, tunnel));
  return tunnel_info.ofport;
}

ovs::Topology NetworkAgent::LocalTopology(const v1::TopologyRevision& wire,
                                          const std::vector<ovs::PortInfo>& ports,
                                          NetworkSyncReport* report) const {
  // Instance ports: iface-id first, then attached-mac.
  std::map<std::string, int64_t> by_iface_id;
  std::map<std::string, int64_t> by_mac;
  for (const auto& p : ports) {
    if (p.ofport <= 0 || p.name == options_.tunnel_port) continue;
    if (auto it = p.external_ids.find("iface-id"); it != p.external_ids.end())
      by_iface_id[it->second] = p.ofport;
    if (auto it = p.external_ids.find("attached-mac"); it != p.external_ids.end())
      by_mac[Lower(it->second)] = p.ofport;
  }
  ovs::Topology topology = TopologyFromProto(wire);
  // This host is always part of its own switch's topology, even before it holds an instance.
  if (std::none_of(topology.hosts.begin(), topology.hosts.end(),
                   [&](const ovs::TopologyHost& h) { return h.name == options_.host; })) {
    topology.hosts.push_back(
        {options_.host, options_.tunnel_ip.empty() ? "127.0.0.1" : options_.tunnel_ip});
  }
  std::map<std::string, int64_t> current_generation;
  for (const auto& in : topology.instances) {
    auto& g = current_generation[in.name];
    g = std::max(g, in.generation);
  }
  std::vector<ovs::TopologyInstance> kept;
  for (size_t i = 0; i < topology.instances.size(); ++i) {
    ovs::TopologyInstance in = topology.instances[i];
    const std::string& port_id = wire.instances(static_cast<int>(i)).port();
    if (in.ip.empty() || in.mac.empty()) continue;  // no network: nothing to switch
    if (in.host == options_.host && in.generation == current_generation[in.name]) {
      int64_t ofport = 0;
      if (auto it = by_iface_id.find(port_id.empty() ? in.name : port_id); it != by_iface_id.end())
        ofport = it->second;
      else if (auto m = by_mac.find(in.mac); m != by_mac.end())
        ofport = m->second;
      if (ofport == 0) {
        // Not created yet (or gone): no flows for it until its port appears (Poke / resync).
        report->local_missing.push_back(in.name);
        continue;
      }
      in.ofport = ofport;
      report->local.push_back(in.name);
    }
    kept.push_back(std::move(in));
  }
  topology.instances = std::move(kept);
  return topology;
}

Result<NetworkSyncReport> NetworkAgent::SyncNow() {
  std::shared_ptr<const v1::TopologyRevision> wire;
  int64_t applied = 0;
  {
    MutexLock lock(mu_);
    wire = latest_;
    applied = applied_revision_;
    poked_ = false;
  }
  NetworkSyncReport report;
  report.revision = applied;
  if (!wire) return report;
  auto start = clock_.Now();

  std::vector<ovs::PortInfo> ports;
  bool bridge_lost = false;
  ASSIGN_OR_RETURN(int64_t tunnel_ofport, EnsureBridgeAndTunnel(&ports, &bridge_lost));
  ovs::Topology topology = LocalTopology(*wire, ports, &report);
  ovs::LocalSwitch local{options_.host, tunnel_ofport};
  ASSIGN_OR_RETURN(std::vector<ovs::Flow> desired, ovs::BuildFlowSet(topology, local));

  // Dump, decide, apply in one bundle, verify. A full replace repairs a bridge whose flows were
  // lost or carry a cookie newer than this revision (another writer); a bridge created for the
  // first revision is no repair.
  ovs::SyncOptions sync;
  sync.force_replace = [&](const std::vector<ovs::Flow>& installed) {
    bool foreign = std::any_of(installed.begin(), installed.end(), [&](const ovs::Flow& f) {
      return f.cookie > static_cast<uint64_t>(wire->revision());
    });
    bool flows_lost = installed.empty() && !desired.empty() && applied > 0;
    report.reinstalled = (bridge_lost && applied > 0) || flows_lost || foreign;
    return report.reinstalled;
  };
  Result<ovs::SyncResult> synced = ovs::SyncFlows(vswitch_, options_.bridge, desired, sync);
  if (!synced.ok()) {
    return synced.status().WithContext("topology revision " + std::to_string(wire->revision()));
  }
  report.flows = *synced;
  report.revision = wire->revision();
  report.new_revision = wire->revision() != applied;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now() - start).count();
  if (report.new_revision || report.reinstalled || report.flows.mode != ovs::PlanMode::kInSync) {
    LogApplied(report, ms);
  }
  AppliedCallback callback;
  {
    MutexLock lock(mu_);
    applied_revision_ = std::max(applied_revision_, wire->revision());
    if (report.new_revision) callback = on_applied_;
  }
  if (callback) callback(wire->revision());
  return report;
}

void NetworkAgent::LogApplied(const NetworkSyncReport& report, int64_t ms) const {
  const ovs::SyncResult& f = report.flows;
  spdlog::info(
      "bridge {}: topology revision {} applied in {} ms ({}{}: +{} ~{} -{} of {} flows; {} local "
      "instances, {} without a port yet)",
      options_.bridge, report.revision, ms, ovs::PlanModeName(f.mode),
      report.reinstalled ? ", re-installed after the bridge or its flows were lost" : "", f.added,
      f.modified, f.removed, f.desired, report.local.size(), report.local_missing.size());
}

void NetworkAgent::Run() {
  Backoff retry({options_.retry_initial, options_.resync_interval, 2});
  auto next_resync = std::chrono::steady_clock::now() + options_.resync_interval;
  int64_t failed_revision = -1;
  while (true) {
    {
      MutexLock lock(mu_);
      while (!stop_ && !poked_ &&
             !(latest_ && latest_->revision() != applied_revision_ &&
               latest_->revision() != failed_revision)) {
        if (cv_.wait_until(lock.native(), next_resync) == std::cv_status::timeout) break;
      }
      if (stop_) return;
    }
    auto result = SyncNow();
    if (result.ok()) {
      retry.Reset();
      failed_revision = -1;
      next_resync = std::chrono::steady_clock::now() + options_.resync_interval;
    } else {
      auto wait = retry.Next();
      spdlog::error("network sync failed (retry in {} ms): {}", wait.count(),
                    result.status().message());
      failed_revision = latest_revision();
      next_resync = std::chrono::steady_clock::now() + wait;
    }
  }
}

}  // namespace regen
