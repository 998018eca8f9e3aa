// End to end on a lab (test driver): VMs outlive the controller (issue 14). 20 rounds of kill -9
// of the controller at a random moment (idle, mid-heal, mid-upgrade, mid-drain) and a restart
// 0.5 s later, as systemd would do it, with the lab's settings and with the shipped defaults.
// After every round, from the agents' libvirt listings (domain ids: a new one at every start):
// every instance whose generation did not change still runs in the very same domain (nothing was
// destroyed that should run), no agent fenced, the controller logged no fence, nothing ran twice,
// and every operation in flight finished.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <future>
#include <random>
#include <sstream>
#include <thread>

#include "common/subprocess.h"
#include "config/controller_config.h"
#include "ctl/regenctl.h"
#include "tests/e2e/lab_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

std::string ServiceWithTwoVersions() {
  std::string yaml = Lab::ServiceYaml("web", 6, 3);
  const std::string v1 = "versions:\n  v1:\n    metadata: {release: \"1\"}\n";
  yaml.replace(yaml.find(v1), v1.size(),
               v1 + "  v2:\n    metadata: {release: \"2\"}\n");
  return yaml;
}

// When the restarted controller listened (the port answered).
std::chrono::steady_clock::time_point KillAndRestart(Lab& lab, std::mt19937& rng,
                                                     int max_delay_ms) {
  std::this_thread::sleep_for(milliseconds(std::uniform_int_distribution<>(0, max_delay_ms)(rng)));
  lab.KillController();
  std::this_thread::sleep_for(milliseconds(500));  // systemd's restart delay, and then some
  lab.StartController();
  return std::chrono::steady_clock::now();
}

void RunRounds(LabOptions options, int64_t lease_ms) {
  options.hosts = 4;
  Lab lab(options);
  lab.StartAll();
  lab.Apply(ServiceWithTwoVersions());
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  DuplicateWatcher watcher(lab);
  std::mt19937 rng(20261206);
  RealCommandRunner runner;
  std::string version = "v1";
  bool drained = false;
  std::vector<int64_t> back_ms;  // restart (listening) -> every agent's lease renewed
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::map<std::string, int64_t> generation_before;
    for (const auto& i : lab.Instances()) generation_before[i.name()] = i.generation();
    auto domains_before = lab.RunningDomainIds();
    std::string what;
    std::chrono::steady_clock::time_point listening;  // of the restarted controller
    switch (round % 4) {
      case 0:
        what = "idle";
        listening = KillAndRestart(lab, rng, 300);
        if (WaitFor([&] { return lab.LeasesRenewed(lease_ms); },
                    milliseconds(5000), milliseconds(2))) {
          back_ms.push_back(std::chrono::duration_cast<milliseconds>(
                                std::chrono::steady_clock::now() - listening)
                                .count());
        }
        break;
      case 1: {
        what = "mid-heal";
        std::string victim = "web-" + std::to_string(round % 6);
        auto inst = lab.Instance(victim);
        ASSERT_TRUE(inst.has_value());
        auto out = runner.Run({AgentBin(), "inject", "crash", victim, "--config",
                               lab.AgentConfigPath(Lab::HostNumber(inst->host()))},
                              std::chrono::seconds(10));
        ASSERT_TRUE(out.ok() && out->exit_code == 0) << (out.ok() ? out->stderr_text : "");
        listening = KillAndRestart(lab, rng, 100);
        ASSERT_TRUE(lab.WaitRunningGeneration(victim, inst->generation() + 1, milliseconds(20000)))
            << what << ": " << victim << " was not healed after the restart\n"
            << lab.Logs();
        break;
      }
      case 2: {
        what = drained ? "idle (drained once)" : "mid-drain";
        if (!drained) {
          v1::DrainRequest drain;
          drain.set_host(lab.Instance("web-0")->host());
          auto r = lab.client().Drain(drain);
          ASSERT_TRUE(r.ok()) << r.status().ToString();
          drained = true;
        }
        listening = KillAndRestart(lab, rng, 100);
        break;
      }
      case 3: {
        what = "mid-upgrade";
        version = version == "v1" ? "v2" : "v1";
        v1::UpgradeStartRequest start;
        start.set_service("web");
        start.set_to_version(version);
        auto r = lab.client().UpgradeStart(start);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        listening = KillAndRestart(lab, rng, 300);
        ASSERT_TRUE(WaitFor([&] { return lab.UpgradeState("web") == "completed"; }, milliseconds(30000)))
            << what << ": the upgrade did not finish after the restart: " << lab.UpgradeState("web")
            << "\n"
            << lab.Logs();
        break;
      }
    }
    ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << what << "\n" << lab.Logs();
    auto domains_after = lab.RunningDomainIds();
    for (const auto& i : lab.Instances()) {
      if (i.generation() != generation_before[i.name()]) continue;  // healed, moved, upgraded
      EXPECT_EQ(domains_after[i.name()], domains_before[i.name()])
          << what << ": " << i.name() << " generation " << i.generation()
          << " was destroyed and started again although nothing asked for it";
    }
    EXPECT_EQ(lab.AgentFences(), 0) << what << "\n" << lab.Logs();
    if (lab.AgentFences() != 0) return;
    // One restart per round, not a controller in a crash loop: every agent is back and holds a
    // fresh lease before the next kill.
    ASSERT_TRUE(WaitFor([&] { return lab.LeasesRenewed(lease_ms); },
                        milliseconds(5000), milliseconds(5)))
        << what << ": not every agent renewed its lease after the restart\n"
        << lab.Logs();
  }
  ASSERT_FALSE(back_ms.empty());
  std::sort(back_ms.begin(), back_ms.end());
  std::printf("controller restart (listening) -> all %d agents renewed their lease: median %lld ms, "
              "max %lld ms (%zu idle rounds)\n",
              options.hosts, static_cast<long long>(back_ms[back_ms.size() / 2]),
              static_cast<long long>(back_ms.back()), back_ms.size());
  watcher.Stop();
  EXPECT_TRUE(watcher.duplicates().empty()) << watcher.duplicates().front();
  EXPECT_GT(watcher.samples(), 100);
  int fenced_events = 0;
  for (const auto& e : lab.Events()) fenced_events += e.kind() == "fenced" ? 1 : 0;
  EXPECT_EQ(fenced_events, 0);
}

TEST(ControllerRestartE2eTest, TwentyKillsWithTheLabsSettingsCostNoVm) {
  RunRounds({}, /*lease_ms=*/2000);
}

TEST(ControllerRestartE2eTest, TwentyKillsWithTheShippedDefaultsCostNoVm) {
  LabOptions defaults;
  ControllerConfig shipped;  // the defaults of controller.yaml
  defaults.heartbeat_interval = std::to_string(shipped.heartbeat_interval.count()) + "ms";
  defaults.fencing_lease = std::to_string(shipped.fencing_lease.count()) + "ms";
  defaults.host_down_after = std::to_string(shipped.host_down_after.count()) + "ms";
  defaults.restart_allowance = std::to_string(shipped.restart_allowance.count()) + "ms";
  defaults.poll_interval = "1s";
  RunRounds(defaults, shipped.fencing_lease.count());
}

// regenctl maintenance start: the controller may stay away (a reboot of its machine) for three
// times the lease; agents hold their domains, nothing fences or restarts, the maintenance is still
// there after the restart, and its end resumes normal leases.
TEST(ControllerRestartE2eTest, AMaintenanceLetsTheControllerStayDownPastTheLease) {
  LabOptions options;
  options.hosts = 3;
  Lab lab(options);
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 6, 3));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  auto domains_before = lab.RunningDomainIds();
  std::vector<std::string> args = {"regenctl", "--controller", lab.controller_address(),
                                   "maintenance", "start", "--for", "60s", "--reason", "reboot"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::ostringstream out, err;
  ASSERT_EQ(RegenctlMain(static_cast<int>(argv.size()), argv.data(), out, err), 0) << err.str();
  EXPECT_NE(out.str().find("maintenance until"), std::string::npos) << out.str();
  // Every agent holds (an ack with the hold reached it), then the controller goes away for 6 s.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (int k = 1; k <= options.hosts; ++k) {
          auto s = lab.AgentStatus(k);
          if (s.is_null() || s.value("hold_remaining_ms", int64_t{0}) < 50000) return false;
        }
        return true;
      },
      milliseconds(5000)))
      << lab.Logs();
  lab.KillController();
  std::this_thread::sleep_for(milliseconds(6000));  // 3 x fencing_lease: a reboot
  EXPECT_EQ(lab.AgentFences(), 0) << lab.Logs();
  lab.StartController();
  auto status = lab.client().MaintenanceStatusGet();
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_TRUE(status->active());
  auto hosts = lab.client().ListHosts();
  ASSERT_TRUE(hosts.ok());
  EXPECT_TRUE(hosts->maintenance().active());
  ASSERT_TRUE(lab.client().MaintenanceEnd({}).ok());
  // Back to normal leases: holds released, every agent renewed.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (int k = 1; k <= options.hosts; ++k) {
          auto s = lab.AgentStatus(k);
          if (s.is_null() || s.value("hold_remaining_ms", int64_t{1}) != 0) return false;
        }
        return lab.LeasesRenewed(2000);
      },
      milliseconds(5000)))
      << lab.Logs();
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  EXPECT_EQ(lab.AgentFences(), 0) << lab.Logs();
  auto domains_after = lab.RunningDomainIds();
  for (const auto& [name, where] : domains_before) {
    EXPECT_EQ(domains_after[name], where) << name << " was restarted during the maintenance";
  }
  int maintenance_events = 0;
  for (const auto& e : lab.Events()) maintenance_events += e.kind() == "maintenance" ? 1 : 0;
  EXPECT_EQ(maintenance_events, 2);
}

// Another connection holds SQLite's write lock for 5 s (a backup, an sqlite3 shell) while an
// operator's request needs a write: the main loop waits, the leases do not: no agent fences, no
// domain is restarted, and the request completes once the lock is gone.
TEST(ControllerRestartE2eTest, AWriteLockHeldForFiveSecondsCostsNoVm) {
  LabOptions options;
  options.hosts = 3;
  Lab lab(options);
  lab.StartAll();
  lab.Apply(Lab::ServiceYaml("web", 6, 3));
  ASSERT_TRUE(lab.WaitAllRunning(6, milliseconds(20000))) << lab.Logs();
  auto domains_before = lab.RunningDomainIds();
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open((lab.dir() + "/controller.db").c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto locked_at = std::chrono::steady_clock::now();
  // A write the controller's main loop must wait for (a second service).
  auto apply = std::async(std::launch::async, [&] {
    v1::ApplyServiceRequest r;
    r.set_spec_yaml(Lab::ServiceYaml("db", 1, 1));
    r.set_file_name("db.yaml");
    return lab.client().ApplyService(r).status();
  });
  std::this_thread::sleep_for(milliseconds(5000));  // the lock is held this long
  EXPECT_EQ(apply.wait_for(milliseconds(0)), std::future_status::timeout)
      << "the write did not wait for the lock";
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  Status applied = apply.get();
  EXPECT_TRUE(applied.ok()) << applied.ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - locked_at, milliseconds(5000));
  ASSERT_TRUE(lab.WaitAllRunning(7, milliseconds(20000))) << lab.Logs();
  EXPECT_EQ(lab.AgentFences(), 0) << lab.Logs();
  auto domains_after = lab.RunningDomainIds();
  for (const auto& [name, where] : domains_before) {
    EXPECT_EQ(domains_after[name], where) << name << " was restarted while the lock was held";
  }
}

}  // namespace
}  // namespace regen::testing
