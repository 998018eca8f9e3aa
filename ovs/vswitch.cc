#include "ovs/vswitch.h"

#include <cctype>
#include <unordered_map>

#include "common/names.h"

namespace regen::ovs {
namespace {

constexpr size_t kMaxInterfaceName = 15;  // IFNAMSIZ - 1

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
}

bool IsDigits(std::string_view s) {
  if (s.empty() || s.size() > 10) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

Status ValidateTunnelIp(const std::string& port, std::string_view option, std::string_view value,
                        bool required) {
  if (value.empty() && !required) return Status::Ok();
  if (value == "flow" || IsValidIpv4(value)) return Status::Ok();
  return InvalidArgument("port " + QuoteValue(port) + " options:" + std::string(option) + ": " +
                         QuoteValue(value) +
                         " is neither \"flow\" nor a dotted IPv4 address (e.g. 192.168.100.2)");
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

}  // namespace

const char* PortTypeName(PortType type) {
  switch (type) {
    case PortType::kSystem:
      return "system";
    case PortType::kInternal:
      return "internal";
    case PortType::kVxlan:
      return "vxlan";
    case PortType::kGeneve:
      return "geneve";
  }
  return "unknown";
}

Status ValidateSwitchName(std::string_view what, std::string_view name) {
  bool ok = !name.empty() && name.size() <= kMaxInterfaceName && name != "." && name != ".." &&
            std::isalnum(static_cast<unsigned char>(name[0]));
  for (char c : name) ok = ok && IsNameChar(c);
  if (ok) return Status::Ok();
  return InvalidArgument(std::string(what) + " " + QuoteValue(name) +
                         ": invalid name (1-15 characters of [A-Za-z0-9_.-] starting with a letter "
                         "or digit, e.g. br-int or vnet0)");
}

Status ValidatePortSpec(const PortSpec& port) {
  RETURN_IF_ERROR(ValidateSwitchName("port", port.name));
  if (port.ofport_request < 0 || port.ofport_request > 0xfeff)
    return InvalidArgument("port " + QuoteValue(port.name) + " ofport_request " +
                           std::to_string(port.ofport_request) +
                           " out of range (1..65279, 0 = let OVS choose)");
  const bool tunnel = port.type == PortType::kVxlan || port.type == PortType::kGeneve;
  if (tunnel) {
    RETURN_IF_ERROR(ValidateTunnelIp(port.name, "remote_ip", port.remote_ip, true));
    RETURN_IF_ERROR(ValidateTunnelIp(port.name, "local_ip", port.local_ip, false));
    if (!port.key.empty() && port.key != "flow" &&
        !(IsDigits(port.key) && std::stoull(port.key) < (1ull << 24)))
      return InvalidArgument("port " + QuoteValue(port.name) +
                             " options:key: " + QuoteValue(port.key) +
                             " is neither \"flow\" nor a number below 2^24 (VNI)");
    if (port.dst_port < 0 || port.dst_port > 65535)
      return InvalidArgument("port " + QuoteValue(port.name) + " options:dst_port " +
                             std::to_string(port.dst_port) +
                             " out of range (1..65535, 0 = default)");
  } else if (!port.local_ip.empty() || !port.key.empty() || port.dst_port != 0) {
    return InvalidArgument("port " + QuoteValue(port.name) + " is of type " +
                           PortTypeName(port.type) +
                           ": local_ip, key and dst_port apply to vxlan and geneve ports only");
  }
  for (const auto& [key, value] : port.external_ids) {
    bool ok = !key.empty();
    for (char c : key)
      ok = ok && (std::islower(static_cast<unsigned char>(c)) ||
                  std::isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '-');
    if (!ok)
      return InvalidArgument("port " + QuoteValue(port.name) + " external_ids key " +
                             QuoteValue(key) + ": invalid (expected [a-z0-9_-]+, e.g. iface-id)");
    for (char c : value)
      if (c < 0x20 || c > 0x7e)
        return InvalidArgument("port " + QuoteValue(port.name) + " external_ids:" + key + " " +
                               QuoteValue(value) + ": only printable ASCII is allowed");
  }
  return Status::Ok();
}

std::string DescribeFlowDifference(const std::vector<Flow>& desired,
                                   const std::vector<Flow>& installed, size_t limit) {
  std::unordered_map<std::string, const Flow*> have;
  for (const auto& f : installed) have.emplace(f.Key(), &f);
  std::unordered_map<std::string, const Flow*> want;
  std::vector<std::string> missing;
  std::vector<std::string> different;
  size_t n_missing = 0;
  size_t n_different = 0;
  for (const auto& f : desired) {
    want.emplace(f.Key(), &f);
    auto it = have.find(f.Key());
    if (it == have.end()) {
      if (n_missing++ < limit) missing.push_back(f.ToString());
    } else if (it->second->actions != f.actions) {
      if (n_different++ < limit)
        different.push_back(f.Key() + " actions=" + it->second->actions + " (want " + f.actions +
                            ")");
    }
  }
  std::vector<std::string> unexpected;
  size_t n_unexpected = 0;
  for (const auto& f : installed)
    if (!want.count(f.Key()) && n_unexpected++ < limit) unexpected.push_back(f.ToString());
  std::string out;
  auto part = [&](const char* label, size_t n, const std::vector<std::string>& items) {
    if (n == 0) return;
    if (!out.empty()) out += "; ";
    out += std::to_string(n) + " " + label + ": " + Join(items) + (n > items.size() ? ", ..." : "");
  };
  part("missing", n_missing, missing);
  part("unexpected", n_unexpected, unexpected);
  part("with other actions", n_different, different);
  return out;
}

Result<SyncResult> SyncFlows(VSwitch& vswitch, const std::string& bridge,
                             const std::vector<Flow>& desired, const SyncOptions& options) {
  ASSIGN_OR_RETURN(std::vector<Flow> installed, vswitch.DumpFlows(bridge));
  PlanOptions plan_options = options.plan;
  if (options.force_replace && options.force_replace(installed)) {
    plan_options.max_incremental_changes = 0;
    plan_options.max_incremental_fraction = 0;
  }
  FlowPlan plan = PlanFlowChanges(desired, installed, plan_options);
  SyncResult result;
  result.mode = plan.mode;
  result.added = plan.add.size();
  result.modified = plan.modify.size();
  result.removed = plan.remove.size();
  result.cookie_only = plan.cookie_only;
  result.installed_before = installed.size();
  result.desired = plan.desired.size();
  if (plan.mode == PlanMode::kInSync) return result;  // nothing applied, nothing to verify
  RETURN_IF_ERROR(vswitch.ApplyPlan(bridge, plan));
  if (!options.verify) return result;
  ASSIGN_OR_RETURN(std::vector<Flow> after, vswitch.DumpFlows(bridge));
  FlowPlan check = PlanFlowChanges(plan.desired, after, plan_options);
  if (check.mode != PlanMode::kInSync)
    return Internal("bridge " + bridge + ": after a " + PlanModeName(plan.mode) + " apply of " +
                    std::to_string(plan.changes()) + " changes the installed flows (" +
                    std::to_string(after.size()) + ") still differ from the desired set (" +
                    std::to_string(plan.desired.size()) +
                    "): " + DescribeFlowDifference(plan.desired, after) +
                    "; another OpenFlow client may be writing to the bridge");
  return result;
}

}  // namespace regen::ovs
