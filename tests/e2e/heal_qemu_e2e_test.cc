// End to end on a lab of real QEMU (qemu:///embed, TCG): kill -9 of a VM's qemu is healed on
// another host with the same IP and MAC; a host lost with its VMs is healed too; an upgrade
// pre-empted by a killed qemu heals it with the new version and completes. Prints figures.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>

#include "tests/e2e/lab_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

bool QemuUsable() { return HaveProgram("qemu-system-x86_64"); }

TEST(HealQemuE2eTest, KilledQemuAndLostHostAreHealedElsewhere) {
  if (!QemuUsable())
    REGEN_REQUIRE_COMPONENT("qemu-system-x86_64", "apt-get install qemu-system-x86");
  LabOptions options;
  options.driver = "qemu";
  options.hosts = 3;
  options.poll_interval = "500ms";
  Lab lab(options);
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 3, 3));
  ASSERT_TRUE(lab.WaitAllRunning(3, milliseconds(120000))) << lab.Logs();

  // 1. kill -9 one VM's qemu.
  auto victim = *lab.Instance("web-0");
  int64_t killed = lab.KillQemu("web-0");
  ASSERT_GT(killed, 0) << "no qemu of web-0 on " << victim.host();
  ASSERT_TRUE(lab.WaitRunningGeneration("web-0", victim.generation() + 1, milliseconds(60000)))
      << lab.Logs();
  int64_t healed = WallMillis();
  auto after = *lab.Instance("web-0");
  EXPECT_NE(after.host(), victim.host());
  EXPECT_EQ(after.ip(), victim.ip());
  EXPECT_EQ(after.mac(), victim.mac());
  EXPECT_GT(lab.QemuPid(after.host(), "web-0"), 0);
  ASSERT_TRUE(lab.WaitAllRunning(3, milliseconds(30000))) << lab.Logs();
  std::printf("FIGURE qemu VM kill -9 -> running on %s: %lld ms (observed by polling regenctl)\n",
              after.host().c_str(), static_cast<long long>(healed - killed));

  // 2. A whole host: its agent and its VMs die at once.
  std::string lost_host = after.host();
  int k = std::stoi(lost_host.substr(5));
  std::vector<std::string> lost;
  for (const auto& i : lab.Instances()) {
    if (i.host() == lost_host) lost.push_back(i.name());
  }
  killed = WallMillis();
  lab.KillAgent(k);
  KillProcesses(lab.dir() + "/" + lost_host + "/root");
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& name : lost) {
          auto i = lab.Instance(name);
          if (!i || i->host() == lost_host || i->state() != "running") return false;
        }
        return true;
      },
      milliseconds(60000)))
      << lab.Logs();
  healed = WallMillis();
  std::printf(
      "FIGURE qemu host loss (%zu instances) -> all running elsewhere: %lld ms "
      "(host_down_after 2500 ms)\n",
      lost.size(), static_cast<long long>(healed - killed));
  ASSERT_TRUE(lab.WaitAllRunning(3, milliseconds(30000))) << lab.Logs();
}

// A rolling upgrade v1 -> v2 on real QEMU (each re-create boots a qemu: about a second a UD):
// while UD 1 is being upgraded, kill -9 the qemu of an already upgraded UD 0 instance. The upgrade
// is pre-empted, the instance is healed on another host with v2 (DESIGN table: lower UD -> new
// version), the upgrade resumes and completes with every instance on v2, never one on two hosts.
TEST(HealQemuE2eTest, UpgradePreemptedByAKilledQemuHealsWithNewVersionAndCompletes) {
  if (!QemuUsable())
    REGEN_REQUIRE_COMPONENT("qemu-system-x86_64", "apt-get install qemu-system-x86");
  LabOptions options;
  options.driver = "qemu";
  options.hosts = 3;
  options.poll_interval = "500ms";
  Lab lab(options);
  lab.StartAll();
  std::string spec = Lab::ServiceYaml("web", 6, 3);
  spec.replace(spec.find("version: v1\n"), 12,
               "  v2:\n    metadata: {release: \"2\"}\nversion: v1\n");
  lab.Apply(spec);
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(180000))) << lab.Logs();
  DuplicateWatcher watcher(lab);

  v1::UpgradeStartRequest start;
  start.set_service("web");
  start.set_to_version("v2");
  start.set_mode("auto");
  auto started = lab.client().UpgradeStart(start);
  ASSERT_TRUE(started.ok()) << started.status().message();
  v1::UpgradeServiceRequest req;
  req.set_service("web");
  auto status = [&] {
    auto s = lab.client().UpgradeStatusGet(req);
    return s.ok() ? *s : v1::UpgradeStatus();
  };
  ASSERT_TRUE(WaitFor([&] { return status().current_ud() >= 1; }, milliseconds(120000)))
      << status().DebugString() << lab.Logs();
  v1::InstanceInfo victim;
  for (const auto& i : lab.Instances()) {
    if (i.update_domain() == 0) victim = i;
  }
  ASSERT_EQ(victim.version(), "v2");
  int pid = lab.QemuPid(victim.host(), victim.name());
  ASSERT_GT(pid, 0);
  auto at_kill = status();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] { return status().state() == "completed"; }, milliseconds(180000)))
      << status().DebugString() << lab.Logs();
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(60000))) << lab.Logs();
  for (const auto& i : lab.Instances()) EXPECT_EQ(i.version(), "v2") << i.name();
  auto healed = *lab.Instance(victim.name());
  EXPECT_NE(healed.host(), victim.host());
  EXPECT_EQ(healed.generation(), victim.generation() + 1) << "healed once, not upgraded again";
  EXPECT_EQ(healed.ip(), victim.ip());
  bool preempted = false;
  std::string healed_version;
  for (const auto& e : lab.Events()) {
    if (e.kind() == "upgrade_preempted" &&
        e.message().find(victim.name()) != std::string::npos) {
      preempted = true;
    }
    if (e.kind() == "reallocation" && e.instance() == victim.name()) {
      healed_version = nlohmann::json::parse(e.json()).value("version", "");
    }
  }
  EXPECT_EQ(healed_version, "v2");
  EXPECT_TRUE(preempted) << "killed while " << at_kill.DebugString();
  watcher.Stop();
  EXPECT_TRUE(watcher.duplicates().empty()) << watcher.duplicates().front();
}

}  // namespace
}  // namespace regen::testing
