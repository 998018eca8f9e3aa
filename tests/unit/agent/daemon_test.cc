// The agent daemon started with fakes for the real world (hypervisor, OVS, DNS resolver,
// systemd): it serves its control socket, creates the desired domains, tells systemd it is
// ready, and stops.
#include "agent/daemon.h"

#include <gtest/gtest.h>

#include "agent/control_socket.h"
#include "tests/fakes/fake_command_runner.h"
#include "tests/fakes/fake_dns.h"
#include "tests/fakes/fake_hypervisor.h"
#include "tests/fakes/fake_notifier.h"
#include "tests/fakes/fake_vswitch.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::FakeCommandRunner;
using testing::FakeHypervisor;
using testing::FakeNotifier;
using testing::FakeResolver;
using testing::FakeVSwitch;
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
)";

struct Fakes {
  FakeHypervisor* hypervisor = nullptr;
  FakeNotifier* notifier = nullptr;
  bool vswitch_made = false;
  bool resolver_made = false;
};

DaemonDeps FakeDeps(Fakes& fakes) {
  DaemonDeps deps;
  deps.clock = std::make_unique<RealClock>();
  deps.runner = std::make_unique<FakeCommandRunner>();
  auto notifier = std::make_unique<FakeNotifier>();
  fakes.notifier = notifier.get();
  deps.notifier = std::move(notifier);
  deps.make_hypervisor = [&fakes](const AgentConfig&) {
    auto hv = std::make_unique<FakeHypervisor>();
    fakes.hypervisor = hv.get();
    DaemonHypervisor h;
    h.inject_crash = [hv = hv.get()](const std::string& name) {
      if (!hv->Crash(name)) return NotFound("no domain " + name);
      return Status::Ok();
    };
    h.hypervisor = std::move(hv);
    return h;
  };
  deps.make_vswitch = [&fakes](const AgentConfig&, CommandRunner&) {
    fakes.vswitch_made = true;
    return std::make_unique<FakeVSwitch>();
  };
  deps.make_resolver = [&fakes](const AgentConfig&) -> Result<std::unique_ptr<dns::Resolver>> {
    fakes.resolver_made = true;
    return std::unique_ptr<dns::Resolver>(std::make_unique<FakeResolver>());
  };
  deps.reap_children = false;  // the test process stays an ordinary parent
  return deps;
}

AgentConfig Config(const TempDir& dir) {
  AgentConfig c;
  c.host_name = "host-a";
  c.libvirt_uri = "fake:///";
  c.poll_interval = milliseconds(50);
  c.domain_type = "test";
  c.state_dir = dir.path();
  c.control_socket = dir.File("agent.sock");
  c.desired_file = dir.File("desired.yaml");
  c.fault_injection = true;
  c.dns_server = "127.0.0.1:53";
  c.dns_zone = "lab.example.";
  c.network.enabled = true;
  return c;
}

nlohmann::json Control(const AgentConfig& config, nlohmann::json request) {
  auto r = ControlSocketCall(config.control_socket, request, std::chrono::seconds(10));
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : nlohmann::json();
}

TEST(AgentDaemonTest, StartsWithFakesServesTheControlSocketAndStops) {
  TempDir dir;
  AgentConfig config = Config(dir);
  WriteFileOrDie(config.desired_file, kDesired);
  Fakes fakes;
  AgentDaemon daemon(config, FakeDeps(fakes));
  ASSERT_TRUE(daemon.Start().ok());
  EXPECT_TRUE(fakes.vswitch_made);
  EXPECT_TRUE(fakes.resolver_made);

  // The desired domain is created on the fake hypervisor, and status shows it.
  ASSERT_TRUE(WaitFor(
      [&] {
        nlohmann::json s = Control(config, {{"command", "status"}});
        return s.value("ok", false) && s["domains"].size() == 1 &&
               s["domains"][0].value("state", "") == "running";
      },
      std::chrono::seconds(10)));
  nlohmann::json status = Control(config, {{"command", "status"}});
  EXPECT_EQ(status.value("host", ""), "host-a");
  EXPECT_TRUE(status.contains("dns_watch"));
  EXPECT_TRUE(status.contains("events"));

  // inject-crash reaches the hypervisor; the standalone agent re-creates the domain.
  EXPECT_TRUE(
      Control(config, {{"command", "inject-crash"}, {"domain", "web-0"}}).value("ok", false));
  ASSERT_TRUE(WaitFor(
      [&] {
        nlohmann::json s = Control(config, {{"command", "status"}});
        return !s["failures"].empty() && s["failures"][0].value("recreated_unix_ms", 0) > 0;
      },
      std::chrono::seconds(10)));
  EXPECT_GE(fakes.hypervisor->defines(), 2);

  // systemd hears READY=1 from the main loop.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& m : fakes.notifier->messages()) {
          if (m.state.find("READY=1") != std::string::npos) return true;
        }
        return false;
      },
      std::chrono::seconds(10)));

  daemon.Stop();
  EXPECT_FALSE(
      ControlSocketCall(config.control_socket, {{"command", "status"}}, milliseconds(500)).ok());
  EXPECT_GE(fakes.notifier->Count("STOPPING=1"), 1);
}

TEST(AgentDaemonTest, ABadDnsServerIsAConfigurationError) {
  TempDir dir;
  AgentConfig config = Config(dir);
  Fakes fakes;
  DaemonDeps deps = FakeDeps(fakes);
  deps.make_resolver = [](const AgentConfig&) -> Result<std::unique_ptr<dns::Resolver>> {
    return InvalidArgument("dns.server \"x\" must be \"ip:port\"");
  };
  AgentDaemon daemon(config, std::move(deps));
  Status s = daemon.Start();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  daemon.Stop();  // stops what had started
}

}  // namespace
}  // namespace regen
