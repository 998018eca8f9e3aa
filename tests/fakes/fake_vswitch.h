// FakeVSwitch: an in-memory VSwitch (ovs/vswitch.h) for unit tests of whatever programs the
// switch (the agent's network worker, SyncFlows). Bridges, ports with ofports, and a flow table
// per bridge that ApplyPlan changes the way ovs-ofctl would (replace, or delete_strict + add by
// key). Test controls simulate OVS being down, a failing bundle, a lost bundle and a foreign
// writer. Header-only; thread-safe (one mutex), although a VSwitch is used from one thread.
#pragma once

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "ovs/vswitch.h"

namespace regen::testing {

class FakeVSwitch : public ovs::VSwitch {
 public:
  Status EnsureBridge(const std::string& bridge) override {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(Check());
    RETURN_IF_ERROR(ovs::ValidateSwitchName("bridge", bridge));
    bridges_.try_emplace(bridge);
    return Status::Ok();
  }

  Status DeleteBridge(const std::string& bridge) override {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(Check());
    RETURN_IF_ERROR(ovs::ValidateSwitchName("bridge", bridge));
    bridges_.erase(bridge);
    return Status::Ok();
  }

  Result<std::vector<std::string>> ListBridges() override {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(Check());
    std::vector<std::string> out;
    for (const auto& [name, b] : bridges_) out.push_back(name);
    return out;
  }

  Result<ovs::PortInfo> EnsurePort(const std::string& bridge, const ovs::PortSpec& spec) override {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(Check());
    RETURN_IF_ERROR(ovs::ValidateSwitchName("bridge", bridge));
    RETURN_IF_ERROR(ovs::ValidatePortSpec(spec));
    ASSIGN_OR_RETURN(Bridge * b, Find(bridge));
    for (const auto& [name, other] : bridges_)
      if (name != bridge && other.ports.count(spec.name))
        return AlreadyExists("bridge " + bridge + " port " + spec.name +
                             ": already a port of bridge " + name);
    if (spec.type == ovs::PortType::kSystem && missing_devices_.count(spec.name))
      return FailedPrecondition("bridge " + bridge + " port " + spec.name +
                                ": Open vSwitch cannot use the interface: could not open network "
                                "device " +
                                spec.name + " (No such device)");
    auto it = b->ports.find(spec.name);
    const bool existed = it != b->ports.end();
    int64_t ofport = existed ? it->second.ofport : 0;
    if (spec.ofport_request != 0) {
      for (const auto& [name, p] : b->ports)
        if (name != spec.name && p.ofport == spec.ofport_request)
          return FailedPrecondition("bridge " + bridge + " port " + spec.name +
                                    ": asked for ofport " + std::to_string(spec.ofport_request) +
                                    " but port " + name + " holds it");
      ofport = spec.ofport_request;
    }
    if (ofport == 0) {
      std::set<int64_t> used;
      for (const auto& [name, p] : b->ports) used.insert(p.ofport);
      for (ofport = 1; used.count(ofport); ++ofport) {
      }
    }
    ovs::PortInfo& p = b->ports[spec.name];
    p.name = spec.name;
    p.type = spec.type;
    p.ovs_type = spec.type == ovs::PortType::kSystem ? "" : ovs::PortTypeName(spec.type);
    p.ofport = ofport;
    p.options.clear();
    if (spec.type == ovs::PortType::kVxlan || spec.type == ovs::PortType::kGeneve) {
      p.options["remote_ip"] = spec.remote_ip;
      if (!spec.local_ip.empty()) p.options["local_ip"] = spec.local_ip;
      if (!spec.key.empty()) p.options["key"] = spec.key;
      if (spec.dst_port != 0) p.options["dst_port"] = std::to_string(spec.dst_port);
    }
    for (const auto& [k, v] : spec.external_ids) p.external_ids[k] = v;
    return p;
  }

  Status RemovePort(const std::string& bridge, const std::string& port) override {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(Check());
    RETURN_IF_ERROR(ovs::ValidateSwitchName("bridge", bridge));
    RETURN_IF_ERROR(ovs::ValidateSwitchName("port", port));
    ASSIGN_OR_RETURN(Bridge * b, Find(bridge));
    b->ports.erase(port);
    return Status::Ok();
  }

  Result<std::vector<ovs::PortInfo>> ListPorts(const std::string& bridge) override {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(Check());
    RETURN_IF_ERROR(ovs::ValidateSwitchName("bridge", bridge));
    ASSIGN_OR_RETURN(Bridge * b, Find(bridge));
    std::vector<ovs::PortInfo> out;
    for (const auto& [name, p] : b->ports) out.push_back(p);
    return out;
  }

  Result<std::vector<ovs::Flow>> DumpFlows(const std::string& bridge) override {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(Check());
    RETURN_IF_ERROR(ovs::ValidateSwitchName("bridge", bridge));
    ASSIGN_OR_RETURN(Bridge * b, Find(bridge));
    ++dumps_;
    std::vector<ovs::Flow> out;
    for (const auto& [key, f] : b->flows) out.push_back(f);
    std::sort(out.begin(), out.end(), ovs::FlowLess);
    return out;
  }

  Status ApplyPlan(const std::string& bridge, const ovs::FlowPlan& plan) override {
    MutexLock lock(mu_);
    RETURN_IF_ERROR(Check());
    RETURN_IF_ERROR(ovs::ValidateSwitchName("bridge", bridge));
    ASSIGN_OR_RETURN(Bridge * b, Find(bridge));
    if (fail_next_apply_) {
      Status s = *fail_next_apply_;
      fail_next_apply_.reset();
      return s;
    }
    applied_modes_.push_back(plan.mode);
    if (lose_next_apply_) {
      lose_next_apply_ = false;
      return Status::Ok();
    }
    if (plan.mode == ovs::PlanMode::kReplace) {
      b->flows.clear();
      for (const auto& f : plan.desired) b->flows[f.Key()] = f;
    } else if (plan.mode == ovs::PlanMode::kIncremental) {
      for (const auto& f : plan.remove) b->flows.erase(f.Key());
      for (const auto* list : {&plan.modify, &plan.add})
        for (const auto& f : *list) b->flows[f.Key()] = f;
    }
    return Status::Ok();
  }

  // Test controls.
  // Every call fails with UNAVAILABLE (OVS stopped) until set back; state is kept.
  void SetDown(bool down) {
    MutexLock lock(mu_);
    down_ = down;
  }
  // The next ApplyPlan fails with `status` and changes nothing.
  void FailNextApply(Status status) {
    MutexLock lock(mu_);
    fail_next_apply_ = std::move(status);
  }
  // The next ApplyPlan reports success but changes nothing (what verification must catch).
  void LoseNextApply() {
    MutexLock lock(mu_);
    lose_next_apply_ = true;
  }
  // EnsurePort of a system port with this name fails as if the device did not exist.
  void SetDeviceMissing(const std::string& name) {
    MutexLock lock(mu_);
    missing_devices_.insert(name);
  }
  // Another OpenFlow client adds (or replaces by key) a flow.
  void InjectFlow(const std::string& bridge, const ovs::Flow& flow) {
    MutexLock lock(mu_);
    bridges_[bridge].flows[flow.Key()] = flow;
  }
  // Simulates an OVS restart without a persisted flow table: flows gone, ports kept.
  void ClearFlows(const std::string& bridge) {
    MutexLock lock(mu_);
    bridges_[bridge].flows.clear();
  }
  // The modes of every ApplyPlan that reached the table (or was lost), in order.
  std::vector<ovs::PlanMode> applied_modes() const {
    MutexLock lock(mu_);
    return applied_modes_;
  }
  int dumps() const {
    MutexLock lock(mu_);
    return dumps_;
  }

 private:
  struct Bridge {
    std::map<std::string, ovs::PortInfo> ports;
    std::map<std::string, ovs::Flow> flows;  // by Flow::Key(), as OpenFlow identifies them
  };

  Status Check() const REQUIRES(mu_) {
    if (down_) return Unavailable("fake vswitch is down (ovsdb-server / ovs-vswitchd not running)");
    return Status::Ok();
  }

  Result<Bridge*> Find(const std::string& bridge) REQUIRES(mu_) {
    auto it = bridges_.find(bridge);
    if (it == bridges_.end()) return NotFound("bridge " + bridge + ": no bridge named " + bridge);
    return &it->second;
  }

  mutable Mutex mu_;
  std::map<std::string, Bridge> bridges_ GUARDED_BY(mu_);
  std::set<std::string> missing_devices_ GUARDED_BY(mu_);
  std::optional<Status> fail_next_apply_ GUARDED_BY(mu_);
  bool lose_next_apply_ GUARDED_BY(mu_) = false;
  bool down_ GUARDED_BY(mu_) = false;
  std::vector<ovs::PlanMode> applied_modes_ GUARDED_BY(mu_);
  int dumps_ GUARDED_BY(mu_) = 0;
};

}  // namespace regen::testing
