// Integration tests of OvsVSwitch against a real, private Open vSwitch (OvsSandbox: ovsdb-server +
// ovs-vswitchd with the userspace datapath in a temp dir and namespace of its own): bridge and
// ports, a generated flow set applied and read back equal, a moved instance applied as a minimal
// diff, an atomic bundle, bad input and a stopped OVS (clear errors, nothing changed), an
// ovs-vswitchd restart repaired, and traffic between namespaces decided by the flows.
// Missing Open vSwitch is a failure, never a skip.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/subprocess.h"
#include "ovs/flows.h"
#include "ovs/ovs_vswitch.h"
#include "ovs/vswitch.h"
#include "tests/fakes/test_util.h"
#include "tests/integration/ovs/ovs_sandbox.h"

namespace regen::ovs {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::OvsSandbox;

const std::string kBridge(kIntegrationBridge);

TopologyInstance Inst(std::string name, std::string service, std::string host, std::string ip,
                      std::string mac, int64_t generation, int64_t ofport) {
  return TopologyInstance{std::move(name), std::move(service), std::move(host), std::move(ip),
                          std::move(mac),  generation,         ofport};
}

// The topology of tests/golden/ovs (3 hosts, web everywhere, db on host-1 and host-3).
Topology Lab() {
  Topology t;
  t.revision = 7;
  t.hosts = {{"host-1", "192.168.100.1"}, {"host-2", "192.168.100.2"}, {"host-3", "192.168.100.3"}};
  t.instances = {
      Inst("web-0", "web", "host-1", "10.0.0.10", "52:54:00:00:00:10", 1, 3),
      Inst("web-1", "web", "host-2", "10.0.0.11", "52:54:00:00:00:11", 1, 3),
      Inst("web-2", "web", "host-3", "10.0.0.12", "52:54:00:00:00:12", 1, 3),
      Inst("db-0", "db", "host-1", "10.0.1.10", "52:54:00:00:01:10", 1, 4),
      Inst("db-1", "db", "host-3", "10.0.1.11", "52:54:00:00:01:11", 1, 4),
  };
  return t;
}

// web-1 healed from host-2 onto host-3 (revision 8, generation 2, same IP and MAC).
Topology Moved() {
  Topology t = Lab();
  t.revision = 8;
  t.instances.push_back(Inst("web-1", "web", "host-3", "10.0.0.11", "52:54:00:00:00:11", 2, 5));
  return t;
}

std::vector<Flow> Build(const Topology& t, const std::string& host, int64_t tunnel_ofport = 1) {
  auto flows = BuildFlowSet(t, LocalSwitch{host, tunnel_ofport});
  EXPECT_TRUE(flows.ok()) << flows.status().ToString();
  return flows.ok() ? *flows : std::vector<Flow>();
}

PortSpec Tunnel() {
  PortSpec p;
  p.name = "vxlan0";
  p.type = PortType::kVxlan;
  p.remote_ip = "flow";
  p.key = "flow";
  p.ofport_request = 1;
  return p;
}

PortSpec Internal(std::string name, int64_t ofport, std::string iface_id) {
  PortSpec p;
  p.name = std::move(name);
  p.type = PortType::kInternal;
  p.ofport_request = ofport;
  p.external_ids = {{"iface-id", std::move(iface_id)}};
  return p;
}

const PortInfo* FindPort(const std::vector<PortInfo>& ports, const std::string& name) {
  auto it =
      std::find_if(ports.begin(), ports.end(), [&](const PortInfo& p) { return p.name == name; });
  return it == ports.end() ? nullptr : &*it;
}

std::vector<std::string> Names(const std::vector<PortInfo>& ports) {
  std::vector<std::string> out;
  for (const auto& p : ports) out.push_back(p.name);
  return out;
}

class OvsVSwitchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status started = sandbox_.Start();
    ASSERT_TRUE(started.ok()) << started.ToString();
    vswitch_ = std::make_unique<OvsVSwitch>(runner_, sandbox_.VSwitchOptions());
  }

  // br-int with host-1's ports of the golden topology: vxlan0=1, web-0=3, db-0=4.
  void SetUpHost1() {
    ASSERT_TRUE(vswitch_->EnsureBridge(kBridge).ok());
    for (const auto& spec :
         {Tunnel(), Internal("vnet-web-0", 3, "web-0"), Internal("vnet-db-0", 4, "db-0")}) {
      auto port = vswitch_->EnsurePort(kBridge, spec);
      ASSERT_TRUE(port.ok()) << port.status().ToString();
    }
  }

  std::vector<Flow> DumpOrDie() {
    auto flows = vswitch_->DumpFlows(kBridge);
    EXPECT_TRUE(flows.ok()) << flows.status().ToString();
    return flows.ok() ? *flows : std::vector<Flow>();
  }

  // What ovs-vsctl itself says about a column (bypassing OvsVSwitch).
  std::string Vsctl(const std::vector<std::string>& args) {
    auto argv = vswitch_->VsctlPrefix();
    argv.insert(argv.end(), args.begin(), args.end());
    auto out = CheckedRun(runner_, argv, 10s);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    std::string text = out.ok() ? out->stdout_text : "";
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  }

  OvsSandbox sandbox_;
  RealCommandRunner runner_;
  std::unique_ptr<OvsVSwitch> vswitch_;
};

TEST_F(OvsVSwitchTest, BridgeIsCreatedNetdevSecureWithOpenFlow14AndIdempotent) {
  auto before = vswitch_->ListBridges();
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_TRUE(before->empty());
  ASSERT_TRUE(vswitch_->EnsureBridge(kBridge).ok());
  ASSERT_TRUE(vswitch_->EnsureBridge(kBridge).ok());  // idempotent
  auto bridges = vswitch_->ListBridges();
  ASSERT_TRUE(bridges.ok());
  EXPECT_THAT(*bridges, ElementsAre("br-int"));
  EXPECT_EQ(Vsctl({"get", "Bridge", "br-int", "datapath_type"}), "netdev");
  EXPECT_EQ(Vsctl({"get", "Bridge", "br-int", "fail_mode"}), "secure");
  EXPECT_EQ(Vsctl({"get", "Bridge", "br-int", "protocols"}),
            "[OpenFlow10, OpenFlow13, OpenFlow14]");
  // The bridge's own port exists as a device in the sandbox namespace; no ports, no flows yet.
  EXPECT_TRUE(sandbox_.Exec({"ip", "link", "show", "br-int"}).ok());
  auto ports = vswitch_->ListPorts(kBridge);
  ASSERT_TRUE(ports.ok()) << ports.status().ToString();
  EXPECT_TRUE(ports->empty());
  EXPECT_TRUE(DumpOrDie().empty());
  ASSERT_TRUE(vswitch_->DeleteBridge(kBridge).ok());
  ASSERT_TRUE(vswitch_->DeleteBridge(kBridge).ok());  // absent is fine
  EXPECT_TRUE(vswitch_->ListBridges()->empty());
}

TEST_F(OvsVSwitchTest, PortsAreAddedUpdatedAndRemoved) {
  ASSERT_TRUE(vswitch_->EnsureBridge(kBridge).ok());
  auto tunnel = vswitch_->EnsurePort(kBridge, Tunnel());
  ASSERT_TRUE(tunnel.ok()) << tunnel.status().ToString();
  EXPECT_EQ(tunnel->ofport, 1);
  EXPECT_EQ(tunnel->type, PortType::kVxlan);
  EXPECT_EQ(tunnel->options,
            (std::map<std::string, std::string>{{"key", "flow"}, {"remote_ip", "flow"}}));
  PortSpec web = Internal("vnet-web-0", 3, "web-0");
  web.external_ids["attached-mac"] = "52:54:00:00:00:10";
  auto port = vswitch_->EnsurePort(kBridge, web);
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(port->ofport, 3);
  EXPECT_EQ(port->type, PortType::kInternal);
  EXPECT_EQ(port->external_ids.at("attached-mac"), "52:54:00:00:00:10");
  EXPECT_TRUE(sandbox_.Exec({"ip", "link", "show", "vnet-web-0"}).ok());
  // A Geneve tunnel to one host with explicit options.
  PortSpec geneve;
  geneve.name = "gnv-host-2";
  geneve.type = PortType::kGeneve;
  geneve.remote_ip = "192.168.100.2";
  geneve.key = "5001";
  geneve.dst_port = 6081;
  auto g = vswitch_->EnsurePort(kBridge, geneve);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_GT(g->ofport, 0);
  EXPECT_EQ(g->options.at("remote_ip"), "192.168.100.2");
  EXPECT_EQ(g->options.at("key"), "5001");

  auto ports = vswitch_->ListPorts(kBridge);
  ASSERT_TRUE(ports.ok()) << ports.status().ToString();
  EXPECT_THAT(Names(*ports), ElementsAre("gnv-host-2", "vnet-web-0", "vxlan0"));

  // Update in place: the ofport stays, external_ids change.
  web.external_ids["iface-id"] = "web-0-moved";
  port = vswitch_->EnsurePort(kBridge, web);
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(port->ofport, 3);
  EXPECT_EQ(Vsctl({"get", "Interface", "vnet-web-0", "external_ids:iface-id"}), "web-0-moved");

  ASSERT_TRUE(vswitch_->RemovePort(kBridge, "gnv-host-2").ok());
  ASSERT_TRUE(vswitch_->RemovePort(kBridge, "gnv-host-2").ok());  // absent is fine
  ports = vswitch_->ListPorts(kBridge);
  ASSERT_TRUE(ports.ok());
  EXPECT_THAT(Names(*ports), ElementsAre("vnet-web-0", "vxlan0"));
  EXPECT_EQ(Vsctl({"list-ports", "br-int"}), "vnet-web-0\nvxlan0");
}

TEST_F(OvsVSwitchTest, UnusablePortIsReportedAndRolledBack) {
  ASSERT_TRUE(vswitch_->EnsureBridge(kBridge).ok());
  ASSERT_TRUE(vswitch_->EnsurePort(kBridge, Internal("vnet-web-0", 3, "web-0")).ok());
  // A system port needs an existing device.
  PortSpec tap;
  tap.name = "vnet-missing";
  auto missing = vswitch_->EnsurePort(kBridge, tap);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(missing.status().message(), HasSubstr("bridge br-int port vnet-missing"));
  EXPECT_THAT(missing.status().message(), HasSubstr("could not open network device vnet-missing"));
  EXPECT_THAT(missing.status().message(), HasSubstr("removed again"));
  // An ofport another port holds.
  auto clash = vswitch_->EnsurePort(kBridge, Internal("vnet-db-0", 3, "db-0"));
  ASSERT_FALSE(clash.ok());
  EXPECT_THAT(clash.status().message(), HasSubstr("asked for ofport 3"));
  EXPECT_THAT(clash.status().message(), HasSubstr("port vnet-web-0 holds it"));
  EXPECT_EQ(Vsctl({"list-ports", "br-int"}), "vnet-web-0");
}

TEST_F(OvsVSwitchTest, GeneratedFlowSetIsAppliedAndReadBackEqual) {
  SetUpHost1();
  const std::vector<Flow> desired = Build(Lab(), "host-1");
  ASSERT_FALSE(desired.empty());
  auto result = SyncFlows(*vswitch_, kBridge, desired);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->mode, PlanMode::kReplace);
  EXPECT_EQ(result->added, desired.size());
  EXPECT_EQ(result->installed_before, 0u);
  // Read back exactly: every flow, cookie included, equals the generated one and the golden file.
  const std::vector<Flow> dumped = DumpOrDie();
  EXPECT_EQ(dumped, desired) << "dump:\n"
                             << FormatFlows(dumped) << "desired:\n"
                             << FormatFlows(desired);
  EXPECT_EQ(FormatFlows(dumped),
            testing::ReadFileOrDie(testing::SourceDir() + "/tests/golden/ovs/host-1.flows"));
  // A second sync finds nothing to do and does not touch the table.
  auto again = SyncFlows(*vswitch_, kBridge, desired);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->mode, PlanMode::kInSync);
  EXPECT_EQ(again->added + again->modified + again->removed, 0u);
}

TEST_F(OvsVSwitchTest, MovedInstanceIsAppliedAsAMinimalDiff) {
  SetUpHost1();
  const std::vector<Flow> before = Build(Lab(), "host-1");
  ASSERT_TRUE(SyncFlows(*vswitch_, kBridge, before).ok());
  const std::vector<Flow> after = Build(Moved(), "host-1");
  const FlowPlan expected = PlanFlowChanges(after, before);
  ASSERT_EQ(expected.mode, PlanMode::kIncremental);
  ASSERT_GT(expected.changes(), 0u);
  ASSERT_LT(expected.changes(), after.size() / 2);

  auto result = SyncFlows(*vswitch_, kBridge, after);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->mode, PlanMode::kIncremental);
  EXPECT_EQ(result->added, expected.add.size());
  EXPECT_EQ(result->modified, expected.modify.size());
  EXPECT_EQ(result->removed, expected.remove.size());

  // Only what had to change carries the new revision; every other flow was left alone (its
  // cookie is still 7).
  const std::vector<Flow> dumped = DumpOrDie();
  std::vector<Flow> want;
  for (Flow f : after) {
    auto old = std::find_if(before.begin(), before.end(), [&](const Flow& b) {
      return b.Key() == f.Key() && b.actions == f.actions;
    });
    if (old != before.end()) f.cookie = old->cookie;
    want.push_back(f);
  }
  std::sort(want.begin(), want.end(), FlowLess);
  EXPECT_EQ(dumped, want) << FormatFlows(dumped);
  const size_t revised =
      std::count_if(dumped.begin(), dumped.end(), [](const Flow& f) { return f.cookie == 8; });
  EXPECT_EQ(revised, expected.add.size() + expected.modify.size());
  // The stale location (host-2 sending web-1's MAC) is dropped, the new one (host-3) admitted.
  EXPECT_THAT(FormatFlows(dumped),
              HasSubstr("cookie=0x8,table=0,priority=200,dl_src=52:54:00:00:00:11,in_port=1,"
                        "tun_src=192.168.100.2 actions=drop"));
  EXPECT_THAT(FormatFlows(dumped), HasSubstr("dl_src=52:54:00:00:00:11,in_port=1,"
                                             "tun_src=192.168.100.3 actions="));
}

TEST_F(OvsVSwitchTest, BundleIsAllOrNothing) {
  SetUpHost1();
  const std::vector<Flow> desired = Build(Lab(), "host-1");
  ASSERT_TRUE(SyncFlows(*vswitch_, kBridge, desired).ok());
  FlowPlan plan;
  plan.mode = PlanMode::kIncremental;
  plan.remove = {desired.front()};
  plan.add = {Flow{9, 40, 100, "dl_dst=52:54:00:00:00:99", "output:3"},
              Flow{9, 40, 100, "no_such_field=1", "output:3"}};
  Status applied = vswitch_->ApplyPlan(kBridge, plan);
  ASSERT_FALSE(applied.ok());
  EXPECT_THAT(applied.message(), HasSubstr("bridge br-int: apply incremental plan"));
  EXPECT_THAT(applied.message(), HasSubstr("ovs-ofctl --bundle add-flows unix:"));
  EXPECT_THAT(applied.message(), HasSubstr("no_such_field"));  // ovs-ofctl's stderr
  EXPECT_EQ(DumpOrDie(), desired);  // neither the delete nor the good add happened
}

TEST_F(OvsVSwitchTest, BadInputIsRefusedAndChangesNothing) {
  SetUpHost1();
  const std::vector<Flow> desired = Build(Lab(), "host-1");
  ASSERT_TRUE(SyncFlows(*vswitch_, kBridge, desired).ok());
  const std::string ports_before = Vsctl({"list-ports", "br-int"});

  for (const std::string bad : {"br int", "br-int;rm", "", "bridge-name-too-long", "-br"}) {
    Status s = vswitch_->EnsureBridge(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("bridge \"" + bad + "\": invalid name")) << s.message();
    EXPECT_FALSE(vswitch_->DumpFlows(bad).ok()) << bad;
    EXPECT_FALSE(SyncFlows(*vswitch_, bad, desired).ok()) << bad;
  }
  // A well-formed bridge that does not exist.
  auto port = vswitch_->EnsurePort("br-nope", Internal("vnet-x", 9, "x"));
  ASSERT_FALSE(port.ok());
  EXPECT_EQ(port.status().code(), Code::kNotFound);
  EXPECT_THAT(port.status().message(), HasSubstr("bridge br-nope"));
  EXPECT_THAT(port.status().message(), HasSubstr("no bridge named br-nope"));
  auto dump = vswitch_->DumpFlows("br-nope");
  ASSERT_FALSE(dump.ok());
  EXPECT_THAT(dump.status().message(), HasSubstr("bridge br-nope: dump flows"));
  EXPECT_THAT(dump.status().message(), HasSubstr("br-nope.mgmt"));
  EXPECT_THAT(dump.status().message(), HasSubstr("does the bridge exist?"));
  // Bad port specs.
  PortSpec tunnel = Tunnel();
  tunnel.remote_ip = "192.168.1";
  auto t = vswitch_->EnsurePort(kBridge, tunnel);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("port \"vxlan0\" options:remote_ip: \"192.168.1\""));
  PortSpec quoting = Internal("vnet-q", 9, "x");
  quoting.external_ids = {{"Bad Key", "v"}};
  EXPECT_EQ(vswitch_->EnsurePort(kBridge, quoting).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(vswitch_->RemovePort(kBridge, "vnet web").code(), Code::kInvalidArgument);
  // Values that need quoting in ovs-vsctl syntax are stored verbatim, not interpreted.
  PortSpec odd = Internal("vnet-odd", 9, "a,b=c \"d\" {e}");
  auto stored = vswitch_->EnsurePort(kBridge, odd);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->external_ids.at("iface-id"), "a,b=c \"d\" {e}");
  ASSERT_TRUE(vswitch_->RemovePort(kBridge, "vnet-odd").ok());

  auto bridges = vswitch_->ListBridges();
  ASSERT_TRUE(bridges.ok());
  EXPECT_THAT(*bridges, ElementsAre("br-int"));
  EXPECT_EQ(Vsctl({"list-ports", "br-int"}), ports_before);
  EXPECT_EQ(DumpOrDie(), desired);
}

TEST_F(OvsVSwitchTest, VswitchdRestartIsRepairedBySync) {
  SetUpHost1();
  const std::vector<Flow> desired = Build(Lab(), "host-1");
  ASSERT_TRUE(SyncFlows(*vswitch_, kBridge, desired).ok());

  sandbox_.StopVswitchd();
  auto down = SyncFlows(*vswitch_, kBridge, desired);
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), Code::kUnavailable);
  EXPECT_THAT(down.status().message(), HasSubstr("bridge br-int: dump flows"));
  EXPECT_THAT(down.status().message(), HasSubstr("is ovs-vswitchd running"));
  // ovsdb-server still answers, but ovs-vsctl waits for ovs-vswitchd to apply a change: the call
  // gives up after the timeout with a clear error (the change stays in OVSDB, applied later).
  OvsVSwitchOptions quick = sandbox_.VSwitchOptions();
  quick.timeout = 1s;
  OvsVSwitch impatient(runner_, quick);
  Status waited = impatient.EnsurePort(kBridge, Internal("vnet-late", 7, "late")).status();
  ASSERT_FALSE(waited.ok());
  EXPECT_EQ(waited.code(), Code::kUnavailable) << waited.ToString();
  EXPECT_THAT(waited.message(), HasSubstr("bridge br-int port vnet-late: add port: ovs-vsctl"));
  EXPECT_THAT(waited.message(), HasSubstr("ovs-vsctl waits for ovs-vswitchd"));

  Status restarted = sandbox_.StartVswitchd();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  // OpenFlow tables do not survive the restart; ports (OVSDB) and their ofports do.
  ASSERT_TRUE(testing::WaitFor([&] { return vswitch_->DumpFlows(kBridge).ok(); }, 10s, 20ms));
  EXPECT_TRUE(DumpOrDie().empty());
  auto ports = vswitch_->ListPorts(kBridge);
  ASSERT_TRUE(ports.ok());
  ASSERT_NE(FindPort(*ports, "vnet-web-0"), nullptr);
  EXPECT_EQ(FindPort(*ports, "vnet-web-0")->ofport, 3);
  auto repaired = SyncFlows(*vswitch_, kBridge, desired);
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  EXPECT_EQ(repaired->mode, PlanMode::kReplace);
  EXPECT_EQ(DumpOrDie(), desired);
}

TEST(OvsVSwitchNotRunningTest, ClearErrorsAndNothingHappens) {
  testing::TempDir empty("regen-ovs-none");
  RealCommandRunner runner;
  OvsVSwitchOptions options;
  options.db_socket = empty.File("db.sock");
  options.run_dir = empty.path();
  options.timeout = 3s;
  OvsVSwitch vswitch(runner, options);
  auto start = std::chrono::steady_clock::now();
  Status s = vswitch.EnsureBridge("br-int");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("bridge br-int: ensure bridge"));
  EXPECT_THAT(s.message(), HasSubstr(options.db_socket));
  EXPECT_THAT(s.message(), HasSubstr("is ovsdb-server running"));
  auto dump = vswitch.DumpFlows("br-int");
  ASSERT_FALSE(dump.ok());
  EXPECT_EQ(dump.status().code(), Code::kUnavailable) << dump.status().ToString();
  EXPECT_THAT(dump.status().message(), HasSubstr(empty.path() + "/br-int.mgmt"));
  auto sync = SyncFlows(vswitch, "br-int", {Flow{1, 0, 0, "", "drop"}});
  ASSERT_FALSE(sync.ok());
  EXPECT_THAT(sync.status().message(), HasSubstr("bridge br-int"));
  // Fails fast rather than waiting out the timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

// --- Traffic through the flows between network namespaces ----------------------------------

// Sends UDP datagrams from namespace `from` to `to_ip`:`port` until one arrives at a socket bound
// in namespace `to` or `timeout` passes. Each side runs on a thread that joined its namespace
// (setns on a thread changes only that thread's network namespace).
bool UdpReaches(const std::string& from, const std::string& to, const std::string& to_ip, int port,
                std::chrono::milliseconds timeout) {
  auto enter = [](const std::string& ns) {
    int fd = open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = setns(fd, CLONE_NEWNET) == 0;
    close(fd);
    return ok;
  };
  std::atomic<bool> received{false};
  std::atomic<bool> ready{false};
  std::atomic<bool> done{false};
  std::thread receiver([&] {
    if (!enter(to)) return;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(fd);
      ready = true;
      return;
    }
    timeval tv{0, 20000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ready = true;
    char buf[64];
    while (!done && !received) {
      if (recv(fd, buf, sizeof buf, 0) > 0) received = true;
    }
    close(fd);
  });
  std::thread sender([&] {
    if (!enter(from)) return;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int one = 1;
    // The userspace datapath does not complete checksums the veth left to offload: send none.
    setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, to_ip.c_str(), &addr.sin_addr);
    while (!ready) std::this_thread::yield();
    while (!done && !received) {
      sendto(fd, "regen", 5, 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      std::this_thread::sleep_for(20ms);
    }
    close(fd);
  });
  testing::WaitFor([&] { return received.load(); }, timeout);
  done = true;
  sender.join();
  receiver.join();
  return received;
}

TEST_F(OvsVSwitchTest, TrafficBetweenNamespacesFollowsTheFlows) {
  // host-1 runs web-0, web-1 and db-0 (one /24, so only the flows separate the services); web-2
  // runs on host-2.
  Topology t;
  t.revision = 1;
  t.hosts = {{"host-1", "192.168.100.1"}, {"host-2", "192.168.100.2"}};
  t.instances = {
      Inst("web-0", "web", "host-1", "10.0.0.10", "52:54:00:00:00:10", 1, 3),
      Inst("web-1", "web", "host-1", "10.0.0.11", "52:54:00:00:00:11", 1, 4),
      Inst("db-0", "db", "host-1", "10.0.0.20", "52:54:00:00:00:20", 1, 5),
      Inst("web-2", "web", "host-2", "10.0.0.12", "52:54:00:00:00:12", 1, 0),
  };
  ASSERT_TRUE(vswitch_->EnsureBridge(kBridge).ok());
  ASSERT_TRUE(vswitch_->EnsurePort(kBridge, Tunnel()).ok());
  std::map<std::string, std::string> ns;
  for (const auto& in : t.instances) {
    if (in.host != "host-1") continue;
    auto made = sandbox_.AddInstanceNamespace(in.name, "vnet-" + in.name, in.mac, in.ip + "/24");
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    ns[in.name] = *made;
    PortSpec p;
    p.name = "vnet-" + in.name;
    p.ofport_request = in.ofport;
    p.external_ids = {{"iface-id", in.name}, {"attached-mac", in.mac}};
    auto port = vswitch_->EnsurePort(kBridge, p);
    ASSERT_TRUE(port.ok()) << port.status().ToString();
    ASSERT_EQ(port->ofport, in.ofport);
  }
  // web-0 knows db-0's MAC (no ARP needed), so only the ACL can stop its datagrams.
  ASSERT_TRUE(sandbox_
                  .ExecIn(ns["web-0"], {"ip", "neigh", "replace", "10.0.0.20", "lladdr",
                                        "52:54:00:00:00:20", "dev", "eth0", "nud", "permanent"})
                  .ok());

  // Before any flow: fail_mode=secure drops everything.
  EXPECT_FALSE(UdpReaches(ns["web-0"], ns["web-1"], "10.0.0.11", 7001, 300ms));

  auto synced = SyncFlows(*vswitch_, kBridge, Build(t, "host-1"));
  ASSERT_TRUE(synced.ok()) << synced.status().ToString();
  // Same service: ARP answered by the flows, datagrams delivered, both ways.
  EXPECT_TRUE(UdpReaches(ns["web-0"], ns["web-1"], "10.0.0.11", 7002, 5s));
  EXPECT_TRUE(UdpReaches(ns["web-1"], ns["web-0"], "10.0.0.10", 7003, 5s));
  // Another service: dropped.
  EXPECT_FALSE(UdpReaches(ns["web-0"], ns["db-0"], "10.0.0.20", 7004, 500ms));
  // A spoofed source address: dropped.
  ASSERT_TRUE(
      sandbox_.ExecIn(ns["web-1"], {"ip", "addr", "add", "10.0.0.99/32", "dev", "eth0"}).ok());
  ASSERT_TRUE(
      sandbox_.ExecIn(ns["web-1"], {"ip", "addr", "del", "10.0.0.11/24", "dev", "eth0"}).ok());
  ASSERT_TRUE(sandbox_
                  .ExecIn(ns["web-1"],
                          {"ip", "route", "add", "10.0.0.0/24", "dev", "eth0", "src", "10.0.0.99"})
                  .ok());
  EXPECT_FALSE(UdpReaches(ns["web-1"], ns["web-0"], "10.0.0.10", 7005, 500ms));
  ASSERT_TRUE(sandbox_.ExecIn(ns["web-1"], {"ip", "addr", "flush", "dev", "eth0"}).ok());
  ASSERT_TRUE(
      sandbox_.ExecIn(ns["web-1"], {"ip", "addr", "add", "10.0.0.11/24", "dev", "eth0"}).ok());

  // web-1 is healed onto host-2 (generation 2): its old local port is cut off at once.
  t.revision = 2;
  t.instances.push_back(Inst("web-1", "web", "host-2", "10.0.0.11", "52:54:00:00:00:11", 2, 0));
  auto moved = SyncFlows(*vswitch_, kBridge, Build(t, "host-1"));
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(moved->mode, PlanMode::kIncremental);
  EXPECT_FALSE(UdpReaches(ns["web-0"], ns["web-1"], "10.0.0.11", 7006, 500ms));
  EXPECT_FALSE(UdpReaches(ns["web-1"], ns["web-0"], "10.0.0.10", 7007, 500ms));
}

}  // namespace
}  // namespace regen::ovs
