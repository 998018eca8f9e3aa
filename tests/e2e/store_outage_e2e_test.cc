// End to end on a lab (test driver): the controller's disk fills up (its SQLite database on a
// small tmpfs, root only) while VMs run (issue 15, rule 2: no VM is stopped for something that
// happened to the controller alone). While it is full: the controller process stays up (same
// PID), every agent keeps getting its lease (no fence, every domain still the very same one in
// libvirt's own listing), a change asked of regenctl is refused with UNAVAILABLE naming the
// full disk, and a VM crashed meanwhile is not yet healed. Once there is room: the crash is
// healed, the change goes through, and nothing ran twice.
#include <gtest/gtest.h>

#include <thread>

#include "common/subprocess.h"
#include "tests/e2e/lab_harness.h"
#include "tests/e2e/small_disk.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

TEST(StoreOutageE2eTest, AFullDiskStopsNoVmAndHealingResumesWhenThereIsRoom) {
  SmallDisk disk;
  ASSERT_TRUE(disk.ok()) << disk.error();
  LabOptions options;
  options.hosts = 3;
  options.database = disk.File("controller.db");
  Lab lab(options);
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 6, 3));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  DuplicateWatcher watcher(lab);
  const auto domains_before = lab.RunningDomainIds();
  const int fences_before = lab.AgentFences();
  const auto victim = lab.Instance("web-2");
  ASSERT_TRUE(victim.has_value());

  disk.Fill();
  // A crash during the outage: its heal cannot be stored yet.
  RealCommandRunner runner;
  auto out = runner.Run({AgentBin(), "inject", "crash", "web-2", "--config",
                         lab.AgentConfigPath(Lab::HostNumber(victim->host()))},
                        std::chrono::seconds(10));
  ASSERT_TRUE(out.ok() && out->exit_code == 0) << (out.ok() ? out->stderr_text : "");
  // A change refused, naming the store's error.
  v1::ApplyServiceRequest scale;
  scale.set_spec_yaml(Lab::ServiceYaml("web", 8, 3));
  auto refused = lab.client().ApplyService(scale);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kUnavailable) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("full"), std::string::npos)
      << refused.status().ToString();
  // Longer than the lease and host_down_after (2 s, 2.5 s): every lease renewed all along.
  const auto until = std::chrono::steady_clock::now() + milliseconds(5000);
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_TRUE(lab.ControllerRunning()) << "the controller exited on a full disk\n" << lab.Logs();
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_TRUE(lab.LeasesRenewed(2000)) << lab.Logs();
  EXPECT_EQ(lab.AgentFences(), fences_before) << "an agent fenced while the disk was full";
  const auto domains_during = lab.RunningDomainIds();
  for (const auto& [instance, id] : domains_before) {
    if (instance == "web-2") continue;
    auto it = domains_during.find(instance);
    ASSERT_NE(it, domains_during.end()) << instance << " stopped while the disk was full";
    EXPECT_EQ(it->second, id) << instance << " was re-created while the disk was full";
  }
  for (int host = 1; host <= 3; ++host) {
    EXPECT_EQ(lab.HostState(lab.HostName(host)), "up") << lab.HostName(host);
  }

  disk.Free();
  ASSERT_TRUE(lab.WaitRunningGeneration("web-2", victim->generation() + 1, milliseconds(20000)))
      << "the crash during the outage was not healed once there was room\n"
      << lab.Logs();
  auto applied = lab.client().ApplyService(scale);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  ASSERT_TRUE(lab.WaitAllRunning(8, milliseconds(20000))) << lab.Logs();
  EXPECT_EQ(lab.AgentFences(), fences_before);
  const auto domains_after = lab.RunningDomainIds();
  for (const auto& [instance, id] : domains_before) {
    if (instance == "web-2") continue;
    EXPECT_EQ(domains_after.at(instance), id) << instance << " was stopped or re-created";
  }
  watcher.Stop();
  EXPECT_GT(watcher.samples(), 0);
  EXPECT_TRUE(watcher.duplicates().empty()) << watcher.duplicates().front();
}

}  // namespace
}  // namespace regen::testing
