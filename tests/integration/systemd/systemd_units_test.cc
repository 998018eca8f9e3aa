// The unit files in systemd/ pass `systemd-analyze verify` with no output at all (it exits 0 on
// warnings such as an unknown key, so the output is what counts), and keep the settings the
// daemons and their hardening rely on. The units' ExecStart= names /usr/bin, where nothing is
// installed here: the test verifies copies whose ExecStart= points at the binaries just built.
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/subprocess.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using testing::HaveProgram;
using testing::ReadFileOrDie;
using testing::SourceDir;
using testing::TempDir;
using testing::WriteFileOrDie;

struct Unit {
  std::string name;          // "regen-agent.service"
  std::string exec_start;    // as written in the unit
  std::string built_binary;  // what ExecStart= runs in the test copy
};

const std::vector<Unit>& Units() {
  static const std::vector<Unit> units = {
      {"regen-agent.service", "/usr/bin/regen-agent run --config /etc/regen/agent.yaml",
       REGEN_AGENT_BIN},
      {"regen-controller.service",
       "/usr/bin/regen-controller run --config /etc/regen/controller.yaml", REGEN_CONTROLLER_BIN},
  };
  return units;
}

std::string UnitText(const Unit& unit) {
  return ReadFileOrDie(SourceDir() + "/systemd/" + unit.name);
}

// The unit with ExecStart= running the built binary instead of /usr/bin's.
std::string Installable(const Unit& unit) {
  std::string text = UnitText(unit);
  std::string from = "ExecStart=" + unit.exec_start.substr(0, unit.exec_start.find(' '));
  std::string to = "ExecStart=" + unit.built_binary;
  size_t at = text.find(from + " ");
  EXPECT_NE(at, std::string::npos) << unit.name << " has no line " << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

struct Verified {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

Verified Verify(const std::vector<std::string>& paths) {
  std::vector<std::string> argv = {"systemd-analyze", "verify"};
  argv.insert(argv.end(), paths.begin(), paths.end());
  RealCommandRunner runner;
  auto r = runner.Run(argv, std::chrono::seconds(60));
  if (!r.ok()) return {-1, r.status().message()};
  return {r->exit_code, r->stdout_text + r->stderr_text};
}

// "[Section] Key" -> every value given, in order, from the unit's text.
std::multimap<std::string, std::string> Settings(const std::string& text) {
  std::multimap<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  std::string section;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line[0] == '[') {
      section = line;
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    out.emplace(section + " " + line.substr(0, eq), line.substr(eq + 1));
  }
  return out;
}

std::string Get(const std::multimap<std::string, std::string>& s, const std::string& key) {
  auto range = s.equal_range(key);
  std::string value;
  for (auto it = range.first; it != range.second; ++it)
    value += (value.empty() ? "" : " ") + it->second;
  return value;
}

class SystemdUnitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveProgram("systemd-analyze")) {
      REGEN_REQUIRE_COMPONENT("systemd-analyze", "install systemd (apt-get install systemd)");
    }
    // Can verify run here at all? A unit with nothing to complain about must come out silent.
    WriteFileOrDie(dir_.File("regen-preflight.service"),
                   "[Unit]\nDescription=preflight\n[Service]\nType=oneshot\nExecStart=/bin/true\n");
    Verified v = Verify({dir_.File("regen-preflight.service")});
    if (v.exit_code != 0 || !v.output.empty()) {
      REGEN_REQUIRE_COMPONENT("systemd-analyze verify",
                              "it fails even on a trivial unit here (exit " +
                                  std::to_string(v.exit_code) + "): " + v.output);
    }
  }
  TempDir dir_{"regen-units"};
};

TEST_F(SystemdUnitsTest, VerifyPrintsNothingForEitherUnit) {
  std::vector<std::string> paths;
  for (const auto& unit : Units()) {
    WriteFileOrDie(dir_.File(unit.name), Installable(unit));
    paths.push_back(dir_.File(unit.name));
  }
  Verified v = Verify(paths);
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_EQ(v.output, "") << "systemd-analyze verify must print nothing for the units";
}

// The check above is not vacuous: verify does complain here about a misspelt key.
TEST_F(SystemdUnitsTest, VerifyCatchesAMisspeltKey) {
  std::string text = Installable(Units()[0]);
  size_t at = text.find("WatchdogSec=");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 12, "WatchdogSecs=");
  WriteFileOrDie(dir_.File("regen-agent.service"), text);
  Verified v = Verify({dir_.File("regen-agent.service")});
  EXPECT_NE(v.output.find("WatchdogSecs"), std::string::npos) << v.output;
}

TEST(SystemdUnitSettingsTest, BothUnitsAreNotifyWithWatchdogAndRestart) {
  for (const auto& unit : Units()) {
    SCOPED_TRACE(unit.name);
    auto s = Settings(UnitText(unit));
    EXPECT_EQ(Get(s, "[Service] Type"), "notify");
    EXPECT_EQ(Get(s, "[Service] NotifyAccess"), "main");
    EXPECT_FALSE(Get(s, "[Service] WatchdogSec").empty());
    EXPECT_EQ(Get(s, "[Service] Restart"), "on-failure");
    EXPECT_FALSE(Get(s, "[Service] RestartSec").empty());
    EXPECT_EQ(Get(s, "[Service] ExecStart"), unit.exec_start);
    EXPECT_EQ(Get(s, "[Service] StateDirectory"), "regen");
    EXPECT_EQ(Get(s, "[Install] WantedBy"), "multi-user.target");
  }
}

TEST(SystemdUnitSettingsTest, AgentKeepsWhatLibvirtOvsAndQemuNeed) {
  auto s = Settings(UnitText(Units()[0]));
  for (const char* dep : {"libvirtd.service", "openvswitch-switch.service"}) {
    EXPECT_NE(Get(s, "[Unit] After").find(dep), std::string::npos) << dep;
    EXPECT_NE(Get(s, "[Unit] Wants").find(dep), std::string::npos) << dep;
  }
  EXPECT_EQ(Get(s, "[Service] RuntimeDirectory"), "regen");  // /run/regen/agent.sock
  // A restart must not kill qemu:///embed domains (children in the agent's cgroup).
  EXPECT_EQ(Get(s, "[Service] KillMode"), "process");
  // Each of these breaks qemu, libvirt or OVS access (see the comments in the unit).
  for (const char* key :
       {"NoNewPrivileges", "PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock",
        "PrivateTmp", "MemoryDenyWriteExecute", "ProtectControlGroups", "RestrictNamespaces",
        "SystemCallFilter", "User", "DynamicUser", "UMask"}) {
    EXPECT_EQ(Get(s, std::string("[Service] ") + key), "") << key << " must stay unset";
  }
  EXPECT_EQ(Get(s, "[Service] ProtectSystem"), "full");
}

TEST(SystemdUnitSettingsTest, ControllerIsConfinedAndLeavesTheAgentsRunDirectoryAlone) {
  auto s = Settings(UnitText(Units()[1]));
  // systemd removes a RuntimeDirectory when its unit stops: /run/regen is the agent's.
  EXPECT_EQ(Get(s, "[Service] RuntimeDirectory"), "");
  // Shares /var/lib/regen with a root agent: a User= would have systemd chown it back and forth.
  EXPECT_EQ(Get(s, "[Service] User"), "");
  EXPECT_EQ(Get(s, "[Service] DynamicUser"), "");
  EXPECT_EQ(Get(s, "[Service] CapabilityBoundingSet"), "");
  EXPECT_NE(s.find("[Service] CapabilityBoundingSet"), s.end()) << "must be set, empty";
  EXPECT_EQ(Get(s, "[Service] NoNewPrivileges"), "yes");
  EXPECT_EQ(Get(s, "[Service] ProtectSystem"), "strict");
}

}  // namespace
}  // namespace regen
