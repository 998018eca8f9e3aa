// The agent's seam over Open vSwitch: bridges, ports (instance taps, internal ports, VXLAN/Geneve
// tunnels) and the OpenFlow table of a bridge. OvsVSwitch (ovs/ovs_vswitch.h) drives ovs-vsctl and
// ovs-ofctl; FakeVSwitch (tests/fakes/fake_vswitch.h) keeps everything in memory. Implementations
// are not thread-safe: one thread at a time (the agent's network worker). SyncFlows, the
// dump-plan-apply-verify step, is written once over the interface.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "ovs/flows.h"

namespace regen::ovs {

inline constexpr std::string_view kIntegrationBridge = "br-int";

enum class PortType {
  kSystem,    // an existing network device (a domain's tap, a veth); OVS type "" or "system"
  kInternal,  // a device OVS creates
  kVxlan,
  kGeneve,
};
// "system", "internal", "vxlan", "geneve" (the OVSDB Interface type; "" reads as "system").
const char* PortTypeName(PortType type);

// The port to create or update. Tunnels are flow based by default (DESIGN / ovs/flows.h): the
// flows set tun_dst and match tun_src, so one tunnel port serves every remote host.
struct PortSpec {
  std::string name{};
  PortType type = PortType::kSystem;
  // Tunnels only: "flow" or a dotted IPv4 (remote_ip required, local_ip optional), key "flow" or
  // a number (empty: OVS's default 0), dst_port 0 = the protocol's default (4789, 6081).
  std::string remote_ip = "flow";
  std::string local_ip{};
  std::string key{};
  int dst_port = 0;
  // The OpenFlow port number to ask for (0: OVS chooses). Flows name ports by number, so a fixed
  // number keeps flows valid across an OVS restart.
  int64_t ofport_request = 0;
  // Interface external_ids to set (iface-id, attached-mac, vm-id, ...). Keys not listed are left.
  std::map<std::string, std::string> external_ids{};
};

// A port as OVSDB reports it (the bridge's own internal port excluded).
struct PortInfo {
  std::string name;
  PortType type = PortType::kSystem;
  std::string ovs_type;  // the raw Interface type ("" for system)
  int64_t ofport = -1;   // -1 while OVS cannot use the interface (see error)
  std::map<std::string, std::string> options;
  std::map<std::string, std::string> external_ids;
  std::string error;  // OVS's Interface error column, empty when fine
};

class VSwitch {
 public:
  virtual ~VSwitch() = default;

  // Creates `bridge` if missing and sets what Regen's flows rely on: the implementation's
  // datapath type (netdev without kernel modules), fail_mode=secure (no traffic before flows),
  // protocols OpenFlow10,13,14 (bundles need 1.4). Idempotent.
  virtual Status EnsureBridge(const std::string& bridge) = 0;
  // Removes `bridge` with its ports and flows; absent is OK.
  virtual Status DeleteBridge(const std::string& bridge) = 0;
  virtual Result<std::vector<std::string>> ListBridges() = 0;

  // Creates or updates a port on `bridge` and returns it as OVS sees it (with its ofport). A port
  // OVS cannot use (no such device, bad options) is an error and is removed again when this call
  // created it. NOT_FOUND when the bridge does not exist.
  virtual Result<PortInfo> EnsurePort(const std::string& bridge, const PortSpec& port) = 0;
  // Removes the port from `bridge`; absent is OK.
  virtual Status RemovePort(const std::string& bridge, const std::string& port) = 0;
  // The bridge's ports sorted by name. NOT_FOUND when the bridge does not exist.
  virtual Result<std::vector<PortInfo>> ListPorts(const std::string& bridge) = 0;

  // The bridge's flows, canonical and sorted (ParseDumpFlows).
  virtual Result<std::vector<Flow>> DumpFlows(const std::string& bridge) = 0;
  // Applies `plan` in one OpenFlow bundle: all of it or nothing. kInSync does nothing.
  virtual Status ApplyPlan(const std::string& bridge, const FlowPlan& plan) = 0;
};

// Bridge and port names: 1-15 characters of [A-Za-z0-9_.-], starting with a letter or digit (a
// Linux interface name). INVALID_ARGUMENT naming `what` and the value otherwise.
Status ValidateSwitchName(std::string_view what, std::string_view name);
// The spec's name, tunnel options and external_ids (keys [a-z0-9_-]+, printable values).
Status ValidatePortSpec(const PortSpec& port);

struct SyncOptions {
  PlanOptions plan{};
  // Dump again after applying and require the table to equal `desired` (keys and actions). A
  // table found in sync was applied nothing and is not dumped again.
  bool verify = true;
  // Called with the dumped flows before planning; true plans a full replace (a repair: the flows
  // were lost, or another writer left some), whatever `plan` says.
  std::function<bool(const std::vector<Flow>& installed)> force_replace = nullptr;
};

struct SyncResult {
  PlanMode mode = PlanMode::kInSync;
  size_t added = 0;
  size_t modified = 0;
  size_t removed = 0;
  size_t cookie_only = 0;  // flows equal but for the cookie, left alone
  size_t installed_before = 0;
  size_t desired = 0;
};

// Brings the flows of `bridge` to `desired`: dump, PlanFlowChanges, ApplyPlan (one bundle),
// then, with verify and when something was applied, dump again and compare. Errors name the bridge;
// a verification failure is INTERNAL and lists the first differences. Nothing is applied when the
// dump fails.
Result<SyncResult> SyncFlows(VSwitch& vswitch, const std::string& bridge,
                             const std::vector<Flow>& desired, const SyncOptions& options = {});

// "missing: ...; unexpected: ...; different actions: ..." for at most `limit` flows of each kind;
// empty when the two sets agree by key and actions.
std::string DescribeFlowDifference(const std::vector<Flow>& desired,
                                   const std::vector<Flow>& installed, size_t limit = 3);

}  // namespace regen::ovs
