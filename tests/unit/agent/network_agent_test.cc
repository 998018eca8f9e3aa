// NetworkAgent over the FakeVSwitch: the first revision builds the bridge, the tunnel and this
// host's flow set; ports are found by iface-id or attached-mac; older revisions are dropped and a
// newer one waiting replaces the one not yet applied; each revision is acked once; an OVS restart
// (flows gone, bridge gone) or a foreign writer is repaired by a full re-install; the worker
// applies a submitted revision, retries after OVS comes back and resyncs periodically.
#include "agent/network_agent.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_vswitch.h"

namespace regen {
namespace {

using namespace std::chrono_literals;
using testing::FakeClock;
using testing::FakeVSwitch;

constexpr char kBridge[] = "br-int";

v1::TopologyRevision Topo(int64_t revision, const std::string& web1_host, int64_t web1_gen) {
  v1::TopologyRevision t;
  t.set_revision(revision);
  for (auto [name, ip] : {std::pair{"host-1", "192.168.100.1"}, {"host-2", "192.168.100.2"}}) {
    auto* h = t.add_hosts();
    h->set_name(name);
    h->set_address(ip);
  }
  auto add = [&](const char* name, const char* service, const std::string& host, const char* ip,
                 const char* mac, int64_t gen) {
    auto* i = t.add_instances();
    i->set_name(name);
    i->set_service(service);
    i->set_host(host);
    i->set_ip(ip);
    i->set_mac(mac);
    i->set_generation(gen);
  };
  add("web-0", "web", "host-1", "10.0.0.10", "52:54:00:00:00:10", 1);
  add("web-1", "web", web1_host, "10.0.0.11", "52:54:00:00:00:11", web1_gen);
  add("db-0", "db", "host-2", "10.0.1.10", "52:54:00:00:01:10", 1);
  return t;
}

class NetworkAgentTest : public ::testing::Test {
 protected:
  NetworkAgentTest() : agent_(Options(), vswitch_, clock_) {
    agent_.SetAppliedCallback([this](int64_t rev) {
      std::lock_guard lock(mu_);
      acks_.push_back(rev);
    });
  }

  static NetworkAgentOptions Options() {
    NetworkAgentOptions o;
    o.host = "host-1";
    o.tunnel_ip = "192.168.100.1";
    o.resync_interval = 100ms;
    o.retry_initial = 10ms;
    return o;
  }

  // An instance's tap as libvirt adds it: iface-id = the domain uuid, attached-mac = its MAC.
  int64_t AddTap(const std::string& name, const std::string& mac, const std::string& iface_id) {
    ovs::PortSpec p;
    p.name = name;
    p.external_ids = {{"iface-id", iface_id}, {"attached-mac", mac}};
    auto info = vswitch_.EnsurePort(kBridge, p);
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    return info.ok() ? info->ofport : -1;
  }

  // The flows BuildFlowSet gives for `t` on host-1 with the given instance ofports.
  std::vector<ovs::Flow> Expected(const v1::TopologyRevision& t,
                                  const std::map<std::string, int64_t>& ofports) {
    ovs::Topology topo = TopologyFromProto(t);
    std::vector<ovs::TopologyInstance> kept;
    for (auto in : topo.instances) {
      if (in.host == "host-1") {
        auto it = ofports.find(in.name);
        if (it == ofports.end()) continue;
        in.ofport = it->second;
      }
      kept.push_back(in);
    }
    topo.instances = kept;
    auto ports = vswitch_.ListPorts(kBridge);
    int64_t tunnel = 0;
    for (const auto& p : *ports)
      if (p.name == "regen-vxlan") tunnel = p.ofport;
    auto flows = ovs::BuildFlowSet(topo, {"host-1", tunnel});
    EXPECT_TRUE(flows.ok()) << flows.status().ToString();
    return flows.ok() ? *flows : std::vector<ovs::Flow>{};
  }

  std::vector<ovs::Flow> Installed() {
    auto f = vswitch_.DumpFlows(kBridge);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? *f : std::vector<ovs::Flow>{};
  }

  std::vector<int64_t> Acks() {
    std::lock_guard lock(mu_);
    return acks_;
  }

  FakeVSwitch vswitch_;
  FakeClock clock_;
  NetworkAgent agent_;
  std::mutex mu_;
  std::vector<int64_t> acks_;
};

TEST_F(NetworkAgentTest, NothingHappensBeforeTheFirstRevision) {
  auto r = agent_.SyncNow();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->revision, 0);
  EXPECT_TRUE(vswitch_.ListBridges()->empty());
  EXPECT_TRUE(Acks().empty());
}

TEST_F(NetworkAgentTest, FirstRevisionBuildsBridgeTunnelAndThisHostsFlows) {
  ASSERT_TRUE(vswitch_.EnsureBridge(kBridge).ok());
  int64_t web0 = AddTap("vnet0", "52:54:00:00:00:10", "uuid-of-web-0");
  ASSERT_TRUE(agent_.Submit(Topo(1, "host-2", 1)));
  auto r = agent_.SyncNow();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->revision, 1);
  EXPECT_TRUE(r->new_revision);
  EXPECT_EQ(r->local, std::vector<std::string>{"web-0"});
  EXPECT_EQ(Installed(), Expected(Topo(1, "host-2", 1), {{"web-0", web0}}));
  auto ports = vswitch_.ListPorts(kBridge);
  ASSERT_TRUE(ports.ok());
  bool tunnel = false;
  for (const auto& p : *ports) {
    if (p.name != "regen-vxlan") continue;
    tunnel = true;
    EXPECT_EQ(p.type, ovs::PortType::kVxlan);
    EXPECT_EQ(p.options.at("remote_ip"), "flow");
    EXPECT_EQ(p.options.at("local_ip"), "192.168.100.1");
    EXPECT_EQ(p.ofport, 4000);
  }
  EXPECT_TRUE(tunnel);
  EXPECT_EQ(Acks(), std::vector<int64_t>{1});
  EXPECT_EQ(agent_.applied_revision(), 1);
  // In sync: a second pass changes nothing and acks nothing again.
  r = agent_.SyncNow();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->flows.mode, ovs::PlanMode::kInSync);
  EXPECT_FALSE(r->new_revision);
  EXPECT_EQ(Acks(), std::vector<int64_t>{1});
}

TEST_F(NetworkAgentTest, PortsAreFoundByIfaceIdOrAttachedMacAndLatePortsGetFlows) {
  ASSERT_TRUE(vswitch_.EnsureBridge(kBridge).ok());
  v1::TopologyRevision t = Topo(1, "host-1", 2);
  t.mutable_instances(1)->set_port("web-1-port");  // found by iface-id
  ASSERT_TRUE(agent_.Submit(t));
  int64_t web1 = AddTap("tap-web1", "52:54:00:00:99:99", "web-1-port");
  auto r = agent_.SyncNow();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->local, std::vector<std::string>{"web-1"});
  EXPECT_EQ(r->local_missing, std::vector<std::string>{"web-0"});
  EXPECT_EQ(Installed(), Expected(t, {{"web-1", web1}}));
  // web-0's domain comes up: found by its MAC in attached-mac.
  int64_t web0 = AddTap("tap-web0", "52:54:00:00:00:10", "some-uuid");
  agent_.Poke();
  r = agent_.SyncNow();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->local_missing.empty());
  EXPECT_EQ(
      ovs::DescribeFlowDifference(Expected(t, {{"web-1", web1}, {"web-0", web0}}), Installed()),
      "");
  EXPECT_EQ(Acks(), std::vector<int64_t>{1});  // same revision: acked once
}

TEST_F(NetworkAgentTest, OlderRevisionsAreDroppedAndANewerOneReplacesOneNotYetApplied) {
  ASSERT_TRUE(vswitch_.EnsureBridge(kBridge).ok());
  int64_t web0 = AddTap("vnet0", "52:54:00:00:00:10", "x");
  ASSERT_TRUE(agent_.Submit(Topo(5, "host-2", 1)));
  ASSERT_TRUE(agent_.SyncNow().ok());
  EXPECT_FALSE(agent_.Submit(Topo(4, "host-1", 9)));  // older
  v1::TopologyRevision equal_delta = Topo(5, "host-1", 9);
  equal_delta.set_base_revision(4);
  EXPECT_FALSE(agent_.Submit(equal_delta));  // equal, and not a whole slice
  auto r = agent_.SyncNow();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->revision, 5);
  EXPECT_EQ(Installed(), Expected(Topo(5, "host-2", 1), {{"web-0", web0}}));
  // 6 and 7 arrive before the worker gets to them: 7 is applied, 6 never is, and 6 late is dropped.
  ASSERT_TRUE(agent_.Submit(Topo(6, "host-2", 2)));
  ASSERT_TRUE(agent_.Submit(Topo(7, "host-1", 3)));  // moves here; its port is not there yet
  EXPECT_FALSE(agent_.Submit(Topo(6, "host-2", 2)));
  r = agent_.SyncNow();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->revision, 7);
  EXPECT_EQ(r->flows.mode, ovs::PlanMode::kIncremental);
  // An incremental apply leaves unchanged flows with the cookie (revision) that last changed them.
  EXPECT_EQ(
      ovs::DescribeFlowDifference(Expected(Topo(7, "host-1", 3), {{"web-0", web0}}), Installed()),
      "");
  EXPECT_EQ(Acks(), (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(agent_.latest_revision(), 7);
}

// Issue 17: deltas build on the newest revision kept; one that does not is dropped and the agent
// needs its whole slice (the link asks the controller), until one comes.
TEST_F(NetworkAgentTest, DeltasApplyOnTheirBaseAndAMissingBaseAsksForTheWholeSlice) {
  ASSERT_TRUE(vswitch_.EnsureBridge(kBridge).ok());
  int64_t web0 = AddTap("vnet0", "52:54:00:00:00:10", "x");
  v1::TopologyRevision gap;  // a delta on revision 3, which this agent never had
  gap.set_revision(4);
  gap.set_base_revision(3);
  EXPECT_FALSE(agent_.Submit(gap));
  EXPECT_TRUE(agent_.snapshot_needed());
  ASSERT_TRUE(agent_.Submit(Topo(5, "host-2", 1)));  // a whole slice
  EXPECT_FALSE(agent_.snapshot_needed());
  // web-1 is healed onto this host (generation 2): a delta with its entry only.
  v1::TopologyRevision delta;
  delta.set_revision(6);
  delta.set_base_revision(5);
  *delta.add_instances() = Topo(6, "host-1", 2).instances(1);
  ASSERT_EQ(delta.instances(0).name(), "web-1");
  ASSERT_TRUE(agent_.Submit(delta));
  auto r = agent_.SyncNow();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->revision, 6);
  EXPECT_EQ(
      ovs::DescribeFlowDifference(Expected(Topo(6, "host-1", 2), {{"web-0", web0}}), Installed()),
      "")
      << "the delta on revision 5 gives revision 6's flows";
  // db-0 goes (its service left this host's slice): removed by name.
  v1::TopologyRevision drop;
  drop.set_revision(7);
  drop.set_base_revision(6);
  drop.add_removed_instances("db-0");
  ASSERT_TRUE(agent_.Submit(drop));
  v1::TopologyRevision without_db = Topo(7, "host-1", 2);
  without_db.mutable_instances()->RemoveLast();  // db-0 is the last entry
  without_db.mutable_hosts()->RemoveLast();      // and host-2 then holds nothing of this slice
  ASSERT_TRUE(agent_.SyncNow().ok());
  EXPECT_EQ(ovs::DescribeFlowDifference(Expected(without_db, {{"web-0", web0}}), Installed()), "");
  EXPECT_FALSE(agent_.snapshot_needed());
}

// A new session's whole slice at the revision the agent has replaces its content: the content of
// a revision can differ between controllers (one that reloaded its store after a refused write,
// one that sent the whole cluster), and deltas build on the new one.
TEST_F(NetworkAgentTest, AWholeSliceAtTheSameRevisionReplacesTheContent) {
  ASSERT_TRUE(vswitch_.EnsureBridge(kBridge).ok());
  int64_t web0 = AddTap("vnet0", "52:54:00:00:00:10", "x");
  ASSERT_TRUE(agent_.Submit(Topo(5, "host-2", 1)));
  ASSERT_TRUE(agent_.SyncNow().ok());
  ASSERT_TRUE(agent_.Submit(Topo(5, "host-1", 2)));  // web-1 here at generation 2, same revision
  auto r = agent_.SyncNow();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->revision, 5);
  EXPECT_EQ(
      ovs::DescribeFlowDifference(Expected(Topo(5, "host-1", 2), {{"web-0", web0}}), Installed()),
      "");
  EXPECT_EQ(Acks(), std::vector<int64_t>{5}) << "acked once";
}

TEST_F(NetworkAgentTest, OvsRestartAndForeignFlowsAreRepairedByAFullReinstall) {
  ASSERT_TRUE(vswitch_.EnsureBridge(kBridge).ok());
  int64_t web0 = AddTap("vnet0", "52:54:00:00:00:10", "x");
  ASSERT_TRUE(agent_.Submit(Topo(3, "host-2", 1)));
  ASSERT_TRUE(agent_.SyncNow().ok());
  const auto want = Expected(Topo(3, "host-2", 1), {{"web-0", web0}});

  // ovs-vswitchd restarted: OpenFlow tables empty, OVSDB (ports) kept.
  vswitch_.ClearFlows(kBridge);
  auto r = agent_.SyncNow();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->reinstalled);
  EXPECT_EQ(r->flows.mode, ovs::PlanMode::kReplace);
  EXPECT_EQ(Installed(), want);

  // Another writer left a flow with a cookie from the future: everything is re-installed.
  vswitch_.InjectFlow(kBridge, {99, 0, 300, "in_port=1", "drop"});
  r = agent_.SyncNow();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->reinstalled);
  EXPECT_EQ(r->flows.mode, ovs::PlanMode::kReplace);
  EXPECT_EQ(Installed(), want);

  // OVSDB lost too: bridge, tunnel and flows come back (the instance's tap is libvirt's to add).
  ASSERT_TRUE(vswitch_.DeleteBridge(kBridge).ok());
  r = agent_.SyncNow();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->reinstalled);
  EXPECT_EQ(r->local_missing, std::vector<std::string>{"web-0"});
  EXPECT_EQ(Installed(), Expected(Topo(3, "host-2", 1), {}));
  EXPECT_EQ(Acks(), std::vector<int64_t>{3});  // repairs are not new revisions
}

TEST_F(NetworkAgentTest, BadTopologyIsAnErrorAndChangesNothing) {
  ASSERT_TRUE(vswitch_.EnsureBridge(kBridge).ok());
  AddTap("vnet0", "52:54:00:00:00:10", "x");
  ASSERT_TRUE(agent_.Submit(Topo(1, "host-2", 1)));
  ASSERT_TRUE(agent_.SyncNow().ok());
  auto before = Installed();
  v1::TopologyRevision bad = Topo(2, "host-2", 1);
  bad.mutable_instances(2)->set_mac("52:54:00:00:00:10");  // db-0 claims web-0's MAC
  ASSERT_TRUE(agent_.Submit(bad));
  auto r = agent_.SyncNow();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("52:54:00:00:00:10"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(Installed(), before);
  EXPECT_EQ(agent_.applied_revision(), 1);
}

// Waits (real time, bounded) for `pred`.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

TEST_F(NetworkAgentTest, WorkerAppliesSubmittedRevisionsRetriesWhileOvsIsDownAndResyncs) {
  ASSERT_TRUE(vswitch_.EnsureBridge(kBridge).ok());
  int64_t web0 = AddTap("vnet0", "52:54:00:00:00:10", "x");
  agent_.Start();
  ASSERT_TRUE(agent_.Submit(Topo(1, "host-2", 1)));
  ASSERT_TRUE(WaitFor([&] { return agent_.applied_revision() == 1; }));
  vswitch_.SetDown(true);
  ASSERT_TRUE(agent_.Submit(Topo(2, "host-1", 2)));
  std::this_thread::sleep_for(50ms);  // let it fail a few times
  EXPECT_EQ(agent_.applied_revision(), 1);
  vswitch_.SetDown(false);
  ASSERT_TRUE(WaitFor([&] { return agent_.applied_revision() == 2; }));
  EXPECT_EQ(Acks(), (std::vector<int64_t>{1, 2}));
  // Periodic resync: lost flows come back without any new revision.
  vswitch_.ClearFlows(kBridge);
  ASSERT_TRUE(WaitFor([&] { return !Installed().empty(); }));
  agent_.Stop();
  EXPECT_EQ(
      ovs::DescribeFlowDifference(Expected(Topo(2, "host-1", 2), {{"web-0", web0}}), Installed()),
      "");
}

}  // namespace
}  // namespace regen
