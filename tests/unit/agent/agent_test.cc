// The agent's main loop against the fake hypervisor: desired set from a file, creation, failure
// detection by event and by poll, local re-creation, foreign domains, libvirt outages.
#include "agent/agent.h"

#include <gtest/gtest.h>

#include "config/service_spec.h"
#include "tests/fakes/fake_hypervisor.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::FakeHypervisor;
using testing::TempDir;
using testing::WaitFor;
using testing::WriteFileOrDie;

constexpr char kDesired[] = R"(instances:
  - name: web-0
    service: web
    update_domain: 0
    version: v1
    generation: 1
    resources: {vcpus: 1, memory_mib: 64}
    mac: "52:54:00:00:00:10"
  - name: web-1
    service: web
    update_domain: 1
    version: v1
    generation: 1
    resources: {vcpus: 1, memory_mib: 64}
    mac: "52:54:00:00:00:11"
)";

class AgentTest : public ::testing::Test {
 protected:
  AgentConfig Config(milliseconds poll = milliseconds(50)) {
    AgentConfig c;
    c.host_name = "host-a";
    c.libvirt_uri = "fake:///";
    c.poll_interval = poll;
    c.domain_type = "test";
    c.state_dir = dir_.path();
    c.control_socket = dir_.File("agent.sock");
    c.desired_file = dir_.File("desired.yaml");
    return c;
  }

  bool Running(const std::string& name) {
    auto domains = hv_.ListDomains();
    if (!domains.ok()) return false;
    for (const auto& d : *domains)
      if (d.name == name && d.state == DomainState::kRunning) return true;
    return false;
  }

  TempDir dir_;
  FakeHypervisor hv_;
  RealClock clock_;
  RealCommandRunner runner_;
};

TEST_F(AgentTest, CreatesDesiredInstancesFromFile) {
  WriteFileOrDie(dir_.File("desired.yaml"), kDesired);
  Agent agent(Config(), hv_, clock_, runner_);
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return Running("web-0") && Running("web-1"); }, milliseconds(5000)));
  std::string xml = hv_.XmlOf("web-1");
  EXPECT_NE(xml.find("52:54:00:00:00:11"), std::string::npos);
  EXPECT_NE(xml.find("generation>1</"), std::string::npos) << xml;
  auto status = agent.StatusJson();
  EXPECT_EQ(status["host"], "host-a");
  EXPECT_EQ(status["mode"], "standalone");
  EXPECT_EQ(status["domains"].size(), 2u);
  EXPECT_EQ(status["domains"][0]["service"], "web");
  // Stable: further polls change nothing.
  int defines = hv_.defines();
  ASSERT_TRUE(WaitFor([&] { return agent.reconciles() > 5; }, milliseconds(5000)));
  EXPECT_EQ(hv_.defines(), defines);
}

TEST_F(AgentTest, CrashDetectedByEventIsRecreated) {
  WriteFileOrDie(dir_.File("desired.yaml"), kDesired);
  Agent agent(Config(milliseconds(60000)), hv_, clock_, runner_);  // poll only at start
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return Running("web-0") && Running("web-1"); }, milliseconds(5000)));
  ASSERT_TRUE(hv_.Crash("web-0"));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto f = agent.Failures();
        return f.size() == 1 && f[0].recreated_unix_ms > 0;
      },
      milliseconds(5000)));
  auto f = agent.Failures()[0];
  EXPECT_EQ(f.instance, "web-0");
  EXPECT_EQ(f.detected_by, "event");
  EXPECT_EQ(f.state, "crashed");
  EXPECT_GE(f.recreated_unix_ms, f.detected_unix_ms);
  EXPECT_TRUE(Running("web-0"));
  EXPECT_EQ(hv_.defines(), 3);
}

int64_t IdOf(FakeHypervisor& hv, const std::string& name) {
  auto domains = hv.ListDomains();
  for (const auto& d : *domains)
    if (d.name == name) return d.id;
  return -1;
}

TEST_F(AgentTest, QemuExitFailsTheDomainBeforeLibvirtNotices) {
  WriteFileOrDie(dir_.File("desired.yaml"), kDesired);
  Agent agent(Config(milliseconds(60000)), hv_, clock_, runner_);  // poll only at start
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return Running("web-0") && Running("web-1"); }, milliseconds(5000)));
  // The fake still says "running" (libvirt lags): the subreaper's notice alone fails it.
  agent.NoteProcessExit("web-0", IdOf(hv_, "web-0"), "killed by signal 9");
  ASSERT_TRUE(WaitFor(
      [&] {
        auto f = agent.Failures();
        return f.size() == 1 && f[0].recreated_unix_ms > 0;
      },
      milliseconds(5000)));
  auto f = agent.Failures()[0];
  EXPECT_EQ(f.instance, "web-0");
  EXPECT_EQ(f.detected_by, "event");
  EXPECT_EQ(f.reason, "qemu exited: killed by signal 9");
  EXPECT_EQ(hv_.defines(), 3);
  EXPECT_TRUE(Running("web-0"));
}

TEST_F(AgentTest, StaleQemuExitOfAnEarlierRunIsIgnored) {
  WriteFileOrDie(dir_.File("desired.yaml"), kDesired);
  Agent agent(Config(milliseconds(20)), hv_, clock_, runner_);
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return Running("web-0") && Running("web-1"); }, milliseconds(5000)));
  // An exit notice for a run that is not the current one (e.g. the qemu Regen itself destroyed
  // before re-creating the domain) must not fail the new run.
  agent.NoteProcessExit("web-1", IdOf(hv_, "web-1") + 100, "killed by signal 15");
  int64_t seen = agent.reconciles();
  ASSERT_TRUE(WaitFor([&] { return agent.reconciles() > seen + 5; }, milliseconds(5000)));
  EXPECT_TRUE(agent.Failures().empty());
  EXPECT_EQ(hv_.defines(), 2);
}

TEST_F(AgentTest, CrashWithoutEventIsFoundByPolling) {
  WriteFileOrDie(dir_.File("desired.yaml"), kDesired);
  Agent agent(Config(milliseconds(50)), hv_, clock_, runner_);
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return Running("web-0") && Running("web-1"); }, milliseconds(5000)));
  ASSERT_TRUE(hv_.Crash("web-1", /*emit_event=*/false));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto f = agent.Failures();
        return f.size() == 1 && f[0].recreated_unix_ms > 0;
      },
      milliseconds(5000)));
  EXPECT_EQ(agent.Failures()[0].detected_by, "poll");
  EXPECT_EQ(agent.Failures()[0].instance, "web-1");
}

TEST_F(AgentTest, WithAControllerAFailedDomainIsReportedNotRestarted) {
  AgentConfig config = Config();
  config.controller_address = "127.0.0.1:7400";  // never dialled: no ControllerLink here
  config.desired_file.clear();
  Agent agent(config, hv_, clock_, runner_);
  agent.Start();
  // What the controller link does: the desired set, and a lease that does not run out.
  auto desired = ParseDesiredInstances(kDesired, "desired.yaml");
  ASSERT_TRUE(desired.ok());
  agent.SetControllerDesired(*desired);
  agent.RenewLease(clock_.Now() + std::chrono::hours(1));
  ASSERT_TRUE(WaitFor([&] { return Running("web-0"); }, milliseconds(5000)));
  ASSERT_TRUE(hv_.Crash("web-0"));
  ASSERT_TRUE(WaitFor([&] { return agent.Failures().size() == 1; }, milliseconds(5000)));
  ASSERT_TRUE(WaitFor([&] { return agent.reconciles() > 5; }, milliseconds(5000)));
  EXPECT_FALSE(Running("web-0")) << "never restarted locally: the controller heals elsewhere";
  EXPECT_EQ(agent.Failures().size(), 1u) << "reported once, not at every poll";
}

TEST_F(AgentTest, RemovedFromDesiredIsDestroyedForeignIsKept) {
  WriteFileOrDie(dir_.File("desired.yaml"), kDesired);
  hv_.AddForeignDomain("somebodys-vm");
  Agent agent(Config(), hv_, clock_, runner_);
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return Running("web-0") && Running("web-1"); }, milliseconds(5000)));
  // Rewrite with only web-1 (ensure a different mtime).
  std::filesystem::last_write_time(
      dir_.File("desired.yaml"),
      std::filesystem::file_time_type::clock::now() - std::chrono::seconds(10));
  std::string only_web1 = std::string(kDesired);
  only_web1.erase(only_web1.find("  - name: web-0"),
                  only_web1.find("  - name: web-1") - only_web1.find("  - name: web-0"));
  WriteFileOrDie(dir_.File("desired.yaml"), only_web1);
  ASSERT_TRUE(WaitFor([&] { return !Running("web-0"); }, milliseconds(5000)));
  EXPECT_TRUE(Running("web-1"));
  EXPECT_TRUE(Running("somebodys-vm"));
}

TEST_F(AgentTest, NoDesiredSetMeansNothingIsDestroyed) {
  // No desired file yet: the agent must not treat "unknown" as "empty".
  ASSERT_TRUE(
      hv_.DefineAndStart(
             "web-0",
             "<domain><metadata><regen:instance "
             "xmlns:regen=\"https://regen.dev/xmlns/instance/1\"><service>web</"
             "service><instance>web-0</instance><update-domain>0</update-domain><version>v1</"
             "version><generation>1</generation></regen:instance></metadata></domain>")
          .ok());
  Agent agent(Config(), hv_, clock_, runner_);
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return agent.reconciles() > 3; }, milliseconds(5000)));
  EXPECT_TRUE(Running("web-0"));
  auto status = agent.StatusJson();
  EXPECT_FALSE(status["desired_known"].get<bool>());
  EXPECT_NE(status["desired_error"].get<std::string>().find("desired.yaml"), std::string::npos);
}

TEST_F(AgentTest, BadDesiredFileKeepsPreviousSet) {
  WriteFileOrDie(dir_.File("desired.yaml"), kDesired);
  Agent agent(Config(), hv_, clock_, runner_);
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return Running("web-0") && Running("web-1"); }, milliseconds(5000)));
  std::filesystem::last_write_time(
      dir_.File("desired.yaml"),
      std::filesystem::file_time_type::clock::now() - std::chrono::seconds(10));
  WriteFileOrDie(dir_.File("desired.yaml"), "instances:\n  - name: Web_0\n");
  ASSERT_TRUE(
      WaitFor([&] { return agent.StatusJson().contains("desired_error"); }, milliseconds(5000)));
  EXPECT_NE(agent.StatusJson()["desired_error"].get<std::string>().find("Web_0"),
            std::string::npos);
  EXPECT_TRUE(Running("web-0"));
  EXPECT_TRUE(Running("web-1"));
}

TEST_F(AgentTest, LibvirtOutageThenRelist) {
  WriteFileOrDie(dir_.File("desired.yaml"), kDesired);
  Agent agent(Config(), hv_, clock_, runner_);
  agent.Start();
  // Both must run before libvirt goes away: creates run in parallel, and a create cut off by the
  // outage leaves web-1 with no domain to crash (seen in CI).
  ASSERT_TRUE(WaitFor([&] { return Running("web-0") && Running("web-1"); }, milliseconds(5000)));
  hv_.SetDown(true);
  ASSERT_TRUE(
      WaitFor([&] { return !agent.StatusJson()["connected"].get<bool>(); }, milliseconds(5000)));
  // While libvirt was away, a domain died without an event.
  hv_.SetDown(false);
  ASSERT_TRUE(hv_.Crash("web-1", /*emit_event=*/false));
  ASSERT_TRUE(
      WaitFor([&] { return agent.StatusJson()["connected"].get<bool>(); }, milliseconds(5000)));
  ASSERT_TRUE(WaitFor([&] { return Running("web-1"); }, milliseconds(5000)));
  EXPECT_EQ(agent.Failures().size(), 1u);
}

TEST_F(AgentTest, CreateFailureIsRetriedWithBackoff) {
  WriteFileOrDie(dir_.File("desired.yaml"), kDesired);
  hv_.FailNextDefine(Internal("no space left"));
  Agent agent(Config(), hv_, clock_, runner_);
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return Running("web-0") && Running("web-1"); }, milliseconds(5000)));
  bool saw_failure = false;
  for (const auto& c : agent.Changes()) saw_failure |= c.what == "create-failed";
  EXPECT_TRUE(saw_failure);
}

}  // namespace
}  // namespace regen
