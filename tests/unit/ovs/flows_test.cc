// Unit tests of ovs/flows: golden flow sets for a 3-host, 2-service topology (REGEN_UPDATE_GOLDEN=1
// rewrites them), determinism, a moved instance, ACL isolation, the apply plan and its argv, the
// dump-flows parser and refused input.
#include "ovs/flows.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/subprocess.h"
#include "tests/fakes/test_util.h"

namespace regen::ovs {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kTunnelPort = 1;

TopologyInstance Inst(std::string name, std::string service, std::string host, std::string ip,
                      std::string mac, int64_t generation, int64_t ofport) {
  return TopologyInstance{std::move(name), std::move(service), std::move(host), std::move(ip),
                          std::move(mac),  generation,         ofport};
}

// 3 hosts; web on every host, db on host-1 and host-3; no cross-service peers.
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

LocalSwitch On(const std::string& host) { return LocalSwitch{host, kTunnelPort}; }

std::vector<Flow> BuildOrDie(const Topology& t, const std::string& host) {
  auto flows = BuildFlowSet(t, On(host));
  EXPECT_TRUE(flows.ok()) << flows.status().ToString();
  return flows.ok() ? *flows : std::vector<Flow>();
}

std::string GoldenPath(const std::string& name) {
  return testing::SourceDir() + "/tests/golden/ovs/" + name;
}

void ExpectGolden(const std::string& name, const std::string& actual) {
  const std::string path = GoldenPath(name);
  const char* update = std::getenv("REGEN_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    testing::WriteFileOrDie(path, actual);
    std::cout << "rewrote golden file " << path << "\n";
    return;
  }
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << "golden file " << path
                  << " is missing; run with REGEN_UPDATE_GOLDEN=1 to create it, then review it";
    return;
  }
  const std::string expected = testing::ReadFileOrDie(path);
  if (expected == actual) return;
  std::istringstream e(expected);
  std::istringstream a(actual);
  std::string el;
  std::string al;
  for (int line = 1;; ++line) {
    bool he = static_cast<bool>(std::getline(e, el));
    bool ha = static_cast<bool>(std::getline(a, al));
    if (!he && !ha) break;
    if (he != ha || el != al) {
      ADD_FAILURE() << "output differs from golden file " << path << " at line " << line
                    << "\n  expected: " << (he ? el : "<end of file>")
                    << "\n  actual:   " << (ha ? al : "<end of output>") << "\nfull output:\n"
                    << actual
                    << "\nIf the change is intended, run with REGEN_UPDATE_GOLDEN=1 and review "
                       "the diff of tests/golden/ovs/.";
      return;
    }
  }
  ADD_FAILURE() << "output differs from golden file " << path << " only in the final newline";
}

std::vector<Flow> InTable(const std::vector<Flow>& flows, int table) {
  std::vector<Flow> out;
  for (const auto& f : flows)
    if (f.table == table) out.push_back(f);
  return out;
}

std::vector<Flow> Matching(const std::vector<Flow>& flows, const std::string& needle) {
  std::vector<Flow> out;
  for (const auto& f : flows)
    if (f.ToString().find(needle) != std::string::npos) out.push_back(f);
  return out;
}

// The reg0 tag table 0 gives the local port `ofport`, e.g. "0x1234abcd".
std::string TagOfPort(const std::vector<Flow>& flows, int64_t ofport) {
  for (const auto& f : InTable(flows, kTableClassify)) {
    if (!f.match.ends_with("in_port=" + std::to_string(ofport))) continue;
    size_t at = f.actions.find("load:");
    size_t end = f.actions.find("->NXM_NX_REG0[]");
    if (at != std::string::npos && end != std::string::npos) return f.actions.substr(5, end - 5);
  }
  ADD_FAILURE() << "no classify flow for port " << ofport;
  return "";
}

TEST(FlowSetTest, GoldenPerHost) {
  for (const char* host : {"host-1", "host-2", "host-3"}) {
    SCOPED_TRACE(host);
    ExpectGolden(std::string(host) + ".flows", FormatFlows(BuildOrDie(Lab(), host)));
  }
}

TEST(FlowSetTest, GoldenFlowsAreAcceptedByOvsOfctl) {
  if (!testing::HaveProgram("ovs-ofctl")) {
    REGEN_REQUIRE_COMPONENT("ovs-ofctl", "apt-get install openvswitch-switch");
  }
  testing::TempDir dir("regen-flows");
  const std::string file = dir.File("flows.txt");
  testing::WriteFileOrDie(file, FormatFlows(BuildOrDie(Lab(), "host-1")));
  RealCommandRunner runner;
  auto out =
      runner.Run({"ovs-ofctl", "-O", "OpenFlow14", "parse-flows", file}, std::chrono::seconds(30));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->exit_code, 0) << out->stderr_text;
  EXPECT_THAT(out->stdout_text, HasSubstr("IN_PORT"));
}

TEST(FlowSetTest, SortedWithCookieRevisionAndDefaultDrops) {
  auto flows = BuildOrDie(Lab(), "host-1");
  EXPECT_TRUE(std::is_sorted(flows.begin(), flows.end(), FlowLess));
  for (const auto& f : flows) EXPECT_EQ(f.cookie, 7u) << f.ToString();
  for (int table : {kTableClassify, kTableSpoof, kTableArp, kTableAcl, kTableForward}) {
    auto t = InTable(flows, table);
    ASSERT_FALSE(t.empty()) << table;
    EXPECT_EQ(t.back().priority, 0);
    EXPECT_EQ(t.back().match, "");
    EXPECT_EQ(t.back().actions, "drop");
  }
}

TEST(FlowSetTest, SameInputInAnyOrderGivesSameOutput) {
  const std::string expected = FormatFlows(BuildOrDie(Lab(), "host-2"));
  std::mt19937 rng(42);
  for (int i = 0; i < 20; ++i) {
    Topology t = Lab();
    std::shuffle(t.instances.begin(), t.instances.end(), rng);
    std::shuffle(t.hosts.begin(), t.hosts.end(), rng);
    EXPECT_EQ(FormatFlows(BuildOrDie(t, "host-2")), expected) << "permutation " << i;
  }
  // Upper-case MACs are normalised.
  Topology upper = Lab();
  for (auto& in : upper.instances)
    std::transform(in.mac.begin(), in.mac.end(), in.mac.begin(), ::toupper);
  EXPECT_EQ(FormatFlows(BuildOrDie(upper, "host-2")), expected);
}

TEST(FlowSetTest, LocalDeliveryRemoteTunnelAndArpResponder) {
  auto flows = BuildOrDie(Lab(), "host-1");
  // web-0 is local on port 3, web-1 lives on host-2 (192.168.100.2 = 0xc0a86402).
  EXPECT_EQ(Matching(InTable(flows, kTableForward), "dl_dst=52:54:00:00:00:10").at(0).actions,
            "output:3");
  auto remote = Matching(InTable(flows, kTableForward), "dl_dst=52:54:00:00:00:11");
  ASSERT_EQ(remote.size(), 1u);
  EXPECT_EQ(remote[0].match, "dl_dst=52:54:00:00:00:11,reg1=0");
  EXPECT_EQ(remote[0].actions, "load:0xc0a86402->NXM_NX_TUN_IPV4_DST[],output:1");
  auto arp = Matching(InTable(flows, kTableArp), "arp_tpa=10.0.0.11");
  ASSERT_EQ(arp.size(), 1u);
  EXPECT_THAT(arp[0].actions, HasSubstr("load:0x525400000011->NXM_NX_ARP_SHA[]"));
  EXPECT_THAT(arp[0].actions, HasSubstr("load:0xa00000b->NXM_OF_ARP_SPA[]"));
  EXPECT_THAT(arp[0].actions, HasSubstr("IN_PORT"));
  // Tunnel admission only from the owning host.
  auto admit = Matching(InTable(flows, kTableClassify), "dl_src=52:54:00:00:00:11");
  ASSERT_EQ(admit.size(), 1u);
  EXPECT_THAT(admit[0].match, HasSubstr("tun_src=192.168.100.2"));
  // host-2 runs no db: it has no flow about db-0 or db-1 at all.
  auto host2 = BuildOrDie(Lab(), "host-2");
  EXPECT_TRUE(Matching(host2, "52:54:00:00:01:1").empty()) << FormatFlows(host2);
}

TEST(FlowSetTest, ServicesAreIsolatedUnlessAllowed) {
  auto flows = BuildOrDie(Lab(), "host-1");
  const std::string web = TagOfPort(flows, 3);
  const std::string db = TagOfPort(flows, 4);
  ASSERT_NE(web, db);
  auto acl = InTable(flows, kTableAcl);
  auto arp = InTable(flows, kTableArp);
  // web reaches web, db reaches db; nothing crosses (match fields are in canonical order).
  auto from = [](const std::vector<Flow>& flows, const std::string& tag) {
    return Matching(flows, "reg0=" + tag + " ");
  };
  EXPECT_EQ(Matching(from(acl, web), "dl_dst=52:54:00:00:00:11,nw_dst=10.0.0.11").size(), 1u);
  EXPECT_EQ(from(acl, web).size(), 3u);  // web-0, web-1, web-2
  EXPECT_EQ(from(acl, db).size(), 2u);   // db-0, db-1
  EXPECT_TRUE(Matching(from(acl, web), "dl_dst=52:54:00:00:01:").empty());
  EXPECT_TRUE(Matching(from(acl, db), "dl_dst=52:54:00:00:00:").empty());
  EXPECT_TRUE(Matching(from(arp, web), "arp_tpa=10.0.1.").empty());
  EXPECT_TRUE(Matching(from(arp, db), "arp_tpa=10.0.0.").empty());
  EXPECT_EQ(from(arp, web).size(), 3u);

  Topology allowed = Lab();
  allowed.allowed_peers["web"] = {"db"};
  auto open = BuildOrDie(allowed, "host-1");
  auto acl2 = InTable(open, kTableAcl);
  EXPECT_EQ(Matching(from(acl2, web), "dl_dst=52:54:00:00:01:11").size(), 1u);
  // Symmetric: db's replies to web pass too.
  EXPECT_EQ(Matching(from(acl2, db), "dl_dst=52:54:00:00:00:12").size(), 1u);
  EXPECT_EQ(Matching(from(InTable(open, kTableArp), web), "arp_tpa=10.0.1.11,").size(), 1u);
  // host-2 (web only) now needs db's MACs to reach them.
  auto host2 = BuildOrDie(allowed, "host-2");
  EXPECT_FALSE(Matching(InTable(host2, kTableForward), "dl_dst=52:54:00:00:01:10").empty());
}

TEST(FlowSetTest, SpoofedSourcesFindNoFlow) {
  auto flows = BuildOrDie(Lab(), "host-1");
  auto spoof = InTable(flows, kTableSpoof);
  auto ip = Matching(spoof, "priority=100,ip,dl_src=52:54:00:00:00:10,");
  ASSERT_EQ(ip.size(), 1u);
  EXPECT_EQ(ip[0].match, "ip,dl_src=52:54:00:00:00:10,in_port=3,nw_src=10.0.0.10");
  // Only the port's own MAC is admitted from port 3.
  auto admit = Matching(InTable(flows, kTableClassify), "in_port=3 ");
  ASSERT_EQ(admit.size(), 1u);
  EXPECT_EQ(admit[0].match, "dl_src=52:54:00:00:00:10,in_port=3");
}

// web-1 moves from host-2 (port 3) to host-3 (port 5) with generation 2; the controller keeps the
// old location as a stale entry.
Topology Moved() {
  Topology t = Lab();
  t.revision = 8;
  t.instances.push_back(Inst("web-1", "web", "host-3", "10.0.0.11", "52:54:00:00:00:11", 2, 5));
  return t;
}

TEST(FlowSetTest, MovedInstanceRewiresEveryHostAndDropsStaleLocation) {
  const Topology t = Moved();
  // host-1: web-1 now behind host-3; traffic from host-2 claiming web-1's MAC is dropped.
  auto h1 = BuildOrDie(t, "host-1");
  auto fwd = Matching(InTable(h1, kTableForward), "dl_dst=52:54:00:00:00:11");
  ASSERT_EQ(fwd.size(), 1u);
  EXPECT_EQ(fwd[0].actions, "load:0xc0a86403->NXM_NX_TUN_IPV4_DST[],output:1");
  auto admit = Matching(InTable(h1, kTableClassify), "dl_src=52:54:00:00:00:11");
  ASSERT_EQ(admit.size(), 2u);
  EXPECT_EQ(admit[0].priority, 200);
  EXPECT_EQ(admit[0].match, "dl_src=52:54:00:00:00:11,in_port=1,tun_src=192.168.100.2");
  EXPECT_EQ(admit[0].actions, "drop");
  EXPECT_THAT(admit[1].match, HasSubstr("tun_src=192.168.100.3"));
  EXPECT_EQ(admit[1].priority, 100);
  // host-2: the old port is dropped outright; nothing is delivered to it any more.
  auto h2 = BuildOrDie(t, "host-2");
  auto stale = Matching(InTable(h2, kTableClassify), "priority=200,in_port=3 ");
  ASSERT_EQ(stale.size(), 1u) << FormatFlows(h2);
  EXPECT_EQ(stale[0].actions, "drop");
  EXPECT_TRUE(Matching(h2, "output:3").empty()) << FormatFlows(h2);
  // host-2 runs nothing any more: it forwards and admits nothing but the stale drop.
  EXPECT_EQ(InTable(h2, kTableForward).size(), 1u) << FormatFlows(h2);
  EXPECT_EQ(InTable(h2, kTableClassify).size(), 2u) << FormatFlows(h2);
  // host-3: web-1 is local on port 5.
  auto h3 = BuildOrDie(t, "host-3");
  EXPECT_EQ(Matching(InTable(h3, kTableForward), "dl_dst=52:54:00:00:00:11").at(0).actions,
            "output:5");
  // No host sends web-1's MAC to host-2 any more.
  for (const auto* flows : {&h1, &h2, &h3})
    for (const auto& f : Matching(*flows, "dl_dst=52:54:00:00:00:11"))
      EXPECT_THAT(f.actions, ::testing::Not(HasSubstr("0xc0a86402"))) << f.ToString();
  // Every host's flows changed, and the move is an incremental plan on each.
  for (const char* host : {"host-1", "host-2", "host-3"}) {
    auto plan = PlanFlowChanges(BuildOrDie(t, host), BuildOrDie(Lab(), host));
    EXPECT_GT(plan.changes(), 0u) << host;
    EXPECT_EQ(plan.mode, PlanMode::kIncremental) << host;
  }
}

TEST(PlanTest, InSyncWhenEqual) {
  auto flows = BuildOrDie(Lab(), "host-1");
  auto plan = PlanFlowChanges(flows, flows);
  EXPECT_EQ(plan.mode, PlanMode::kInSync);
  EXPECT_EQ(plan.changes(), 0u);
  EXPECT_TRUE(RenderPlan(plan, "br-int").empty());
}

TEST(PlanTest, SmallDifferenceIsIncrementalWithExactArgv) {
  std::vector<Flow> installed = {
      {7, 0, 0, "", "drop"},
      {7, 40, 100, "dl_dst=52:54:00:00:00:10", "output:3"},
      {7, 40, 100, "dl_dst=52:54:00:00:00:99", "output:9"},
  };
  std::vector<Flow> desired = {
      {8, 0, 0, "", "drop"},                                 // cookie only
      {8, 40, 100, "dl_dst=52:54:00:00:00:10", "output:4"},  // modified
      {8, 40, 100, "dl_dst=52:54:00:00:00:11", "output:5"},  // added
  };
  auto plan = PlanFlowChanges(desired, installed);
  EXPECT_EQ(plan.mode, PlanMode::kIncremental);
  EXPECT_EQ(plan.cookie_only, 1u);
  ASSERT_EQ(plan.add.size(), 1u);
  ASSERT_EQ(plan.modify.size(), 1u);
  ASSERT_EQ(plan.remove.size(), 1u);
  EXPECT_EQ(plan.remove[0].match, "dl_dst=52:54:00:00:00:99");
  auto cmds = RenderPlan(plan, "br-int");
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_THAT(cmds[0].argv, ElementsAre("ovs-ofctl", "--bundle", "add-flows", "br-int", "-"));
  EXPECT_EQ(cmds[0].input,
            "delete_strict table=40,priority=100,dl_dst=52:54:00:00:00:99\n"
            "add cookie=0x8,table=40,priority=100,dl_dst=52:54:00:00:00:10 actions=output:4\n"
            "add cookie=0x8,table=40,priority=100,dl_dst=52:54:00:00:00:11 actions=output:5\n");
}

std::vector<Flow> ManyFlows(int n, uint64_t cookie, const std::string& action) {
  std::vector<Flow> flows;
  for (int i = 0; i < n; ++i)
    flows.push_back(
        {cookie, 40, 100,
         "dl_dst=52:54:00:00:" + std::to_string(10 + i / 90) + ":" + std::to_string(10 + i % 90),
         action});
  return flows;
}

TEST(PlanTest, LargeDifferenceIsReplace) {
  // 1000 flows, 300 changed: >= 100 changes and >= 20 % -> replace.
  auto installed = ManyFlows(1000, 1, "output:3");
  auto desired = installed;
  for (int i = 0; i < 300; ++i) desired[i].actions = "output:4";
  auto plan = PlanFlowChanges(desired, installed);
  EXPECT_EQ(plan.changes(), 300u);
  EXPECT_EQ(plan.mode, PlanMode::kReplace);
  auto cmds = RenderPlan(plan, "br-int");
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_THAT(cmds[0].argv, ElementsAre("ovs-ofctl", "--bundle", "replace-flows", "br-int", "-"));
  EXPECT_EQ(cmds[0].input, FormatFlows(plan.desired));
  EXPECT_EQ(std::count(cmds[0].input.begin(), cmds[0].input.end(), '\n'), 1000);
  // 150 of 1000 changed: >= 100 but < 20 % -> still incremental.
  for (int i = 150; i < 300; ++i) desired[i].actions = "output:3";
  EXPECT_EQ(PlanFlowChanges(desired, installed).mode, PlanMode::kIncremental);
  // Thresholds are options.
  EXPECT_EQ(PlanFlowChanges(desired, installed, PlanOptions{10, 0.01}).mode, PlanMode::kReplace);
}

TEST(PlanTest, NothingInstalledIsReplace) {
  auto desired = BuildOrDie(Lab(), "host-1");
  auto plan = PlanFlowChanges(desired, {});
  EXPECT_EQ(plan.mode, PlanMode::kReplace);
  EXPECT_EQ(plan.add.size(), desired.size());
  EXPECT_STREQ(PlanModeName(plan.mode), "replace");
}

TEST(DumpParserTest, RealisticDumpRoundTrips) {
  // As ovs-ofctl 3.1 prints them: stats, OVS's own field order, default priority omitted.
  const std::string dump =
      "NXST_FLOW reply (xid=0x4):\n"
      " cookie=0x7, duration=12.345s, table=0, n_packets=0, n_bytes=0, idle_age=12, "
      "priority=200,tun_src=192.168.100.2,in_port=1,dl_src=52:54:00:00:00:11 actions=drop\n"
      " cookie=0x7, duration=12.345s, table=0, n_packets=5, n_bytes=420, idle_age=1, "
      "hard_age=3, priority=100,in_port=3,dl_src=52:54:00:00:00:10 "
      "actions=load:0x1a2b3c4d->NXM_NX_REG0[],resubmit(,10)\n"
      " cookie=0x7, duration=12.345s, table=20, n_packets=2, n_bytes=84, "
      "priority=100,arp,reg0=0x1a2b3c4d,arp_tpa=10.0.0.2,arp_op=1 "
      "actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],IN_PORT\n"
      " cookie=0x0, duration=1.0s, table=40, n_packets=0, n_bytes=0, dl_dst=52:54:00:00:00:10 "
      "actions=output:3\n";
  auto parsed = ParseDumpFlows(dump);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ASSERT_EQ(parsed->size(), 4u);
  EXPECT_EQ((*parsed)[0].ToString(),
            "cookie=0x7,table=0,priority=200,dl_src=52:54:00:00:00:11,in_port=1,"
            "tun_src=192.168.100.2 actions=drop");
  EXPECT_EQ((*parsed)[2].match, "arp,arp_op=1,arp_tpa=10.0.0.2,reg0=0x1a2b3c4d");
  EXPECT_EQ((*parsed)[3].priority, 32768);
  EXPECT_EQ((*parsed)[3].cookie, 0u);
  // Re-parsing the canonical text gives the same flows.
  auto again = ParseDumpFlows(FormatFlows(*parsed));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *parsed);
}

// Turns desired flows into dump text as ovs-ofctl prints it (stats, spaces, protocol first).
std::string AsDump(const std::vector<Flow>& flows) {
  std::string out = "NXST_FLOW reply (xid=0x4):\n";
  for (const auto& f : flows)
    out += " cookie=0x" + (std::ostringstream() << std::hex << f.cookie).str() +
           ", duration=3.5s, table=" + std::to_string(f.table) +
           ", n_packets=17, n_bytes=1234, idle_age=2, priority=" + std::to_string(f.priority) +
           (f.match.empty() ? "" : "," + f.match) + " actions=" + f.actions + "\n";
  return out;
}

TEST(DumpParserTest, DumpOfDesiredEqualsDesired) {
  for (const char* host : {"host-1", "host-2", "host-3"}) {
    auto desired = BuildOrDie(Moved(), host);
    auto parsed = ParseDumpFlows(AsDump(desired));
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(*parsed, desired) << host;
    EXPECT_EQ(PlanFlowChanges(desired, *parsed).mode, PlanMode::kInSync);
  }
  EXPECT_THAT(DumpFlowsArgv("br-int"),
              ElementsAre("ovs-ofctl", "--no-names", "dump-flows", "br-int"));
}

TEST(DumpParserTest, RefusesNonFlowText) {
  auto bad = ParseDumpFlows("NXST_FLOW reply (xid=0x4):\n garbage here\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("line 2"));
  EXPECT_THAT(bad.status().message(), HasSubstr("garbage"));
  auto bad_number = ParseDumpFlows(" cookie=0xZZ, table=0, priority=1 actions=drop\n");
  ASSERT_FALSE(bad_number.ok());
  EXPECT_THAT(bad_number.status().message(), HasSubstr("cookie=0xZZ"));
}

TEST(DumpParserTest, RefusesUnbalancedParentheses) {
  // Found by tests/fuzz/dump_flows_fuzz: a "(" left open swallowed the rest of the match, spaces
  // and all, into one field, so the flow's text grew a space each time it was printed and read
  // again (the agent would never see its flows in sync).
  auto bad = ParseDumpFlows(" cookie=0x7, table=30, (idle_age=2, priority=100,ip actions=drop\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("line 1"));
  EXPECT_THAT(bad.status().message(), HasSubstr("unbalanced parentheses"));
  EXPECT_FALSE(ParseDumpFlows(" table=0, priority=1,reg0=1) actions=drop\n").ok());
  // Balanced ones, in actions or match, are fine.
  EXPECT_TRUE(ParseDumpFlows(" table=0, priority=1,ip actions=resubmit(,10)\n").ok());
}

void ExpectRefused(const Topology& t, const LocalSwitch& local, const std::string& field,
                   const std::string& value) {
  auto flows = BuildFlowSet(t, local);
  ASSERT_FALSE(flows.ok()) << "accepted; expected an error about " << field;
  EXPECT_EQ(flows.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(flows.status().message(), HasSubstr(field));
  EXPECT_THAT(flows.status().message(), HasSubstr(value));
}

TEST(FlowSetTest, BadInputIsRefusedNamingFieldAndValue) {
  {
    Topology t = Lab();
    t.instances[1].mac = "52:54:00:zz:00:11";
    ExpectRefused(t, On("host-1"), "topology.instances[1] (\"web-1\").mac", "52:54:00:zz:00:11");
  }
  {
    Topology t = Lab();
    t.instances[0].mac = "01:00:5e:00:00:01";  // multicast
    ExpectRefused(t, On("host-1"), ".mac", "01:00:5e:00:00:01");
  }
  {
    Topology t = Lab();
    t.instances[2].ip = "10.0.0.300";
    ExpectRefused(t, On("host-1"), "instances[2] (\"web-2\").ip", "10.0.0.300");
  }
  {
    Topology t = Lab();
    t.instances[3].service = "DB;drop";
    ExpectRefused(t, On("host-1"), ".service", "DB;drop");
  }
  {
    Topology t = Lab();
    t.hosts[1].tunnel_ip = "host-2.lab";
    ExpectRefused(t, On("host-1"), "tunnel_ip", "host-2.lab");
  }
  {
    Topology t = Lab();
    t.instances[4].mac = "52:54:00:00:00:10";  // web-0's
    ExpectRefused(t, On("host-1"), ".mac", "also held by instance \"web-0\"");
  }
  {
    Topology t = Lab();
    t.instances[4].ip = "10.0.0.10";
    ExpectRefused(t, On("host-1"), ".ip", "also held by instance \"web-0\"");
  }
  {
    Topology t = Lab();
    t.instances[0].ofport = 0;
    ExpectRefused(t, On("host-1"), ".ofport", "has no ofport");
  }
  {
    Topology t = Lab();
    t.instances[3].ofport = 3;  // web-0's port
    ExpectRefused(t, On("host-1"), ".ofport", "also used by instance \"web-0\"");
  }
  {
    Topology t = Lab();
    t.instances[0].host = "host-9";
    ExpectRefused(t, On("host-2"), ".host", "host-9");
  }
  {
    Topology t = Lab();
    t.instances.push_back(t.instances[0]);
    ExpectRefused(t, On("host-1"), "generation", "listed twice");
  }
  ExpectRefused(Lab(), On("host-7"), "local.host", "host-7");
  ExpectRefused(Lab(), LocalSwitch{"host-1", 0}, "local.tunnel_ofport", "0");
  ExpectRefused(Lab(), LocalSwitch{"host-1", 3}, ".ofport", "tunnel port");
  {
    Topology t = Lab();
    t.allowed_peers["web"] = {"Bad Peer"};
    ExpectRefused(t, On("host-1"), "allowed_peers[web]", "Bad Peer");
  }
}

}  // namespace
}  // namespace regen::ovs
