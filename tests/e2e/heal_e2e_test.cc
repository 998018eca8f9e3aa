// End to end on a lab (real controller and agents on the libvirt test driver): a VM failure and a
// host loss are healed on another host with the same resources, IP and MAC; a partitioned host
// fences itself and no instance ever runs twice; a controller killed mid-healing finishes after a
// restart; failover and drain go through the controller; bad input changes nothing.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "common/subprocess.h"
#include "tests/e2e/lab_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

std::map<std::string, v1::InstanceInfo> ByName(const std::vector<v1::InstanceInfo>& all) {
  std::map<std::string, v1::InstanceInfo> out;
  for (const auto& i : all) out[i.name()] = i;
  return out;
}

int HostNumber(const std::string& host) { return std::stoi(host.substr(5)); }

void ExpectSameResources(const v1::InstanceInfo& before, const v1::InstanceInfo& after) {
  EXPECT_EQ(after.ip(), before.ip());
  EXPECT_EQ(after.mac(), before.mac());
  EXPECT_EQ(after.resources().vcpus(), before.resources().vcpus());
  EXPECT_EQ(after.resources().memory_mib(), before.resources().memory_mib());
  EXPECT_EQ(after.resources().disk_gib(), before.resources().disk_gib());
  EXPECT_EQ(after.resources().bandwidth_mbps(), before.resources().bandwidth_mbps());
}

TEST(HealE2eTest, VmCrashIsHealedOnAnotherHost) {
  Lab lab({});
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 6, 3));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  auto before = ByName(lab.Instances());
  DuplicateWatcher watcher(lab);
  const auto victim = before.at("web-1");
  RealCommandRunner runner;
  auto out = runner.Run({AgentBin(), "inject", "crash", "web-1", "--config",
                         lab.AgentConfigPath(HostNumber(victim.host()))},
                        std::chrono::seconds(10));
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->exit_code, 0) << out->stderr_text;
  ASSERT_TRUE(lab.WaitRunningGeneration("web-1", victim.generation() + 1, milliseconds(10000)))
      << lab.Logs();
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(10000))) << lab.Logs();
  auto after = lab.Instance("web-1");
  EXPECT_NE(after->host(), victim.host());
  ExpectSameResources(victim, *after);
  // The other instances were not touched.
  for (const auto& [name, i] : ByName(lab.Instances())) {
    if (name == "web-1") continue;
    EXPECT_EQ(i.host(), before.at(name).host()) << name;
    EXPECT_EQ(i.generation(), before.at(name).generation()) << name;
  }
  bool failure = false;
  bool reallocation = false;
  for (const auto& e : lab.Events()) {
    failure = failure || (e.kind() == "failure" && e.instance() == "web-1");
    reallocation = reallocation || (e.kind() == "reallocation" && e.instance() == "web-1" &&
                                    e.host() == after->host());
  }
  EXPECT_TRUE(failure);
  EXPECT_TRUE(reallocation);
  watcher.Stop();
  EXPECT_TRUE(watcher.duplicates().empty()) << watcher.duplicates()[0];
}

TEST(HealE2eTest, HostLossIsHealedAndTheHostComesBackEmpty) {
  Lab lab({});
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 6, 3));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  auto before = ByName(lab.Instances());
  std::vector<std::string> lost;
  for (const auto& [name, i] : before) {
    if (i.host() == "host-1") lost.push_back(name);
  }
  ASSERT_FALSE(lost.empty());
  lab.KillAgent(1);  // on the test driver its VMs die with it
  ASSERT_TRUE(WaitFor([&] { return lab.HostState("host-1") == "down"; }, milliseconds(10000)))
      << lab.Logs();
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(15000))) << lab.Logs();
  for (const auto& name : lost) {
    auto i = lab.Instance(name);
    EXPECT_NE(i->host(), "host-1") << name;
    EXPECT_EQ(i->generation(), before.at(name).generation() + 1) << name;
    ExpectSameResources(before.at(name), *i);
  }
  // The host comes back: it learns its instances moved and runs none of them.
  lab.StartAgent(1);
  ASSERT_TRUE(WaitFor([&] { return lab.HostState("host-1") == "up"; }, milliseconds(10000)))
      << lab.Logs();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = lab.AgentStatus(1);
        return !s.is_null() && s.value("reconciles", 0) > 3;
      },
      milliseconds(10000)));
  EXPECT_TRUE(lab.AgentStatus(1)["domains"].empty()) << lab.AgentStatus(1).dump();
  EXPECT_TRUE(lab.WaitAllRunning(6, milliseconds(5000))) << lab.Logs();
}

TEST(HealE2eTest, PartitionedHostFencesItselfAndNothingRunsTwice) {
  LabOptions options;
  options.proxied_hosts = {2};
  Lab lab(options);
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 6, 3));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  auto before = ByName(lab.Instances());
  std::vector<std::string> cut_off;
  for (const auto& [name, i] : before) {
    if (i.host() == "host-2") cut_off.push_back(name);
  }
  ASSERT_FALSE(cut_off.empty());
  DuplicateWatcher watcher(lab);
  lab.proxy(2).Cut();
  // The agent keeps running but hears nothing: after its lease it destroys its domains.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = lab.AgentStatus(2);
        return !s.is_null() && s.value("fenced", false) && s["domains"].empty();
      },
      milliseconds(10000)))
      << lab.AgentStatus(2).dump() << lab.Logs();
  ASSERT_TRUE(WaitFor([&] { return lab.HostState("host-2") == "down"; }, milliseconds(10000)));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(15000))) << lab.Logs();
  for (const auto& name : cut_off) {
    auto i = lab.Instance(name);
    EXPECT_NE(i->host(), "host-2");
    ExpectSameResources(before.at(name), *i);
  }
  // The partition heals: the host rejoins, learns its instances moved, restarts none of them.
  lab.proxy(2).Heal();
  ASSERT_TRUE(WaitFor([&] { return lab.HostState("host-2") == "up"; }, milliseconds(10000)))
      << lab.Logs();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = lab.AgentStatus(2);
        return !s.is_null() && !s.value("fenced", true);
      },
      milliseconds(10000)));
  int64_t reconciles = lab.AgentStatus(2).value("reconciles", 0);
  ASSERT_TRUE(WaitFor([&] { return lab.AgentStatus(2).value("reconciles", 0) > reconciles + 3; },
                      milliseconds(10000)));
  EXPECT_TRUE(lab.AgentStatus(2)["domains"].empty()) << lab.AgentStatus(2).dump();
  EXPECT_TRUE(lab.WaitAllRunning(6, milliseconds(5000)));
  watcher.Stop();
  EXPECT_GT(watcher.samples(), 20);
  EXPECT_TRUE(watcher.duplicates().empty()) << watcher.duplicates()[0];
}

TEST(HealE2eTest, HungAgentFencesAndIsHealedAroundThenResumesEmpty) {
  Lab lab({});
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 6, 3));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  DuplicateWatcher watcher(lab);
  RealCommandRunner runner;
  auto out = runner.Run({AgentBin(), "inject", "hang", "--config", lab.AgentConfigPath(1)},
                        std::chrono::seconds(10));
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->exit_code, 0) << out->stderr_text;
  ASSERT_TRUE(WaitFor([&] { return lab.HostState("host-1") == "down"; }, milliseconds(10000)));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(15000))) << lab.Logs();
  auto s = lab.AgentStatus(1);
  EXPECT_TRUE(s.value("fenced", false)) << s.dump();
  EXPECT_TRUE(s["domains"].empty()) << s.dump();
  for (const auto& i : lab.Instances()) EXPECT_NE(i.host(), "host-1") << i.name();

  out = runner.Run({AgentBin(), "inject", "resume", "--config", lab.AgentConfigPath(1)},
                   std::chrono::seconds(10));
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->exit_code, 0) << out->stderr_text;
  ASSERT_TRUE(WaitFor([&] { return lab.HostState("host-1") == "up"; }, milliseconds(10000)));
  ASSERT_TRUE(
      WaitFor([&] { return !lab.AgentStatus(1).value("fenced", true); }, milliseconds(10000)));
  EXPECT_TRUE(lab.AgentStatus(1)["domains"].empty());
  EXPECT_TRUE(lab.WaitAllRunning(6, milliseconds(5000)));
  watcher.Stop();
  EXPECT_TRUE(watcher.duplicates().empty()) << watcher.duplicates()[0];
}

TEST(HealE2eTest, ControllerKilledMidHealingFinishesAfterRestart) {
  Lab lab({});
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 6, 3));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  auto before = ByName(lab.Instances());
  int64_t last_event = lab.Events().back().sequence();
  lab.KillAgent(3);
  // As soon as the controller starts healing host-3's instances, it dies.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto events = lab.Events();
        for (const auto& e : events) {
          if (e.sequence() > last_event && e.kind() == "failure") return true;
        }
        return false;
      },
      milliseconds(10000), milliseconds(2)))
      << lab.Logs();
  lab.KillController();
  lab.StartController();
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  std::set<std::string> ips;
  std::set<std::string> macs;
  for (const auto& [name, i] : ByName(lab.Instances())) {
    EXPECT_NE(i.host(), "host-3") << name;
    ExpectSameResources(before.at(name), i);
    ips.insert(i.ip());
    macs.insert(i.mac());
  }
  EXPECT_EQ(ips.size(), 6u);
  EXPECT_EQ(macs.size(), 6u);
}

TEST(HealE2eTest, FailoverAndDrainFromTheAgentCli) {
  Lab lab({});
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 6, 3));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  DuplicateWatcher watcher(lab);
  auto web0 = *lab.Instance("web-0");
  std::string target = web0.host() == "host-3" ? "host-2" : "host-3";
  RealCommandRunner runner;
  auto out = runner.Run({AgentBin(), "failover", "web-0", "--to", target, "--config",
                         lab.AgentConfigPath(HostNumber(web0.host()))},
                        std::chrono::seconds(20));
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->exit_code, 0) << out->stderr_text;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto i = lab.Instance("web-0");
        return i->host() == target && i->state() == "running";
      },
      milliseconds(10000)))
      << lab.Logs();
  ExpectSameResources(web0, *lab.Instance("web-0"));

  out = runner.Run({AgentBin(), "drain", "--config", lab.AgentConfigPath(1)},
                   std::chrono::seconds(20));
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->exit_code, 0) << out->stderr_text;
  EXPECT_EQ(lab.HostState("host-1"), "draining");
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(15000))) << lab.Logs();
  for (const auto& i : lab.Instances()) EXPECT_NE(i.host(), "host-1") << i.name();
  EXPECT_TRUE(lab.AgentStatus(1)["domains"].empty());

  // Through the controller only: a standalone agent config is refused with a clear message.
  WriteFileOrDie(lab.dir() + "/standalone.yaml",
                 "host_name: solo\nlibvirt_uri: \"test:///default\"\n");
  out = runner.Run({AgentBin(), "drain", "--config", lab.dir() + "/standalone.yaml"},
                   std::chrono::seconds(20));
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->exit_code, 2);
  EXPECT_NE(out->stderr_text.find("no controller_address"), std::string::npos) << out->stderr_text;
  watcher.Stop();
  EXPECT_TRUE(watcher.duplicates().empty()) << watcher.duplicates()[0];
}

TEST(HealE2eTest, BadSpecsAndBadRequestsAreRefusedAndChangeNothing) {
  Lab lab({});
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 3, 3));
  ASSERT_TRUE(lab.WaitAllRunning(3, milliseconds(20000))) << lab.Logs();
  auto instances = lab.Instances();
  size_t events = lab.Events().size();

  v1::ApplyServiceRequest bad;
  bad.set_file_name("bad.yaml");
  bad.set_spec_yaml("name: web\ninstances: 3\nupdate_domains: 3\nflavour: {}\n");
  auto r = lab.client().ApplyService(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("flavour"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("bad.yaml:4"), std::string::npos) << r.status().message();

  // A deployed service's flavor cannot change under it.
  bad.set_spec_yaml(Lab::ServiceYaml("web", 3, 3, 128));
  r = lab.client().ApplyService(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("flavor"), std::string::npos) << r.status().message();

  v1::FailoverRequest f;
  f.set_instance("Web_1");
  auto fr = lab.client().Failover(f);
  ASSERT_FALSE(fr.ok());
  EXPECT_NE(fr.status().message().find("Web_1"), std::string::npos) << fr.status().message();
  f.set_instance("web-9");
  fr = lab.client().Failover(f);
  ASSERT_FALSE(fr.ok());
  EXPECT_NE(fr.status().message().find("does not exist"), std::string::npos);
  f.set_instance("web-0");
  f.set_to_host("host-9");
  fr = lab.client().Failover(f);
  ASSERT_FALSE(fr.ok());
  EXPECT_NE(fr.status().message().find("host-9"), std::string::npos) << fr.status().message();

  v1::DrainRequest d;
  d.set_host("nohost");
  EXPECT_FALSE(lab.client().Drain(d).ok());

  auto now = lab.Instances();
  ASSERT_EQ(now.size(), instances.size());
  for (size_t i = 0; i < now.size(); ++i) {
    EXPECT_EQ(now[i].SerializeAsString(), instances[i].SerializeAsString()) << now[i].name();
  }
  EXPECT_EQ(lab.Events().size(), events);
}

}  // namespace
}  // namespace regen::testing
