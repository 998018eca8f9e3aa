// The fencing backstop in the whole daemon, as systemd sees it: the agent's sd_notify datagrams
// go to a NOTIFY_SOCKET of the test's own (WATCHDOG_USEC=100 ms: a ping every 50 ms), its
// watchdog_device is a regular file of the test, and nothing answers at controller_address, so
// the lease runs out one lease after start. With the hypervisor hung (listings and destroys
// block) or failing every destroy, the agent sends WATCHDOG=trigger within the grace, pings no
// more and stops writing to the device. A fence that destroys everything keeps both going.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>

#include "agent/daemon.h"
#include "tests/fakes/fake_command_runner.h"
#include "tests/fakes/fake_dns.h"
#include "tests/fakes/fake_vswitch.h"
#include "tests/fakes/hanging_hypervisor.h"
#include "tests/fakes/notify_listener.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;
using testing::HangingHypervisor;
using testing::NotifyListener;
using testing::TempDir;
using testing::WaitFor;

constexpr milliseconds kLease(1000);
constexpr milliseconds kGrace(300);
constexpr milliseconds kWait(10000);

std::string DomainXml(const std::string& name) {
  return "<domain><metadata><regen:instance xmlns:regen=\"https://regen.dev/xmlns/instance/1\">"
         "<service>web</service><instance>" +
         name +
         "</instance><update-domain>0</update-domain><version>v1</version>"
         "<generation>1</generation></regen:instance></metadata></domain>";
}

class BackstopDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    listener_ = std::make_unique<NotifyListener>(dir_.File("notify"));
    // SystemdNotifier reads these when it is made (in Deps()).
    setenv("NOTIFY_SOCKET", listener_->path().c_str(), 1);
    setenv("WATCHDOG_USEC", "100000", 1);
    unsetenv("WATCHDOG_PID");
    testing::WriteFileOrDie(device_, "");
  }
  void TearDown() override {
    if (hv_ != nullptr) hv_->Release();
    if (daemon_) daemon_->Stop();
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
  }

  AgentConfig Config() {
    AgentConfig c;
    c.host_name = "host-a";
    c.controller_address = "127.0.0.1:" + std::to_string(testing::FreePort());  // nobody
    c.insecure = true;
    c.libvirt_uri = "fake:///";
    c.domain_type = "test";
    c.poll_interval = 50ms;
    c.fencing_lease = kLease;
    c.fencing_backstop_after = kGrace;
    c.watchdog_device = device_;
    c.state_dir = dir_.path();
    c.control_socket = dir_.File("agent.sock");
    c.capacity = Resources{8, 8192, 100, 1000};
    return c;
  }
  DaemonDeps Deps() {
    DaemonDeps deps;
    deps.clock = std::make_unique<RealClock>();
    deps.runner = std::make_unique<testing::FakeCommandRunner>();
    deps.notifier = std::make_unique<SystemdNotifier>();
    deps.make_hypervisor = [this](const AgentConfig&) {
      auto hv = std::make_unique<HangingHypervisor>();
      for (const char* name : {"web-0", "web-1"}) {
        EXPECT_TRUE(hv->DefineAndStart(name, DomainXml(name)).ok());
      }
      hv_ = hv.get();
      DaemonHypervisor h;
      h.hypervisor = std::move(hv);
      return h;
    };
    deps.make_vswitch = [](const AgentConfig&, CommandRunner&) {
      return std::make_unique<testing::FakeVSwitch>();
    };
    deps.make_resolver = [](const AgentConfig&) -> Result<std::unique_ptr<dns::Resolver>> {
      return std::unique_ptr<dns::Resolver>(std::make_unique<testing::FakeResolver>());
    };
    deps.reap_children = false;
    return deps;
  }
  // Starts the daemon; returns once systemd would see it ready and pinging, with the device
  // petted.
  void Start() {
    started_ = Steady::now();
    daemon_ = std::make_unique<AgentDaemon>(Config(), Deps());
    ASSERT_TRUE(daemon_->Start().ok());
    ASSERT_TRUE(WaitFor(
        [&] {
          return !listener_->Times("READY=1").empty() && !listener_->Times("WATCHDOG=1").empty() &&
                 DeviceBytes() > 0;
        },
        kWait));
  }
  int64_t DeviceBytes() {
    std::error_code ec;
    auto n = std::filesystem::file_size(device_, ec);
    return ec ? -1 : static_cast<int64_t>(n);
  }
  int PingsAfter(Steady::time_point t) {
    auto times = listener_->Times("WATCHDOG=1");
    return static_cast<int>(
        std::count_if(times.begin(), times.end(), [&](auto a) { return a > t; }));
  }
  std::optional<Steady::time_point> Trigger() {
    auto times = listener_->Times("WATCHDOG=trigger");
    if (times.empty()) return std::nullopt;
    return times.front();
  }
  bool ManagedGone() {
    auto domains = hv_->FakeHypervisor::ListDomains();
    return domains.ok() && domains->empty();
  }
  void WaitUntil(Steady::time_point t) {
    ASSERT_TRUE(WaitFor([&] { return Steady::now() >= t; }, kWait));
  }
  // The trigger came after the lease ran out, within the grace (plus slack for a loaded
  // machine), and is the last word: no ping and no device write after it.
  void ExpectTrippedInTime() {
    ASSERT_TRUE(WaitFor([&] { return Trigger().has_value(); }, kWait)) << "no WATCHDOG=trigger";
    auto after = std::chrono::duration_cast<milliseconds>(*Trigger() - started_);
    std::printf("WATCHDOG=trigger %lld ms after start (lease %lld ms, grace %lld ms)\n",
                static_cast<long long>(after.count()), static_cast<long long>(kLease.count()),
                static_cast<long long>(kGrace.count()));
    EXPECT_GE(after, kLease);
    EXPECT_LT(after, kLease + kGrace + 500ms);
  }

  TempDir dir_{"regen-backstop-daemon"};
  std::string device_ = dir_.File("watchdog");
  std::unique_ptr<NotifyListener> listener_;
  HangingHypervisor* hv_ = nullptr;
  std::unique_ptr<AgentDaemon> daemon_;
  Steady::time_point started_;
};

TEST_F(BackstopDaemonTest, HungHypervisorTripsTheWatchdogAndStopsPettingTheDevice) {
  Start();
  hv_->Hang();  // the next listing blocks the main loop, long before the lease runs out
  ASSERT_TRUE(WaitFor([&] { return hv_->blocked() > 0; }, kWait));
  ExpectTrippedInTime();
  const auto trigger = *Trigger();
  const int64_t bytes = DeviceBytes();
  // libvirt answers again: the main loop fences and would ping, but the trip is for good.
  hv_->Release();
  ASSERT_TRUE(WaitFor([&] { return ManagedGone(); }, kWait));
  WaitUntil(Steady::now() + 300ms);  // six ping periods
  EXPECT_EQ(PingsAfter(trigger), 0);
  EXPECT_EQ(DeviceBytes(), bytes);
  EXPECT_EQ(listener_->Times("WATCHDOG=trigger").size(), 1u);
}

TEST_F(BackstopDaemonTest, FailingDestroysTripTheWatchdogWhileTheMainLoopRuns) {
  Start();
  hv_->FailDestroys(true);
  ExpectTrippedInTime();
  const auto trigger = *Trigger();
  const int64_t bytes = DeviceBytes();
  // The main loop keeps working (and retrying the destroys): without the trip it would ping.
  int calls = hv_->destroy_calls();
  ASSERT_TRUE(WaitFor([&] { return hv_->destroy_calls() >= calls + 2; }, kWait));
  WaitUntil(Steady::now() + 300ms);
  EXPECT_EQ(PingsAfter(trigger), 0);
  EXPECT_EQ(DeviceBytes(), bytes);
  EXPECT_FALSE(ManagedGone());
}

TEST_F(BackstopDaemonTest, FenceThatDestroysEverythingKeepsPinging) {
  Start();
  ASSERT_TRUE(WaitFor([&] { return ManagedGone(); }, kWait));
  auto checked = std::max(Steady::now(), started_ + kLease + kGrace + 300ms);
  WaitUntil(checked);
  int64_t bytes = DeviceBytes();
  ASSERT_TRUE(
      WaitFor([&] { return PingsAfter(checked) >= 3 && DeviceBytes() >= bytes + 3; }, kWait));
  EXPECT_FALSE(Trigger().has_value());
}

}  // namespace
}  // namespace regen
