// The control socket's commands against a running agent (fake hypervisor): status, and each
// inject-* with its refusals (fault injection off, standalone, bad arguments).
#include "agent/control_commands.h"

#include <gtest/gtest.h>

#include "agent/agent.h"
#include "agent/event_delivery.h"
#include "common/clock.h"
#include "tests/fakes/fake_command_runner.h"
#include "tests/fakes/fake_hypervisor.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using testing::FakeCommandRunner;
using testing::FakeHypervisor;
using testing::TempDir;

class ControlCommandsTest : public ::testing::Test {
 protected:
  ControlCommandsTest() : agent_(Config(), hv_, clock_, runner_), delivery_(dir_.path()) {
    agent_.Start();
    targets_.agent = &agent_;
    targets_.delivery = &delivery_;
  }
  ~ControlCommandsTest() override { agent_.Stop(); }

  AgentConfig Config() {
    AgentConfig c;
    c.host_name = "host-a";
    c.libvirt_uri = "fake:///";
    c.domain_type = "test";
    c.state_dir = dir_.path();
    return c;
  }

  nlohmann::json Handle(const nlohmann::json& request) {
    return HandleControlCommand(targets_, request);
  }

  TempDir dir_;
  FakeHypervisor hv_;
  RealClock clock_;
  FakeCommandRunner runner_;
  Agent agent_;
  EventDelivery delivery_;
  ControlTargets targets_;
};

TEST_F(ControlCommandsTest, StatusCarriesTheAgentsStatusAndTheEventCounters) {
  targets_.metrics_port = 9123;
  nlohmann::json r = Handle({{"command", "status"}});
  EXPECT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(r.value("host", ""), "host-a");
  EXPECT_EQ(r.value("mode", ""), "standalone");
  EXPECT_EQ(r.value("metrics_port", 0), 9123);
  ASSERT_TRUE(r.contains("events"));
  EXPECT_EQ(r["events"].value("lines_written", -1), 0);
  EXPECT_FALSE(r.contains("dns_watch"));  // no DNS watch
}

TEST_F(ControlCommandsTest, StatusWithoutMetricsHasNoPort) {
  nlohmann::json r = Handle({{"command", "status"}});
  EXPECT_FALSE(r.contains("metrics_port"));
}

TEST_F(ControlCommandsTest, UnknownCommandListsTheKnownOnes) {
  nlohmann::json r = Handle({{"command", "reboot"}});
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_NE(r.value("error", "").find("unknown command \"reboot\""), std::string::npos);
  EXPECT_NE(r.value("error", "").find("inject-stall"), std::string::npos);
}

TEST_F(ControlCommandsTest, FaultInjectionOffRefusesEveryInject) {
  bool crashed = false;
  targets_.inject_crash = [&](const std::string&) {
    crashed = true;
    return Status::Ok();
  };
  for (const char* command : {"inject-crash", "inject-hang", "inject-resume", "inject-stall"}) {
    nlohmann::json r = Handle({{"command", command}, {"domain", "web-0"}, {"seconds", 1}});
    EXPECT_FALSE(r.value("ok", true)) << command;
    EXPECT_NE(r.value("error", "").find("fault injection is off"), std::string::npos) << command;
  }
  EXPECT_FALSE(crashed);
}

TEST_F(ControlCommandsTest, InjectCrashChecksTheNameAndCrashesThroughTheHypervisor) {
  targets_.fault_injection = true;
  std::string crashed;
  targets_.inject_crash = [&](const std::string& name) {
    crashed = name;
    return name == "gone" ? NotFound("no domain gone") : Status::Ok();
  };
  nlohmann::json bad = Handle({{"command", "inject-crash"}, {"domain", "Not A Name"}});
  EXPECT_FALSE(bad.value("ok", true));
  EXPECT_NE(bad.value("error", "").find("is not a valid name"), std::string::npos);
  EXPECT_EQ(crashed, "");

  EXPECT_TRUE(Handle({{"command", "inject-crash"}, {"domain", "web-0"}}).value("ok", false));
  EXPECT_EQ(crashed, "web-0");

  nlohmann::json missing = Handle({{"command", "inject-crash"}, {"domain", "gone"}});
  EXPECT_FALSE(missing.value("ok", true));
  EXPECT_EQ(missing.value("error", ""), "no domain gone");
}

TEST_F(ControlCommandsTest, InjectHangNeedsTheControllerLink) {
  targets_.fault_injection = true;
  nlohmann::json standalone = Handle({{"command", "inject-hang"}});
  EXPECT_FALSE(standalone.value("ok", true));
  EXPECT_NE(standalone.value("error", "").find("standalone"), std::string::npos);

  std::vector<bool> hung;
  targets_.set_hung = [&](bool h) { hung.push_back(h); };
  EXPECT_TRUE(Handle({{"command", "inject-hang"}}).value("ok", false));
  EXPECT_TRUE(Handle({{"command", "inject-resume"}}).value("ok", false));
  EXPECT_EQ(hung, (std::vector<bool>{true, false}));
}

TEST_F(ControlCommandsTest, InjectStallChecksTheSecondsAndStallsTheMainLoop) {
  targets_.fault_injection = true;
  for (const nlohmann::json& seconds :
       {nlohmann::json(), nlohmann::json("1"), nlohmann::json(0), nlohmann::json(3601)}) {
    nlohmann::json r = Handle({{"command", "inject-stall"}, {"seconds", seconds}});
    EXPECT_FALSE(r.value("ok", true)) << seconds.dump();
    EXPECT_NE(r.value("error", "").find("\"seconds\" must be"), std::string::npos);
  }
  auto before = std::chrono::steady_clock::now();
  EXPECT_TRUE(Handle({{"command", "inject-stall"}, {"seconds", 0.2}}).value("ok", false));
  (void)agent_.reconciles();  // waits for the main loop, which the stall holds
  EXPECT_GE(std::chrono::steady_clock::now() - before, std::chrono::milliseconds(200));
}

}  // namespace
}  // namespace regen
