// The desired OpenFlow flow set of one host's br-int, computed from the topology, and the plan that
// brings the installed flows there (ovs-ofctl argv, no shell). Pure functions on value types; any
// thread. The VSwitch (issue 4) runs the commands; nothing here touches OVS.
//
// Table layout of br-int (every flow carries cookie = topology revision; a flow left unchanged
// by an incremental plan keeps the revision that last changed it):
//   0  CLASSIFY   admission by in_port + dl_src. A current local instance's port with its own MAC
//                 -> reg0 = its service tag, resubmit(,10). The VXLAN tunnel port with tun_src =
//                 the owning host's address and dl_src = a current remote instance's MAC -> reg0 =
//                 its service tag, reg1 = 1 (came from the tunnel), resubmit(,30).
//                 Priority 200 drops for stale locations (older generations of a moved instance):
//                 the stale local port (when its ofport is known and not reused) and the instance's
//                 MAC arriving from its old host through the tunnel. Priority 0: drop.
//   10 SPOOF      local traffic only: ip with nw_src = the port's IP -> resubmit(,30); arp with
//                 arp_spa/arp_sha = the port's IP/MAC -> resubmit(,20). Priority 0: drop (IPv6,
//                 other ethertypes, spoofed addresses).
//   20 ARP        ARP responder: a request (arp_op=1) from service tag S for the IP of an instance
//                 S may reach is answered on the spot (IN_PORT) with that instance's MAC; ARP never
//                 crosses the tunnel. Priority 0: drop (requests for anyone else, replies, probes).
//   30 ACL        ip, reg0 = S, dl_dst/nw_dst = an instance of a service S may reach ->
//                 resubmit(,40). Priority 0: drop (other services, broadcast, unknown hosts).
//   40 FORWARD    L2 by dl_dst: a local instance -> output:<its ofport>; a remote instance (only
//                 for reg1=0, so tunnel traffic never goes back into the tunnel) -> tun_dst = its
//                 host's tunnel address, output:<tunnel ofport>. Priority 0: drop.
// Reachability is symmetric (the ACL is stateless, replies must pass): services A and B may talk
// when A == B, B is in allowed_peers[A] or A is in allowed_peers[B].
// Service tag = FNV-1a-32 of the service name (stable across revisions); a collision is refused.
// The tunnel port is flow based: `options:remote_ip=flow`. Bundles need OpenFlow14 in the bridge's
// protocols.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace regen::ovs {

inline constexpr int kTableClassify = 0;
inline constexpr int kTableSpoof = 10;
inline constexpr int kTableArp = 20;
inline constexpr int kTableAcl = 30;
inline constexpr int kTableForward = 40;

struct TopologyHost {
  std::string name;
  std::string tunnel_ip;  // dotted IPv4 of the host's VXLAN endpoint
};

// One location of an instance. Several entries may share a name: the highest generation is the
// current location, the others are stale locations whose traffic is dropped.
struct TopologyInstance {
  std::string name;
  std::string service;
  std::string host;
  std::string ip;
  std::string mac;
  int64_t generation = 0;
  // OpenFlow port number on its host's br-int; required for current instances of the host the
  // flows are built for (the VSwitch resolves interface names to ofports), ignored elsewhere,
  // optional (0 = unknown) for stale local locations.
  int64_t ofport = 0;
};

struct Topology {
  int64_t revision = 0;
  std::vector<TopologyHost> hosts;
  std::vector<TopologyInstance> instances;
  // service -> services it may also talk to (beyond itself); made symmetric, see above.
  std::map<std::string, std::set<std::string>> allowed_peers;
};

// The host the flows are for and its switch.
struct LocalSwitch {
  std::string host;
  int64_t tunnel_ofport = 0;  // the flow-based VXLAN port on br-int
};

// One flow in canonical form: match fields are comma separated, the protocol shorthand (ip, arp)
// first and the other fields sorted; actions exactly as `ovs-ofctl dump-flows` prints them.
struct Flow {
  uint64_t cookie = 0;
  int table = 0;
  int priority = 32768;
  std::string match;  // may be empty
  std::string actions;
  // "cookie=0x7,table=0,priority=100,in_port=3,dl_src=... actions=..." (ovs-ofctl flow syntax).
  std::string ToString() const;
  // "table=0,priority=100,in_port=3,..." (what identifies the flow in OpenFlow).
  std::string Key() const;
  bool operator==(const Flow&) const = default;
};

// Canonical order: table ascending, priority descending, match, actions, cookie.
bool FlowLess(const Flow& a, const Flow& b);

// Sorts the comma-separated fields of a match into canonical order (see Flow).
std::string CanonicalMatch(std::string_view match);

// The desired flow set of `local.host`, sorted canonically. INVALID_ARGUMENT naming the field and
// the value for bad input (names, MACs, IPs, ofports, duplicates, an unknown host).
Result<std::vector<Flow>> BuildFlowSet(const Topology& topology, const LocalSwitch& local);

// One flow per line (Flow::ToString), "\n" terminated: the golden-file and replace-flows format.
std::string FormatFlows(const std::vector<Flow>& flows);

// Parses `ovs-ofctl dump-flows` output (with or without stats; header lines skipped) into canonical
// sorted flows; duration, n_packets, n_bytes, idle_age and hard_age are dropped. INVALID_ARGUMENT
// naming the line for text that is not a flow.
Result<std::vector<Flow>> ParseDumpFlows(std::string_view text);

enum class PlanMode {
  kInSync,       // nothing to do
  kIncremental,  // delete, add and modify the few flows that differ, in one bundle
  kReplace,      // `ovs-ofctl --bundle replace-flows` with the whole desired set
};
const char* PlanModeName(PlanMode mode);

struct PlanOptions {
  // Incremental when changes < max_incremental_changes or changes < max_incremental_fraction of
  // the larger of the two sets; replace otherwise, and always when nothing is installed.
  size_t max_incremental_changes = 100;
  double max_incremental_fraction = 0.2;
};

struct FlowPlan {
  PlanMode mode = PlanMode::kInSync;
  std::vector<Flow> add;      // desired flows whose key is not installed
  std::vector<Flow> modify;   // desired flows whose key is installed with other actions
  std::vector<Flow> remove;   // installed flows whose key is not desired
  size_t cookie_only = 0;     // same key and actions, other cookie: left alone
  std::vector<Flow> desired;  // the whole desired set (used by kReplace)
  size_t changes() const { return add.size() + modify.size() + remove.size(); }
};

// Compares by Key(): the installed set may come from ParseDumpFlows.
FlowPlan PlanFlowChanges(const std::vector<Flow>& desired, const std::vector<Flow>& installed,
                         const PlanOptions& options = {});

// A command for the CommandRunner: argv plus what goes to its stdin.
struct OfctlCommand {
  std::vector<std::string> argv;
  std::string input;
  bool operator==(const OfctlCommand&) const = default;
};

// The commands that apply `plan` to `bridge` atomically (one --bundle command; none when in sync).
// Incremental: `ovs-ofctl --bundle add-flows BRIDGE -` with delete_strict lines, then add lines
// (an add replaces a flow with the same key, cookie included).
std::vector<OfctlCommand> RenderPlan(const FlowPlan& plan, std::string_view bridge);

// `ovs-ofctl --no-names dump-flows BRIDGE`, whose output ParseDumpFlows reads.
std::vector<std::string> DumpFlowsArgv(std::string_view bridge);

}  // namespace regen::ovs
