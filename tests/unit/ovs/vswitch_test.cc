// Unit tests of the VSwitch layer without a real OVS: name and port-spec validation, SyncFlows over
// FakeVSwitch (replace, in sync, minimal diff, lost or failed bundles, OVS down, a foreign writer,
// an OVS restart), and OvsVSwitch's exact ovs-vsctl/ovs-ofctl argv and error mapping through
// FakeCommandRunner.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ovs/flows.h"
#include "ovs/ovs_vswitch.h"
#include "ovs/vswitch.h"
#include "tests/fakes/fake_command_runner.h"
#include "tests/fakes/fake_vswitch.h"

namespace regen::ovs {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using testing::FakeCommandRunner;
using testing::FakeVSwitch;
using ::testing::HasSubstr;

std::vector<Flow> Flows(uint64_t cookie, int n, int first_port = 3) {
  std::vector<Flow> flows = {Flow{cookie, 0, 0, "", "drop"}, Flow{cookie, 40, 0, "", "drop"}};
  for (int i = 0; i < n; ++i)
    flows.push_back(Flow{
        cookie, 40, 100,
        "dl_dst=52:54:00:00:" + std::to_string(10 + i / 90) + ":" + std::to_string(10 + i % 90),
        "output:" + std::to_string(first_port + i)});
  std::sort(flows.begin(), flows.end(), FlowLess);
  return flows;
}

TEST(ValidateTest, SwitchNames) {
  for (const char* good : {"br-int", "vnet0", "vxlan0", "a", "tap_1.2", "vnet-web-0-1234"})
    EXPECT_TRUE(ValidateSwitchName("port", good).ok()) << good;
  for (const char* bad : {"", "-br", ".", "..", "br int", "br/int", "br:int", "vnet-web-0-123456",
                          "br\nint", "br\"int"}) {
    Status s = ValidateSwitchName("bridge", bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("bridge \"")) << s.message();
    EXPECT_THAT(s.message(), HasSubstr("1-15 characters")) << s.message();
  }
}

TEST(ValidateTest, PortSpecs) {
  PortSpec tunnel{.name = "vxlan0", .type = PortType::kVxlan};
  EXPECT_TRUE(ValidatePortSpec(tunnel).ok());
  tunnel.remote_ip = "192.168.100.2";
  tunnel.local_ip = "192.168.100.1";
  tunnel.key = "5001";
  tunnel.dst_port = 4790;
  EXPECT_TRUE(ValidatePortSpec(tunnel).ok());
  auto refused = [](PortSpec p, const std::string& needle) {
    Status s = ValidatePortSpec(p);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << needle;
    EXPECT_THAT(s.message(), HasSubstr(needle));
  };
  refused(PortSpec{.name = "vxlan0", .type = PortType::kVxlan, .remote_ip = ""}, "remote_ip");
  refused(PortSpec{.name = "vxlan0", .type = PortType::kVxlan, .remote_ip = "10.0.0"},
          "options:remote_ip: \"10.0.0\"");
  refused(PortSpec{.name = "vxlan0", .type = PortType::kGeneve, .key = "16777216"}, "options:key");
  refused(PortSpec{.name = "vxlan0", .type = PortType::kGeneve, .key = "x,y=1"}, "options:key");
  refused(PortSpec{.name = "vxlan0", .type = PortType::kVxlan, .dst_port = 70000}, "dst_port");
  refused(PortSpec{.name = "vnet0", .type = PortType::kInternal, .key = "1"},
          "apply to vxlan and geneve ports only");
  refused(PortSpec{.name = "vnet0", .ofport_request = 70000}, "ofport_request 70000");
  refused(PortSpec{.name = "vnet0", .external_ids = {{"Iface Id", "x"}}}, "external_ids key");
  refused(PortSpec{.name = "vnet0", .external_ids = {{"iface-id", "a\nb"}}}, "printable ASCII");
  refused(PortSpec{.name = "vnet 0"}, "port \"vnet 0\"");
}

TEST(DescribeFlowDifferenceTest, NamesMissingUnexpectedAndChanged) {
  auto desired = Flows(1, 3);
  EXPECT_EQ(DescribeFlowDifference(desired, desired), "");
  auto installed = desired;
  installed.erase(installed.begin());                        // missing
  installed.push_back(Flow{1, 10, 5, "in_port=9", "drop"});  // unexpected
  installed.back().actions = "drop";
  installed[1].actions = "output:99";  // different
  const std::string d = DescribeFlowDifference(desired, installed);
  EXPECT_THAT(d, HasSubstr("1 missing: cookie=0x1,table=0,priority=0 actions=drop"));
  EXPECT_THAT(d, HasSubstr("1 unexpected: cookie=0x1,table=10,priority=5,in_port=9"));
  EXPECT_THAT(d, HasSubstr("with other actions"));
  EXPECT_THAT(d, HasSubstr("actions=output:99 (want"));
}

class SyncFlowsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(vswitch_.EnsureBridge("br-int").ok()); }
  std::vector<Flow> Dump() { return vswitch_.DumpFlows("br-int").value(); }
  FakeVSwitch vswitch_;
};

TEST_F(SyncFlowsTest, ReplaceThenInSyncThenMinimalDiff) {
  const auto first = Flows(1, 50);
  auto r = SyncFlows(vswitch_, "br-int", first);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->mode, PlanMode::kReplace);
  EXPECT_EQ(r->added, first.size());
  EXPECT_EQ(Dump(), first);

  r = SyncFlows(vswitch_, "br-int", first);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mode, PlanMode::kInSync);
  EXPECT_THAT(vswitch_.applied_modes(), ElementsAre(PlanMode::kReplace));  // nothing applied

  // Revision 2 changes one port: one modify; the other flows keep cookie 1.
  auto second = Flows(2, 50);
  second[5].actions = "output:999";
  r = SyncFlows(vswitch_, "br-int", second);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->mode, PlanMode::kIncremental);
  EXPECT_EQ(r->modified, 1u);
  EXPECT_EQ(r->added + r->removed, 0u);
  EXPECT_EQ(r->cookie_only, second.size() - 1);
  auto dumped = Dump();
  EXPECT_EQ(
      std::count_if(dumped.begin(), dumped.end(), [](const Flow& f) { return f.cookie == 2; }), 1);
  EXPECT_EQ(DescribeFlowDifference(second, dumped), "");
}

TEST_F(SyncFlowsTest, LostBundleIsCaughtByVerification) {
  ASSERT_TRUE(SyncFlows(vswitch_, "br-int", Flows(1, 10)).ok());
  vswitch_.LoseNextApply();
  auto r = SyncFlows(vswitch_, "br-int", Flows(2, 11));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInternal);
  EXPECT_THAT(r.status().message(), HasSubstr("bridge br-int: after a incremental apply"));
  EXPECT_THAT(r.status().message(), HasSubstr("1 missing"));
  // Without verification the loss goes unnoticed (which is why verify defaults to on).
  vswitch_.LoseNextApply();
  EXPECT_TRUE(SyncFlows(vswitch_, "br-int", Flows(2, 11), SyncOptions{.verify = false}).ok());
  // The next sync repairs it.
  ASSERT_TRUE(SyncFlows(vswitch_, "br-int", Flows(2, 11)).ok());
  EXPECT_EQ(DescribeFlowDifference(Flows(2, 11), Dump()), "");
}

TEST_F(SyncFlowsTest, FailedBundleChangesNothingAndIsReported) {
  ASSERT_TRUE(SyncFlows(vswitch_, "br-int", Flows(1, 10)).ok());
  vswitch_.FailNextApply(
      Internal("bridge br-int: apply incremental plan: ovs-ofctl exited with 1"));
  auto r = SyncFlows(vswitch_, "br-int", Flows(2, 12));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("ovs-ofctl exited with 1"));
  EXPECT_EQ(Dump(), Flows(1, 10));
}

TEST_F(SyncFlowsTest, DownSwitchIsUnavailableAndNothingIsApplied) {
  vswitch_.SetDown(true);
  auto r = SyncFlows(vswitch_, "br-int", Flows(1, 3));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_TRUE(vswitch_.applied_modes().empty());
  vswitch_.SetDown(false);
  EXPECT_TRUE(Dump().empty());
  // A missing bridge is NOT_FOUND from the dump; nothing applied either.
  auto missing = SyncFlows(vswitch_, "br-ext", Flows(1, 3));
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_TRUE(vswitch_.applied_modes().empty());
}

TEST_F(SyncFlowsTest, ForeignFlowsAreRemovedAndRestartIsRepaired) {
  const auto desired = Flows(1, 10);
  ASSERT_TRUE(SyncFlows(vswitch_, "br-int", desired).ok());
  vswitch_.InjectFlow("br-int", Flow{0, 0, 500, "in_port=7", "NORMAL"});
  auto r = SyncFlows(vswitch_, "br-int", desired);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mode, PlanMode::kIncremental);
  EXPECT_EQ(r->removed, 1u);
  EXPECT_EQ(Dump(), desired);
  vswitch_.ClearFlows("br-int");  // ovs-vswitchd restarted
  r = SyncFlows(vswitch_, "br-int", desired);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->mode, PlanMode::kReplace);
  EXPECT_EQ(Dump(), desired);
}

TEST(FakeVSwitchTest, PortsGetOfportsAndErrorsLikeOvs) {
  FakeVSwitch v;
  EXPECT_EQ(v.EnsurePort("br-int", PortSpec{.name = "vnet0"}).status().code(), Code::kNotFound);
  ASSERT_TRUE(v.EnsureBridge("br-int").ok());
  auto a = v.EnsurePort("br-int", PortSpec{.name = "vnet0"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->ofport, 1);
  auto b = v.EnsurePort("br-int",
                        PortSpec{.name = "vxlan0", .type = PortType::kVxlan, .ofport_request = 7});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->ofport, 7);
  EXPECT_EQ(b->options.at("remote_ip"), "flow");
  EXPECT_EQ(v.EnsurePort("br-int", PortSpec{.name = "vnet1", .ofport_request = 7}).status().code(),
            Code::kFailedPrecondition);
  v.SetDeviceMissing("vnet2");
  EXPECT_THAT(v.EnsurePort("br-int", PortSpec{.name = "vnet2"}).status().message(),
              HasSubstr("could not open network device vnet2"));
  ASSERT_TRUE(v.RemovePort("br-int", "vnet0").ok());
  auto ports = v.ListPorts("br-int");
  ASSERT_TRUE(ports.ok());
  ASSERT_EQ(ports->size(), 1u);
  EXPECT_EQ((*ports)[0].name, "vxlan0");
}

// --- OvsVSwitch argv and errors ------------------------------------------------------------

OvsVSwitchOptions Options() {
  OvsVSwitchOptions o;
  o.db_socket = "/tmp/sb/db.sock";
  o.run_dir = "/tmp/sb";
  o.timeout = 2500ms;
  return o;
}

CommandOutput Ok(std::string out = "") { return CommandOutput{0, std::move(out), ""}; }
CommandOutput Fail(int code, std::string err) { return CommandOutput{code, "", std::move(err)}; }

constexpr char kInterfaces[] =
    R"({"data":[["br-int",65534,"internal",["map",[]],["map",[]],["set",[]]],)"
    R"(["vnet0",3,"",["map",[["iface-id","web-0"]]],["map",[]],["set",[]]],)"
    R"(["other",9,"internal",["map",[]],["map",[]],["set",[]]],)"
    R"(["vxlan0",1,"vxlan",["map",[]],["map",[["key","flow"],["remote_ip","flow"]]],["set",[]]],)"
    R"(["vnet9",-1,"",["map",[]],["map",[]],"could not open network device vnet9"],)"
    R"(["vnet8",["set",[]],"",["map",[]],["map",[]],["set",[]]]],)"
    R"("headings":["name","ofport","type","external_ids","options","error"]})";

TEST(OvsVSwitchTest, EnsureBridgeArgv) {
  FakeCommandRunner runner;
  OvsVSwitch v(runner, Options());
  ASSERT_TRUE(v.EnsureBridge("br-int").ok());
  auto calls = runner.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_THAT(
      calls[0].argv,
      ElementsAre("ovs-vsctl", "--db=unix:/tmp/sb/db.sock", "--timeout=3", "--", "--may-exist",
                  "add-br", "br-int", "--", "set", "Bridge", "br-int", "datapath_type=netdev",
                  "fail_mode=secure", "protocols=OpenFlow10,OpenFlow13,OpenFlow14"));
  EXPECT_EQ(calls[0].timeout, 4500ms);  // ovs-vsctl's own --timeout fires first
  EXPECT_EQ(v.OfctlTarget("br-int"), "unix:/tmp/sb/br-int.mgmt");
  // Bad names never reach a command.
  runner.ClearCalls();
  EXPECT_EQ(v.EnsureBridge("br-int --").code(), Code::kInvalidArgument);
  EXPECT_EQ(v.DumpFlows("../x").status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(runner.calls().empty());
}

TEST(OvsVSwitchTest, ListPortsKeepsOnlyTheBridgesInterfaces) {
  FakeCommandRunner runner;
  runner.SetHandler([](const FakeCommandRunner::Call&) {
    return Result<CommandOutput>(Ok(std::string("vnet0\nvnet8\nvnet9\nvxlan0\n") + kInterfaces));
  });
  OvsVSwitch v(runner, Options());
  auto ports = v.ListPorts("br-int");
  ASSERT_TRUE(ports.ok()) << ports.status().ToString();
  ASSERT_EQ(ports->size(), 4u);
  EXPECT_EQ((*ports)[0].name, "vnet0");
  EXPECT_EQ((*ports)[0].ofport, 3);
  EXPECT_EQ((*ports)[0].type, PortType::kSystem);
  EXPECT_EQ((*ports)[0].external_ids.at("iface-id"), "web-0");
  EXPECT_EQ((*ports)[1].name, "vnet8");
  EXPECT_EQ((*ports)[1].ofport, -1);  // not assigned yet
  EXPECT_EQ((*ports)[2].error, "could not open network device vnet9");
  EXPECT_EQ((*ports)[3].type, PortType::kVxlan);
  EXPECT_EQ((*ports)[3].options.at("remote_ip"), "flow");
  EXPECT_THAT(
      runner.calls()[0].argv,
      ElementsAre("ovs-vsctl", "--db=unix:/tmp/sb/db.sock", "--timeout=3", "--format=json", "--",
                  "list-ifaces", "br-int", "--",
                  "--columns=name,ofport,type,options,external_ids,error", "list", "Interface"));
  EXPECT_FALSE(ParseInterfaceTable("{\"data\":[]}").ok());  // no headings
  EXPECT_FALSE(ParseInterfaceTable("not json").ok());
}

TEST(OvsVSwitchTest, EnsureTunnelPortArgvAndReadBack) {
  FakeCommandRunner runner;
  bool added = false;
  runner.SetHandler([&](const FakeCommandRunner::Call& call) -> Result<CommandOutput> {
    if (call.argv[4] == "--may-exist") added = true;
    const std::string ifaces = added ? "vnet0\nvxlan0\n" : "vnet0\n";
    return Ok(ifaces + kInterfaces);
  });
  OvsVSwitch v(runner, Options());
  PortSpec spec{.name = "vxlan0",
                .type = PortType::kVxlan,
                .remote_ip = "flow",
                .key = "flow",
                .ofport_request = 1,
                .external_ids = {{"regen-owner", "a b\"c"}}};
  auto port = v.EnsurePort("br-int", spec);
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(port->ofport, 1);
  auto calls = runner.calls();
  ASSERT_EQ(calls.size(), 3u);  // list, add, list
  EXPECT_THAT(calls[1].argv,
              ElementsAre("ovs-vsctl", "--db=unix:/tmp/sb/db.sock", "--timeout=3", "--",
                          "--may-exist", "add-port", "br-int", "vxlan0", "--", "set", "Interface",
                          "vxlan0", "type=vxlan", "options={remote_ip=flow,key=flow}",
                          "ofport_request=1", "external_ids:regen-owner=\"a b\\\"c\""));
}

TEST(OvsVSwitchTest, UnusableNewPortIsRemovedAgain) {
  FakeCommandRunner runner;
  int lists = 0;
  runner.SetHandler([&](const FakeCommandRunner::Call& call) -> Result<CommandOutput> {
    if (call.argv.size() > 5 && call.argv[5] == "list-ifaces")
      return Ok(++lists == 1 ? std::string("vnet0\n") + kInterfaces
                             : std::string("vnet0\nvnet9\n") + kInterfaces);
    return Ok();
  });
  OvsVSwitch v(runner, Options());
  auto port = v.EnsurePort("br-int", PortSpec{.name = "vnet9"});
  ASSERT_FALSE(port.ok());
  EXPECT_EQ(port.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(port.status().message(),
              HasSubstr("bridge br-int port vnet9: Open vSwitch cannot use the interface: could "
                        "not open network device vnet9"));
  EXPECT_THAT(port.status().message(), HasSubstr("the port was removed again"));
  auto calls = runner.calls();
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_THAT(calls[3].argv, ElementsAre("ovs-vsctl", "--db=unix:/tmp/sb/db.sock", "--timeout=3",
                                         "--", "--if-exists", "del-port", "br-int", "vnet9"));
}

TEST(OvsVSwitchTest, ApplyPlanRunsOneBundleOnTheMgmtSocket) {
  FakeCommandRunner runner;
  OvsVSwitch v(runner, Options());
  FlowPlan plan = PlanFlowChanges(Flows(2, 3), {});
  ASSERT_EQ(plan.mode, PlanMode::kReplace);
  ASSERT_TRUE(v.ApplyPlan("br-int", plan).ok());
  auto calls = runner.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_THAT(calls[0].argv, ElementsAre("ovs-ofctl", "--bundle", "replace-flows",
                                         "unix:/tmp/sb/br-int.mgmt", "-"));
  EXPECT_EQ(calls[0].input, FormatFlows(Flows(2, 3)));
  EXPECT_EQ(calls[0].timeout, 2500ms);
  // In sync: no command at all.
  runner.ClearCalls();
  ASSERT_TRUE(v.ApplyPlan("br-int", PlanFlowChanges(Flows(2, 3), Flows(2, 3))).ok());
  EXPECT_TRUE(runner.calls().empty());
}

TEST(OvsVSwitchTest, FailuresNameBridgeCommandAndStderr) {
  FakeCommandRunner runner;
  OvsVSwitch v(runner, Options());
  runner.SetHandler([](const FakeCommandRunner::Call& call) -> Result<CommandOutput> {
    if (call.argv[0] == "ovs-ofctl")
      return Fail(1,
                  "ovs-ofctl: unix:/tmp/sb/br-int.mgmt: failed to open socket (Connection "
                  "refused)\n");
    return Fail(1, "ovs-vsctl: no bridge named br-x\n");
  });
  auto dump = v.DumpFlows("br-int");
  ASSERT_FALSE(dump.ok());
  EXPECT_EQ(dump.status().code(), Code::kUnavailable);
  EXPECT_EQ(dump.status().message(),
            "bridge br-int: dump flows: ovs-ofctl --no-names dump-flows unix:/tmp/sb/br-int.mgmt "
            "exited with 1: ovs-ofctl: unix:/tmp/sb/br-int.mgmt: failed to open socket "
            "(Connection refused); is ovs-vswitchd running with OVS_RUNDIR=/tmp/sb, and does the "
            "bridge exist?");
  auto port = v.RemovePort("br-x", "vnet0");
  EXPECT_EQ(port.code(), Code::kNotFound);
  EXPECT_THAT(port.message(), HasSubstr("bridge br-x port vnet0: remove port: ovs-vsctl"));
  EXPECT_THAT(port.message(), HasSubstr("no bridge named br-x"));

  runner.SetHandler([](const FakeCommandRunner::Call& call) -> Result<CommandOutput> {
    return DeadlineExceeded(FormatArgv(call.argv) + " did not finish within 4500 ms");
  });
  Status slow = v.EnsureBridge("br-int");
  EXPECT_EQ(slow.code(), Code::kDeadlineExceeded);
  EXPECT_THAT(slow.message(), HasSubstr("bridge br-int: ensure bridge: ovs-vsctl"));
  EXPECT_THAT(slow.message(), HasSubstr("ovs-vsctl waits for ovs-vswitchd"));

  runner.SetHandler([](const FakeCommandRunner::Call&) -> Result<CommandOutput> {
    return Unavailable("cannot start ovs-vsctl: No such file or directory");
  });
  Status missing = v.EnsureBridge("br-int");
  EXPECT_EQ(missing.code(), Code::kUnavailable);
  EXPECT_THAT(missing.message(), HasSubstr("openvswitch-switch"));

  runner.SetHandler([](const FakeCommandRunner::Call&) -> Result<CommandOutput> {
    return Ok("NXST_FLOW reply (xid=0x4):\n garbage\n");
  });
  auto garbage = v.DumpFlows("br-int");
  ASSERT_FALSE(garbage.ok());
  EXPECT_THAT(garbage.status().message(), HasSubstr("bridge br-int: dump flows: "));
}

}  // namespace
}  // namespace regen::ovs
