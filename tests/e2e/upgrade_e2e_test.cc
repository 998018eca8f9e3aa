// End to end on a lab (test driver): rolling upgrades v1 -> v2 of 6 instances in 3 UDs while
// instances fail. On the test driver an upgrade step takes milliseconds, so the tests choose their
// points with capacity instead of timing: hosts 1-3 hold exactly the 6 instances (2 vCPUs each),
// so when host-3 dies its instances cannot be healed until host-4 joins; until then healing is
// in progress and the upgrade holds where it is. Checked: each instance is healed on another host
// with the version the DESIGN table gives at its failure, the upgrade waits and resumes by itself,
// survives a controller restart, completes with every instance on v2, no instance is upgraded
// twice, and no instance ever runs on two hosts. Manual mode: next-ud is refused while healing
// runs (policy block, naming the instances) unless forced; with policy allow it proceeds.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "common/subprocess.h"
#include "tests/e2e/lab_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

std::string Spec() {
  return "name: web\ninstances: 6\nupdate_domains: 3\n"
         "flavor: {vcpus: 1, memory_mib: 64, disk_gib: 0, bandwidth_mbps: 10}\n"
         "network: {subnet: 10.20.0.0/24, dns_name: web.lab.example, ip_policy: keep}\n"
         "versions:\n  v1: {metadata: {release: \"1\"}}\n  v2: {metadata: {release: \"2\"}}\n"
         "version: v1\nhealth_check: {type: none}\nplacement: spread\n";
}

// 4 hosts of 2 vCPUs; only hosts 1-3 are started (full with the 6 instances); host-4 is the
// capacity that lets healing finish when the test says so.
LabOptions TightLab(const std::string& controller_extra = "") {
  LabOptions o;
  o.hosts = 4;
  o.vcpus = 2;
  o.controller_extra = controller_extra;
  return o;
}

void StartThreeHostsWithService(Lab& lab) {
  lab.StartController();
  for (int k = 1; k <= 3; ++k) lab.StartAgent(k);
  lab.Apply(Spec());
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
}

v1::UpgradeStatus Status(Lab& lab) {
  v1::UpgradeServiceRequest r;
  r.set_service("web");
  auto s = lab.client().UpgradeStatusGet(r);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? *s : v1::UpgradeStatus();
}

Result<v1::UpgradeStatus> Start(Lab& lab, const std::string& mode) {
  v1::UpgradeStartRequest start;
  start.set_service("web");
  start.set_to_version("v2");
  start.set_mode(mode);
  return lab.client().UpgradeStart(start);
}

Result<v1::UpgradeStatus> NextUd(Lab& lab, bool force) {
  v1::UpgradeServiceRequest r;
  r.set_service("web");
  r.set_force(force);
  return lab.client().UpgradeNextUd(r);
}

std::set<std::string> Healing(const v1::UpgradeStatus& s) {
  return {s.healing_in_progress().begin(), s.healing_in_progress().end()};
}

std::map<std::string, v1::InstanceInfo> OnHost(Lab& lab, const std::string& host) {
  std::map<std::string, v1::InstanceInfo> out;
  for (const auto& i : lab.Instances()) {
    if (i.host() == host) out[i.name()] = i;
  }
  return out;
}

// Kills host-3's agent (its test-driver domains die with it) and waits until the controller has
// declared it down and failed its instances, which have nowhere to go.
std::map<std::string, v1::InstanceInfo> LoseHost3(Lab& lab) {
  auto lost = OnHost(lab, "host-3");
  EXPECT_EQ(lost.size(), 2u);
  lab.KillAgent(3);
  EXPECT_TRUE(WaitFor(
      [&] {
        if (lab.HostState("host-3") != "down") return false;
        for (const auto& i : lab.Instances()) {
          if (lost.count(i.name()) && i.state() == "running") return false;
        }
        return true;
      },
      milliseconds(15000)))
      << lab.Logs();
  return lost;
}

// The version each instance was first re-created with by healing (its first reallocation event).
std::map<std::string, std::string> HealedWith(Lab& lab) {
  std::map<std::string, std::string> out;
  for (const auto& e : lab.Events()) {
    if (e.kind() != "reallocation") continue;
    auto j = nlohmann::json::parse(e.json());
    out.try_emplace(e.instance(), j.value("version", ""));
  }
  return out;
}

std::map<std::string, int> UpgradeSteps(Lab& lab) {
  std::map<std::string, int> out;
  for (const auto& e : lab.Events()) {
    if (e.kind() == "upgrade_instance") ++out[e.instance()];
  }
  return out;
}

// `lost_host` ("" for none) is a host that died during the test: nothing may run there.
void ExpectCompletedOnV2(Lab& lab, DuplicateWatcher& watcher,
                         const std::string& lost_host = "host-3") {
  ASSERT_TRUE(WaitFor([&] { return Status(lab).state() == "completed"; }, milliseconds(30000)))
      << Status(lab).DebugString() << lab.Logs();
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  for (const auto& i : lab.Instances()) {
    EXPECT_EQ(i.version(), "v2") << i.name();
    if (!lost_host.empty()) {
      EXPECT_NE(i.host(), lost_host) << i.name();
    }
  }
  auto services = lab.client().ListServices();
  ASSERT_TRUE(services.ok());
  EXPECT_EQ(services->services(0).version(), "v2");
  // No instance upgraded twice, none left behind: at most one upgrade step each, and one that had
  // none was healed with v2 (an instance upgraded and then healed with v2 had one).
  auto healed = HealedWith(lab);
  auto steps = UpgradeSteps(lab);
  for (const auto& i : lab.Instances()) {
    EXPECT_LE(steps[i.name()], 1) << i.name() << " upgraded " << steps[i.name()] << " times";
    if (steps[i.name()] == 0) {
      EXPECT_EQ(healed[i.name()], "v2") << i.name() << " was never upgraded nor healed with v2";
    }
  }
  watcher.Stop();
  EXPECT_GT(watcher.samples(), 10);
  EXPECT_TRUE(watcher.duplicates().empty()) << watcher.duplicates().front();
}

// DESIGN: an upgrade started while healing runs starts pre-empted and waits; the healed instances
// get the old version; the upgrade resumes by itself when healing ends. The controller is killed
// while the upgrade waits: the restarted one continues where it was.
TEST(UpgradeE2eTest, StartedDuringHealingWaitsHealsWithOldVersionAndResumes) {
  Lab lab(TightLab());
  StartThreeHostsWithService(lab);
  DuplicateWatcher watcher(lab);
  auto lost = LoseHost3(lab);

  auto started = Start(lab, "auto");
  ASSERT_TRUE(started.ok()) << started.status().message();
  EXPECT_EQ(started->state(), "preempted");
  EXPECT_EQ(started->current_ud(), 0);
  EXPECT_TRUE(started->upgraded_uds().empty());
  std::set<std::string> lost_names;
  for (const auto& [name, i] : lost) lost_names.insert(name);
  EXPECT_EQ(Healing(*started), lost_names);
  // Nothing is upgraded while it waits.
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_TRUE(UpgradeSteps(lab).empty());

  lab.KillController();
  lab.StartController();
  auto after_restart = Status(lab);
  EXPECT_EQ(after_restart.state(), "preempted") << after_restart.DebugString();
  EXPECT_EQ(Healing(after_restart), lost_names);

  lab.StartAgent(4);  // room for both: healing ends, the upgrade resumes
  ExpectCompletedOnV2(lab, watcher);
  auto healed = HealedWith(lab);
  for (const auto& [name, i] : lost) {
    EXPECT_EQ(healed[name], "v1") << name << " failed before the upgrade started";
  }
  bool resumed = false;
  for (const auto& e : lab.Events()) {
    resumed = resumed || (e.kind() == "upgrade" && e.message().find("resum") != std::string::npos);
  }
  EXPECT_TRUE(resumed) << "no upgrade event says it resumed";
}

// Manual mode walks UD by UD, so the test picks its points: after UD 0 is upgraded and UD 1 waits
// for the operator, host-3 dies. Its instances are healed with the table's version: UD 0
// (upgraded) -> v2, UD 1 (current, not begun) and UD 2 (pending) -> v1. next-ud is refused while
// they wait for room, naming them, unless forced; the controller is killed in the middle.
TEST(UpgradeE2eTest, ManualFailuresInEveryUdHealWithTheTableVersionAndBlockNextUd) {
  Lab lab(TightLab());
  StartThreeHostsWithService(lab);
  DuplicateWatcher watcher(lab);

  auto started = Start(lab, "manual");
  ASSERT_TRUE(started.ok()) << started.status().message();
  EXPECT_EQ(started->state(), "waiting_for_operator");
  EXPECT_TRUE(UpgradeSteps(lab).empty()) << "manual mode starts no UD by itself";
  auto first = NextUd(lab, false);
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = Status(lab);
        return s.state() == "waiting_for_operator" && s.current_ud() == 1;
      },
      milliseconds(15000)))
      << Status(lab).DebugString() << lab.Logs();
  for (const auto& i : lab.Instances()) {
    EXPECT_EQ(i.version(), i.update_domain() == 0 ? "v2" : "v1") << i.name();
  }

  auto lost = LoseHost3(lab);
  std::set<std::string> lost_names;
  for (const auto& [name, i] : lost) lost_names.insert(name);
  ASSERT_TRUE(WaitFor([&] { return Healing(Status(lab)) == lost_names; }, milliseconds(5000)))
      << Status(lab).DebugString();

  auto refused = NextUd(lab, false);
  ASSERT_FALSE(refused.ok()) << "next-ud must be refused while healing runs (policy block)";
  for (const auto& name : lost_names) {
    EXPECT_NE(refused.status().message().find(name), std::string::npos)
        << refused.status().message();
  }
  EXPECT_EQ(Status(lab).current_ud(), 1) << "a refused next-ud changes nothing";

  lab.KillController();
  lab.StartController();
  EXPECT_EQ(Healing(Status(lab)), lost_names);

  auto forced = NextUd(lab, true);
  ASSERT_TRUE(forced.ok()) << forced.status().message();
  lab.StartAgent(4);
  // Walk the remaining UDs as the operator would.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = Status(lab);
        if (s.state() == "waiting_for_operator" && s.healing_in_progress().empty()) {
          (void)NextUd(lab, false);
        }
        return s.state() == "completed";
      },
      milliseconds(30000), milliseconds(50)))
      << Status(lab).DebugString() << lab.Logs();
  auto healed = HealedWith(lab);
  for (const auto& [name, i] : lost) {
    EXPECT_EQ(healed[name], i.update_domain() == 0 ? "v2" : "v1")
        << name << " in UD " << i.update_domain() << " failed with UD 0 upgraded, UD 1 waiting";
  }
  ExpectCompletedOnV2(lab, watcher);
}

// Policy allow: next-ud proceeds while healing runs, and status shows the healing.
TEST(UpgradeE2eTest, ManualPolicyAllowProceedsWhileHealing) {
  Lab lab(TightLab("upgrade: {manual_policy: allow}\n"));
  StartThreeHostsWithService(lab);
  DuplicateWatcher watcher(lab);
  ASSERT_TRUE(Start(lab, "manual").ok());
  auto lost = LoseHost3(lab);
  ASSERT_TRUE(
      WaitFor([&] { return Healing(Status(lab)).size() == lost.size(); }, milliseconds(5000)))
      << Status(lab).DebugString();
  auto next = NextUd(lab, false);
  ASSERT_TRUE(next.ok()) << next.status().message();
  EXPECT_EQ(Healing(*next).size(), lost.size()) << next->DebugString();
  lab.StartAgent(4);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = Status(lab);
        if (s.state() == "waiting_for_operator") (void)NextUd(lab, false);
        return s.state() == "completed";
      },
      milliseconds(30000), milliseconds(50)))
      << Status(lab).DebugString() << lab.Logs();
  ExpectCompletedOnV2(lab, watcher);
}

// Staging (issue 6): versions with disk images. Each host copies v2's image into its state dir
// before any of its instances is re-created with v2, and the new overlays are backed by that
// copy. While v2's image is missing, staging fails with an event naming the path and nothing is
// re-created; once the operator puts the image there, the agents retry and the upgrade completes.
std::string ImageSpec(const std::string& dir) {
  return "name: web\ninstances: 6\nupdate_domains: 3\n"
         "flavor: {vcpus: 1, memory_mib: 64, disk_gib: 1, bandwidth_mbps: 10}\n"
         "network: {subnet: 10.20.0.0/24, dns_name: web.lab.example, ip_policy: keep}\n"
         "versions:\n  v1: {image: " +
         dir +
         "/images/web-v1.qcow2}\n"
         "  v2: {image: " +
         dir +
         "/images/web-v2.qcow2}\n"
         "version: v1\nhealth_check: {type: none}\nplacement: spread\n";
}

void MakeImage(const std::string& path) {
  RealCommandRunner runner;
  auto out = CheckedRun(runner, {"qemu-img", "create", "-q", "-f", "qcow2", path, "16M"},
                        std::chrono::seconds(30));
  ASSERT_TRUE(out.ok()) << out.status().message();
}

// The backing file of a qcow2 overlay, or "" when it cannot be read.
std::string BackingOf(const std::string& overlay) {
  RealCommandRunner runner;
  auto out = CheckedRun(runner, {"qemu-img", "info", "-U", "--output=json", overlay},
                        std::chrono::seconds(30));
  if (!out.ok()) return "";
  auto j = nlohmann::json::parse(out->stdout_text, nullptr, false);
  return j.is_discarded() ? "" : j.value("backing-filename", "");
}

TEST(UpgradeE2eTest, TheNewImageIsStagedOnEachHostFirstAndBacksTheUpgradedDisks) {
  LabOptions o;
  o.hosts = 3;
  Lab lab(o);
  std::filesystem::create_directories(lab.dir() + "/images");
  MakeImage(lab.dir() + "/images/web-v1.qcow2");
  lab.StartAll();
  lab.Apply(ImageSpec(lab.dir()));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  DuplicateWatcher watcher(lab);

  // v2's image does not exist yet: every host reports the failure, nothing is re-created.
  auto started = Start(lab, "auto");
  ASSERT_TRUE(started.ok()) << started.status().message();
  const std::string v2_image = lab.dir() + "/images/web-v2.qcow2";
  ASSERT_TRUE(WaitFor(
      [&] {
        std::set<std::string> hosts;
        for (const auto& e : lab.Events()) {
          if (e.kind() == "staging_failed" && e.message().find(v2_image) != std::string::npos)
            hosts.insert(e.host());
        }
        return hosts.size() == 3;
      },
      milliseconds(10000)))
      << lab.Logs();
  EXPECT_EQ(Status(lab).state(), "running");
  for (const auto& i : lab.Instances()) {
    EXPECT_EQ(i.version(), "v1") << i.name() << " re-created before v2 was staged";
    EXPECT_EQ(i.generation(), 1) << i.name();
  }

  // The operator provides the image: the agents retry, stage it, and the upgrade completes.
  MakeImage(v2_image);
  ExpectCompletedOnV2(lab, watcher, /*lost_host=*/"");
  for (const auto& i : lab.Instances()) {
    const std::string state = lab.dir() + "/" + i.host() + "/state";
    const std::string staged = state + "/images/web/v2/web-v2.qcow2";
    EXPECT_TRUE(std::filesystem::exists(staged)) << i.name() << " on " << i.host();
    const std::string overlay =
        state + "/disks/" + i.name() + "-g" + std::to_string(i.generation()) + ".qcow2";
    EXPECT_EQ(BackingOf(overlay), staged) << i.name() << ": " << overlay;
  }
}

}  // namespace
}  // namespace regen::testing
