// The real regen-agent binary on the libvirt test driver: desired set in, domains out, the host
// CLI (`regen-agent status`), and the errors a sysadmin sees.
#include <gtest/gtest.h>

#include "common/subprocess.h"
#include "tests/integration/agent/agent_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kTwo[] = R"(instances:
  - name: web-0
    service: web
    update_domain: 0
    version: v1
    generation: 1
    resources: {vcpus: 1, memory_mib: 64, disk_gib: 1, bandwidth_mbps: 100}
    ip: 10.10.0.2
    mac: "52:54:00:00:00:02"
  - name: web-1
    service: web
    update_domain: 1
    version: v1
    generation: 1
    resources: {vcpus: 1, memory_mib: 64, disk_gib: 1, bandwidth_mbps: 100}
    ip: 10.10.0.3
    mac: "52:54:00:00:00:03"
)";

Result<CommandOutput> Agent(const std::vector<std::string>& args) {
  RealCommandRunner runner;
  std::vector<std::string> argv = {REGEN_AGENT_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return runner.Run(argv, std::chrono::seconds(20));
}

TEST(AgentProcessTest, RunsDesiredDomainsAndReportsStatus) {
  AgentHarness agent({.desired_yaml = kTwo});
  agent.Start();
  ASSERT_TRUE(agent.WaitRunning("web-0", milliseconds(10000))) << agent.log();
  ASSERT_TRUE(agent.WaitRunning("web-1", milliseconds(10000))) << agent.log();

  auto json_out = Agent({"status", "-o", "json", "--config", agent.config_path()});
  ASSERT_TRUE(json_out.ok());
  ASSERT_EQ(json_out->exit_code, 0) << json_out->stderr_text;
  auto status = nlohmann::json::parse(json_out->stdout_text);
  EXPECT_EQ(status["host"], "host-a");
  EXPECT_TRUE(status["connected"].get<bool>());
  ASSERT_EQ(status["domains"].size(), 2u);
  const auto& d = status["domains"][1];
  EXPECT_EQ(d["name"], "web-1");
  EXPECT_EQ(d["service"], "web");
  EXPECT_EQ(d["update_domain"], 1);
  EXPECT_EQ(d["version"], "v1");
  EXPECT_EQ(d["generation"], 1);
  EXPECT_TRUE(d["managed"].get<bool>());

  auto text_out = Agent({"status", "--config", agent.config_path()});
  ASSERT_TRUE(text_out.ok());
  EXPECT_EQ(text_out->exit_code, 0);
  EXPECT_NE(text_out->stdout_text.find("DOMAIN"), std::string::npos);
  EXPECT_NE(text_out->stdout_text.find("web-1"), std::string::npos) << text_out->stdout_text;

  // Generation bump in the desired set: the domain is re-created at the new generation.
  std::string bumped = kTwo;
  bumped.replace(bumped.rfind("generation: 1"), 13, "generation: 2");
  agent.WriteDesired(bumped);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = agent.Status();
        for (const auto& dom : s["domains"])
          if (dom["name"] == "web-1" && dom["generation"] == 2 && dom["state"] == "running")
            return true;
        return false;
      },
      milliseconds(10000)))
      << agent.log();

  // Removing an instance from the desired set destroys its domain.
  agent.WriteDesired(OneInstanceDesired("web-0"));
  ASSERT_TRUE(WaitFor([&] { return agent.Status()["domains"].size() == 1u; }, milliseconds(10000)));
  agent.Stop();
  std::string log = agent.log();
  EXPECT_NE(log.find("created instance web-0"), std::string::npos) << log;
  EXPECT_NE(log.find("destroyed instance web-1"), std::string::npos) << log;
  EXPECT_NE(log.find("domains keep running"), std::string::npos) << log;
}

TEST(AgentProcessTest, BadConfigIsRefusedWithFileLineAndField) {
  TempDir dir;
  WriteFileOrDie(dir.File("agent.yaml"), "host_name: Bad_Host\nlibvirt_uri: test:///default\n");
  auto out = Agent({"run", "--config", dir.File("agent.yaml")});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->exit_code, 2);
  EXPECT_NE(out->stderr_text.find(dir.File("agent.yaml") + ":1:"), std::string::npos)
      << out->stderr_text;
  EXPECT_NE(out->stderr_text.find("host_name"), std::string::npos) << out->stderr_text;
  EXPECT_NE(out->stderr_text.find("Bad_Host"), std::string::npos) << out->stderr_text;
}

TEST(AgentProcessTest, StatusWithoutAnAgentSaysSo) {
  TempDir dir;
  auto out = Agent({"status", "--socket", dir.File("nothing.sock")});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->exit_code, 1);
  EXPECT_NE(out->stderr_text.find("cannot reach the agent at " + dir.File("nothing.sock")),
            std::string::npos)
      << out->stderr_text;
}

TEST(AgentProcessTest, BadCliArgumentsAreRefused) {
  auto out = Agent({"status", "-o", "yaml"});
  ASSERT_TRUE(out.ok());
  EXPECT_NE(out->exit_code, 0);
  EXPECT_NE(out->stderr_text.find("yaml"), std::string::npos) << out->stderr_text;
  out = Agent({"frobnicate"});
  ASSERT_TRUE(out.ok());
  EXPECT_NE(out->exit_code, 0);
  EXPECT_NE(out->stderr_text.find("frobnicate"), std::string::npos) << out->stderr_text;
}

TEST(AgentProcessTest, SecondAgentOnTheSameSocketIsRefused) {
  AgentHarness agent({.desired_yaml = kTwo});
  agent.Start();
  ASSERT_TRUE(agent.WaitRunning("web-0", milliseconds(10000))) << agent.log();
  auto out = Agent({"run", "--config", agent.config_path()});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->exit_code, 1);
  EXPECT_NE(out->stderr_text.find("in use by a running agent"), std::string::npos)
      << out->stderr_text;
  EXPECT_FALSE(agent.Status().is_null()) << "the first agent still answers";
}

}  // namespace
}  // namespace regen::testing
