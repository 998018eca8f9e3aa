// The real regen-agent and regen-controller under a stand-in for systemd: NOTIFY_SOCKET is a unix
// datagram socket the test owns and WATCHDOG_USEC=1000000 (a ping every 500 ms). Both send READY=1
// with a STATUS= line and WATCHDOG=1 pings never further apart than WATCHDOG_USEC (systemd would
// kill them); a stall injected into the agent's main loop stops the pings for as long as it lasts,
// and they resume after it. The stall is found as the one long gap after the request, not by
// timing when the loop got to it (a loaded machine runs the stall task late).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <regex>

#include "agent/control_socket.h"
#include "tests/fakes/notify_listener.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;
using testing::ChildProcess;
using testing::FreePort;
using testing::NotifyListener;
using testing::PortOpen;
using testing::ReadFileOrDie;
using testing::TempDir;
using testing::WaitFor;
using testing::WriteFileOrDie;

constexpr const char* kWatchdogUsec = "1000000";
constexpr double kWatchdogSec = 1.0;

// Starts `argv` with NOTIFY_SOCKET and WATCHDOG_USEC set for it alone.
std::unique_ptr<ChildProcess> StartNotifyDaemon(const std::vector<std::string>& argv,
                                                const std::string& notify_socket,
                                                const std::string& log) {
  setenv("NOTIFY_SOCKET", notify_socket.c_str(), 1);
  setenv("WATCHDOG_USEC", kWatchdogUsec, 1);
  unsetenv("WATCHDOG_PID");  // posix_spawn: the child's PID is not known before; unset = any
  auto child = std::make_unique<ChildProcess>(argv, log);
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  return child;
}

// The STATUS= line of a message, or "".
std::string StatusOf(const std::string& state) {
  std::smatch m;
  static const std::regex re("(^|\n)STATUS=([^\n]*)");
  return std::regex_search(state, m, re) ? m[2].str() : "";
}

bool HasReady(NotifyListener& listener) { return !listener.Times("READY=1").empty(); }

size_t PingsAfter(NotifyListener& listener, Steady::time_point t) {
  auto times = listener.Times("WATCHDOG=1");
  return std::count_if(times.begin(), times.end(), [&](auto at) { return at > t; });
}

double Seconds(Steady::duration d) { return std::chrono::duration<double>(d).count(); }

TEST(SystemdWatchdogTest, AgentPingsFromItsMainLoopAndStopsWhileItStalls) {
  TempDir dir("regen-sd-agent");
  NotifyListener listener(dir.File("notify.sock"));
  WriteFileOrDie(dir.File("host.xml"), "<node/>\n");
  WriteFileOrDie(dir.File("desired.yaml"),
                 "instances:\n"
                 "  - name: web-0\n"
                 "    service: web\n"
                 "    update_domain: 0\n"
                 "    version: v1\n"
                 "    generation: 1\n"
                 "    resources: {vcpus: 1, memory_mib: 64}\n"
                 "    mac: \"52:54:00:00:00:20\"\n");
  WriteFileOrDie(dir.File("agent.yaml"),
                 "host_name: host-a\n"
                 "libvirt_uri: \"test://" +
                     dir.File("host.xml") +
                     "\"\n"
                     "domain_type: test\n"
                     "poll_interval: 100ms\n"
                     "ovs:\n  bridge: \"br-int\"\n"
                     "state_dir: " +
                     dir.File("state") + "\ncontrol_socket: " + dir.File("agent.sock") +
                     "\ndesired_file: " + dir.File("desired.yaml") +
                     "\nfault_injection: true\nlog_level: debug\n");
  auto agent = StartNotifyDaemon({REGEN_AGENT_BIN, "run", "--config", dir.File("agent.yaml")},
                                 listener.path(), dir.File("agent.log"));
  auto log = [&] { return ReadFileOrDie(dir.File("agent.log")); };

  ASSERT_TRUE(WaitFor([&] { return HasReady(listener); }, milliseconds(10000))) << log();
  std::string ready;
  for (const auto& m : listener.messages()) {
    if (NotifyListener::HasLine(m.state, "READY=1")) ready = m.state;
  }
  EXPECT_TRUE(std::regex_match(
      StatusOf(ready),
      std::regex("host host-a: [0-9]+ domains, standalone(, libvirt not connected)?")))
      << ready;
  // The summary follows the host: the desired instance runs, and STATUS= says so (within the
  // 5 s status interval).
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& m : listener.messages()) {
          if (StatusOf(m.state) == "host host-a: 1 domains, standalone") return true;
        }
        return false;
      },
      milliseconds(15000)))
      << log();

  // Pings every ~500 ms.
  Steady::time_point ready_at = listener.Times("READY=1").front();
  ASSERT_TRUE(WaitFor([&] { return PingsAfter(listener, ready_at) >= 5; }, milliseconds(15000)));

  // A bad stall request is refused.
  auto bad =
      ControlSocketCall(dir.File("agent.sock"), {{"command", "inject-stall"}, {"seconds", "two"}},
                        milliseconds(5000));
  ASSERT_TRUE(bad.ok()) << bad.status().message();
  EXPECT_FALSE(bad->value("ok", true)) << bad->dump();

  // Stall the main loop for 3 s.
  Steady::time_point requested_at = Steady::now();
  auto r = ControlSocketCall(dir.File("agent.sock"), {{"command", "inject-stall"}, {"seconds", 3}},
                             milliseconds(5000));
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(r->value("ok", false)) << r->dump();
  // Pings again after it: at least 3 after the stall must have ended.
  ASSERT_TRUE(WaitFor([&] { return PingsAfter(listener, requested_at + milliseconds(3000)) >= 3; },
                      milliseconds(20000)))
      << log();
  EXPECT_TRUE(agent->Running());

  // Exactly one gap after the request is the stall: about 3 s (at least the stall less one ping
  // interval); every other gap, before or after, is within WATCHDOG_USEC.
  auto pings = listener.Times("WATCHDOG=1");
  int stalls = 0;
  Steady::duration stall{0};
  Steady::duration longest_other{0};
  for (size_t i = 1; i < pings.size(); ++i) {
    Steady::duration gap = pings[i] - pings[i - 1];
    if (pings[i] > requested_at && Seconds(gap) >= 2.4) {
      ++stalls;
      stall = gap;
    } else {
      longest_other = std::max(longest_other, gap);
    }
  }
  EXPECT_EQ(stalls, 1) << "one stall of 3 s";
  EXPECT_GE(Seconds(stall), 2.4);
  EXPECT_LE(Seconds(stall), 3.0 + 2 * kWatchdogSec);
  EXPECT_LT(Seconds(longest_other), kWatchdogSec)
      << "pings more than WatchdogSec apart outside the stall";

  agent->Stop();
  EXPECT_TRUE(WaitFor([&] { return !listener.Times("STOPPING=1").empty(); }, milliseconds(5000)));
}

TEST(SystemdWatchdogTest, ControllerIsReadyOnceItListensAndPings) {
  TempDir dir("regen-sd-ctl");
  NotifyListener listener(dir.File("notify.sock"));
  int port = FreePort();
  WriteFileOrDie(dir.File("controller.yaml"),
                 "listen_address: \"127.0.0.1:" + std::to_string(port) +
                     "\"\ndatabase: " + dir.File("controller.db") +
                     "\nlog_level: debug\ninsecure: true\nallow_loopback_hosts: true\n");
  auto controller =
      StartNotifyDaemon({REGEN_CONTROLLER_BIN, "run", "--config", dir.File("controller.yaml")},
                        listener.path(), dir.File("controller.log"));
  auto log = [&] { return ReadFileOrDie(dir.File("controller.log")); };

  ASSERT_TRUE(WaitFor([&] { return HasReady(listener); }, milliseconds(10000))) << log();
  EXPECT_TRUE(PortOpen(port)) << "READY=1 before the controller listens";
  auto messages = listener.messages();
  EXPECT_EQ(messages.front().state, "READY=1\nSTATUS=0 hosts up, 0 instances running");
  Steady::time_point ready_at = listener.Times("READY=1").front();
  ASSERT_TRUE(WaitFor([&] { return PingsAfter(listener, ready_at) >= 5; }, milliseconds(15000)))
      << log();
  auto pings = listener.Times("WATCHDOG=1");
  for (size_t i = 1; i < pings.size(); ++i) {
    EXPECT_LT(Seconds(pings[i] - pings[i - 1]), kWatchdogSec) << "ping " << i;
  }
  EXPECT_TRUE(controller->Running());
  controller->Stop();
  EXPECT_TRUE(WaitFor([&] { return !listener.Times("STOPPING=1").empty(); }, milliseconds(5000)));
}

}  // namespace
}  // namespace regen
