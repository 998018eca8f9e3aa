// End to end on a lab of real QEMU (qemu:///embed, TCG): kill -9 of a VM's qemu is healed on
// another host with the same IP and MAC; a host lost with its VMs is healed too. Prints figures.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>

#include "tests/e2e/lab_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

bool QemuUsable() { return HaveProgram("qemu-system-x86_64"); }

// The PID of the qemu running `instance` under the lab's host-K root.
int QemuPid(Lab& lab, const std::string& host, const std::string& instance) {
  auto named = FindProcesses("guest=" + instance + ",");
  auto in_root = FindProcesses(lab.dir() + "/" + host + "/root");
  for (int p : named) {
    for (int q : in_root) {
      if (p == q) return p;
    }
  }
  return -1;
}

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
  int pid = QemuPid(lab, victim.host(), "web-0");
  ASSERT_GT(pid, 0);
  int64_t killed = WallMillis();
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto i = lab.Instance("web-0");
        return i && i->generation() == victim.generation() + 1 && i->state() == "running";
      },
      milliseconds(60000)))
      << lab.Logs();
  int64_t healed = WallMillis();
  auto after = *lab.Instance("web-0");
  EXPECT_NE(after.host(), victim.host());
  EXPECT_EQ(after.ip(), victim.ip());
  EXPECT_EQ(after.mac(), victim.mac());
  EXPECT_GT(QemuPid(lab, after.host(), "web-0"), 0);
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
      "(host_down_after 1500 ms)\n",
      lost.size(), static_cast<long long>(healed - killed));
  ASSERT_TRUE(lab.WaitAllRunning(3, milliseconds(30000))) << lab.Logs();
}

}  // namespace
}  // namespace regen::testing
