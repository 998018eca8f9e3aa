// NetworkAgent against a real, private Open vSwitch (OvsSandbox): the first topology revision
// creates the bridge and the VXLAN tunnel and installs this host's flow set, found ports by
// iface-id / attached-mac; an instance moving onto this host (new port, generation, revision) is
// applied as a small incremental bundle; an ovs-vswitchd restart (OpenFlow tables lost) is
// repaired by the next sync and by the worker's periodic resync on its own. In every case
// `ovs-ofctl dump-flows` equals the desired set exactly. Prints the apply times.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/network_agent.h"
#include "common/subprocess.h"
#include "ovs/flows.h"
#include "ovs/ovs_vswitch.h"
#include "tests/fakes/test_util.h"
#include "tests/integration/ovs/ovs_sandbox.h"

namespace regen {
namespace {

using namespace std::chrono_literals;
using testing::OvsSandbox;

constexpr char kBridge[] = "br-int";

void AddInstance(v1::TopologyRevision& t, const std::string& name, const std::string& service,
                 const std::string& host, const std::string& ip, const std::string& mac,
                 int64_t gen) {
  auto* i = t.add_instances();
  i->set_name(name);
  i->set_service(service);
  i->set_host(host);
  i->set_ip(ip);
  i->set_mac(mac);
  i->set_generation(gen);
}

// web on three hosts, db on host-1 and host-3; web-1 on `web1_host` at `web1_gen`.
v1::TopologyRevision Lab(int64_t revision, const std::string& web1_host, int64_t web1_gen) {
  v1::TopologyRevision t;
  t.set_revision(revision);
  for (int h = 1; h <= 3; ++h) {
    auto* host = t.add_hosts();
    host->set_name("host-" + std::to_string(h));
    host->set_address("192.168.100." + std::to_string(h));
  }
  AddInstance(t, "web-0", "web", "host-1", "10.0.0.10", "52:54:00:00:00:10", 1);
  AddInstance(t, "web-1", "web", web1_host, "10.0.0.11", "52:54:00:00:00:11", web1_gen);
  AddInstance(t, "web-2", "web", "host-3", "10.0.0.12", "52:54:00:00:00:12", 1);
  AddInstance(t, "db-0", "db", "host-1", "10.0.1.10", "52:54:00:00:01:10", 1);
  AddInstance(t, "db-1", "db", "host-3", "10.0.1.11", "52:54:00:00:01:11", 1);
  return t;
}

double Ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

class NetworkAgentOvsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status started = sandbox_.Start();
    ASSERT_TRUE(started.ok()) << started.ToString();
    vswitch_ = std::make_unique<ovs::OvsVSwitch>(runner_, sandbox_.VSwitchOptions());
    NetworkAgentOptions o;
    o.host = "host-1";
    o.tunnel_ip = "192.168.100.1";
    o.resync_interval = 300ms;
    o.retry_initial = 50ms;
    agent_ = std::make_unique<NetworkAgent>(o, *vswitch_, clock_);
    ASSERT_TRUE(vswitch_->EnsureBridge(kBridge).ok());
  }
  void TearDown() override {
    if (agent_) agent_->Stop();
  }

  // An instance's port as libvirt leaves it: iface-id = a domain uuid, attached-mac = the MAC.
  int64_t AddPort(const std::string& name, const std::string& mac) {
    ovs::PortSpec p;
    p.name = name;
    p.type = ovs::PortType::kInternal;
    p.external_ids = {{"iface-id", "uuid-" + name}, {"attached-mac", mac}};
    auto port = vswitch_->EnsurePort(kBridge, p);
    EXPECT_TRUE(port.ok()) << port.status().ToString();
    return port.ok() ? port->ofport : -1;
  }

  std::vector<ovs::Flow> Desired(const v1::TopologyRevision& t,
                                 const std::map<std::string, int64_t>& ofports) {
    ovs::Topology topo = TopologyFromProto(t);
    for (auto& in : topo.instances) {
      auto it = ofports.find(in.name);
      if (in.host == "host-1" && it != ofports.end()) in.ofport = it->second;
    }
    auto flows = ovs::BuildFlowSet(topo, {"host-1", 4000});
    EXPECT_TRUE(flows.ok()) << flows.status().ToString();
    return flows.ok() ? *flows : std::vector<ovs::Flow>{};
  }

  // What ovs-ofctl itself prints, parsed (not through the VSwitch).
  std::vector<ovs::Flow> DumpFlows() {
    auto argv = ovs::DumpFlowsArgv(vswitch_->OfctlTarget(kBridge));
    auto out = CheckedRun(runner_, argv, 10s);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    if (!out.ok()) return {};
    auto flows = ovs::ParseDumpFlows(out->stdout_text);
    EXPECT_TRUE(flows.ok()) << flows.status().ToString();
    return flows.ok() ? *flows : std::vector<ovs::Flow>{};
  }

  OvsSandbox sandbox_;
  RealCommandRunner runner_;
  RealClock clock_;
  std::unique_ptr<ovs::OvsVSwitch> vswitch_;
  std::unique_ptr<NetworkAgent> agent_;
};

TEST_F(NetworkAgentOvsTest, FirstRevisionInstallsExactlyTheDesiredFlows) {
  int64_t web0 = AddPort("vnet0", "52:54:00:00:00:10");
  int64_t db0 = AddPort("vnet1", "52:54:00:00:01:10");
  auto t = Lab(1, "host-2", 1);
  ASSERT_TRUE(agent_->Submit(t));
  auto start = std::chrono::steady_clock::now();
  auto r = agent_->SyncNow();
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status().ToString() << "\n" << sandbox_.LogTail();
  EXPECT_EQ(r->revision, 1);
  EXPECT_EQ(r->flows.mode, ovs::PlanMode::kReplace);
  EXPECT_EQ(r->local, (std::vector<std::string>{"web-0", "db-0"}));
  EXPECT_EQ(DumpFlows(), Desired(t, {{"web-0", web0}, {"db-0", db0}}));
  auto ports = vswitch_->ListPorts(kBridge);
  ASSERT_TRUE(ports.ok());
  bool tunnel = false;
  for (const auto& p : *ports) {
    if (p.name != "regen-vxlan") continue;
    tunnel = true;
    EXPECT_EQ(p.ovs_type, "vxlan");
    EXPECT_EQ(p.ofport, 4000);
    EXPECT_EQ(p.options.at("remote_ip"), "flow");
    EXPECT_EQ(p.options.at("local_ip"), "192.168.100.1");
  }
  EXPECT_TRUE(tunnel);
  std::printf(
      "[ figures ] first revision (%zu flows, bridge+tunnel+ports+bundle+verify): %.1f ms\n",
      r->flows.desired, Ms(took));
}

TEST_F(NetworkAgentOvsTest, InstanceMovingOntoThisHostIsASmallIncrementalApply) {
  int64_t web0 = AddPort("vnet0", "52:54:00:00:00:10");
  int64_t db0 = AddPort("vnet1", "52:54:00:00:01:10");
  ASSERT_TRUE(agent_->Submit(Lab(1, "host-2", 1)));
  ASSERT_TRUE(agent_->SyncNow().ok());
  // web-1 is healed onto host-1: its new domain's port appears, revision 2 says so.
  int64_t web1 = AddPort("vnet2", "52:54:00:00:00:11");
  auto moved = Lab(2, "host-1", 2);
  ASSERT_TRUE(agent_->Submit(moved));
  auto start = std::chrono::steady_clock::now();
  auto r = agent_->SyncNow();
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status().ToString() << "\n" << sandbox_.LogTail();
  EXPECT_EQ(r->flows.mode, ovs::PlanMode::kIncremental);
  EXPECT_GT(r->flows.added + r->flows.modified + r->flows.removed, 0u);
  // Equal by key and actions: an incremental apply leaves unchanged flows with the cookie
  // (revision) that last changed them.
  auto want = Desired(moved, {{"web-0", web0}, {"db-0", db0}, {"web-1", web1}});
  auto got = DumpFlows();
  EXPECT_EQ(got.size(), want.size());
  EXPECT_EQ(ovs::DescribeFlowDifference(want, got), "");
  std::printf("[ figures ] instance move onto this host: +%zu ~%zu -%zu flows in %.1f ms\n",
              r->flows.added, r->flows.modified, r->flows.removed, Ms(took));

  // ...and away again to host-3 (generation 3): its port here stays but is cut off.
  auto away = Lab(3, "host-3", 3);
  ASSERT_TRUE(agent_->Submit(away));
  start = std::chrono::steady_clock::now();
  r = agent_->SyncNow();
  took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->flows.mode, ovs::PlanMode::kIncremental);
  want = Desired(away, {{"web-0", web0}, {"db-0", db0}});
  got = DumpFlows();
  EXPECT_EQ(got.size(), want.size());
  EXPECT_EQ(ovs::DescribeFlowDifference(want, got), "");
  std::printf("[ figures ] instance move away from this host: +%zu ~%zu -%zu flows in %.1f ms\n",
              r->flows.added, r->flows.modified, r->flows.removed, Ms(took));
}

TEST_F(NetworkAgentOvsTest, VswitchdRestartIsRepairedBySyncAndByThePeriodicResync) {
  int64_t web0 = AddPort("vnet0", "52:54:00:00:00:10");
  int64_t db0 = AddPort("vnet1", "52:54:00:00:01:10");
  auto t = Lab(4, "host-2", 1);
  const auto want = Desired(t, {{"web-0", web0}, {"db-0", db0}});
  ASSERT_TRUE(agent_->Submit(t));
  ASSERT_TRUE(agent_->SyncNow().ok());
  ASSERT_EQ(DumpFlows(), want);

  // Restart 1, repaired by an explicit sync.
  sandbox_.StopVswitchd();
  ASSERT_TRUE(sandbox_.StartVswitchd().ok()) << sandbox_.LogTail();
  ASSERT_TRUE(testing::WaitFor([&] { return vswitch_->DumpFlows(kBridge).ok(); }, 10s, 20ms));
  ASSERT_TRUE(DumpFlows().empty());
  auto r = agent_->SyncNow();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->reinstalled);
  EXPECT_EQ(r->flows.mode, ovs::PlanMode::kReplace);
  EXPECT_EQ(DumpFlows(), want);

  // Restart 2 with the worker running: it notices on its own (resync every 300 ms).
  agent_->Start();
  sandbox_.StopVswitchd();
  ASSERT_TRUE(sandbox_.StartVswitchd().ok()) << sandbox_.LogTail();
  auto restarted = std::chrono::steady_clock::now();
  ASSERT_TRUE(testing::WaitFor([&] { return DumpFlows() == want; }, 15s, 20ms))
      << sandbox_.LogTail();
  std::printf("[ figures ] flows back %.0f ms after ovs-vswitchd restarted (resync 300 ms)\n",
              Ms(std::chrono::steady_clock::now() - restarted));
  EXPECT_EQ(agent_->applied_revision(), 4);
}

}  // namespace
}  // namespace regen
