// The real VSwitch: ovs-vsctl against an explicit ovsdb socket (--db=unix:...) and ovs-ofctl
// against the bridge's management socket (unix:RUN_DIR/BRIDGE.mgmt), both through a
// CommandRunner (argv, timeout, no shell), so a private ovsdb-server/ovs-vswitchd in a temp dir is
// addressed the same way as the system's. One thread at a time, like every VSwitch.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/subprocess.h"
#include "ovs/vswitch.h"

namespace regen::ovs {

struct OvsVSwitchOptions {
  std::string db_socket = "/var/run/openvswitch/db.sock";  // ovsdb-server --remote=punix:...
  std::string run_dir = "/var/run/openvswitch";            // ovs-vswitchd's OVS_RUNDIR
  std::string datapath_type = "netdev";                    // userspace: no kernel module needed
  std::chrono::milliseconds timeout{10000};                // per command
};

class OvsVSwitch : public VSwitch {
 public:
  // `runner` must outlive this object.
  OvsVSwitch(CommandRunner& runner, OvsVSwitchOptions options);

  Status EnsureBridge(const std::string& bridge) override;
  Status DeleteBridge(const std::string& bridge) override;
  Result<std::vector<std::string>> ListBridges() override;
  Result<PortInfo> EnsurePort(const std::string& bridge, const PortSpec& port) override;
  Status RemovePort(const std::string& bridge, const std::string& port) override;
  Result<std::vector<PortInfo>> ListPorts(const std::string& bridge) override;
  Result<std::vector<Flow>> DumpFlows(const std::string& bridge) override;
  Status ApplyPlan(const std::string& bridge, const FlowPlan& plan) override;

  // "unix:RUN_DIR/BRIDGE.mgmt", the ovs-ofctl target of `bridge`.
  std::string OfctlTarget(const std::string& bridge) const;
  // The ovs-vsctl argv prefix: ovs-vsctl --db=unix:DB --timeout=S.
  std::vector<std::string> VsctlPrefix() const;

 private:
  // Runs a command; a failure becomes an error starting with `what` (which names the bridge or
  // port), carrying the command and its stderr, with a hint about which daemon to check.
  Result<CommandOutput> Run(const std::string& what, const std::vector<std::string>& argv,
                            const std::string& input = "");

  CommandRunner& runner_;
  const OvsVSwitchOptions options_;
};

// Parses `ovs-vsctl --format=json --columns=name,ofport,type,options,external_ids,error list
// Interface` output. Exposed for tests.
Result<std::vector<PortInfo>> ParseInterfaceTable(const std::string& json);

}  // namespace regen::ovs
