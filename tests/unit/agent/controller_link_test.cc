// The agent's ControllerLink against a scripted controller (FakeAgentService: a real gRPC server
// on loopback) that goes away and comes back on the same port, with an Agent over the fake
// hypervisor on the real clock: the link is back (Hello received) within 500 ms of the
// controller listening again; a maintenance hold from the acks keeps the domains past the lease
// and ends with an ack without one; a fence is reported in the next Hello and cleared once
// answered, and only the set after that Hello is created. With several controller addresses (HA)
// the link ends on the active one past a standby, a dead and a hung address, and after the active
// one dies it says Hello to the next active one within ~100 ms of its taking over.
#include "agent/controller_link.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/control_socket.h"
#include "common/text.h"
#include "tests/fakes/fake_agent_service.h"
#include "tests/fakes/fake_hypervisor.h"
#include "tests/fakes/test_util.h"
#include "tests/fakes/tiny_server.h"

namespace regen {
namespace {

using testing::Answer;
using testing::TinyServer;

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using testing::FakeAgentService;
using testing::FakeHypervisor;
using testing::TempDir;
using testing::WaitFor;

constexpr milliseconds kWait(10000);

v1::DesiredInstances DesiredWeb0(int64_t generation) {
  v1::DesiredInstances d;
  auto* s = d.add_instances();
  s->set_name("web-0");
  s->set_service("web");
  s->set_version("v1");
  s->set_generation(generation);
  s->mutable_allocation()->set_host("host-a");
  s->mutable_allocation()->mutable_resources()->set_vcpus(1);
  s->mutable_allocation()->mutable_resources()->set_memory_mib(64);
  s->mutable_allocation()->set_mac("52:54:00:00:00:10");
  return d;
}

class ControllerLinkTest : public ::testing::Test {
 protected:
  void StartAgent(milliseconds lease) {
    ASSERT_TRUE(controller_.Start());
    StartAgentWith({controller_.address()}, lease);
  }
  // The agent with these controller addresses (HA); the controllers are the test's.
  void StartAgentWith(const std::vector<std::string>& addresses, milliseconds lease) {
    AgentConfig c;
    c.host_name = "host-a";
    c.controller_addresses = addresses;
    for (const auto& a : addresses) {
      c.controller_address += (c.controller_address.empty() ? "" : ",") + a;
    }
    c.insecure = true;
    c.libvirt_uri = "fake:///";
    c.domain_type = "test";
    c.poll_interval = 50ms;
    c.fencing_lease = lease;
    c.state_dir = dir_.path();
    c.control_socket = dir_.File("agent.sock");
    c.capacity = Resources{8, 8192, 100, 1000};
    agent_ = std::make_unique<Agent>(c, hv_, clock_, runner_);
    link_ = std::make_unique<ControllerLink>(c, *agent_, hv_, clock_);
    link_->SetFenceTimingCheck(&timing_);
    link_->Start();
    agent_->Start();
  }
  void TearDown() override {
    if (link_) link_->Stop();
    if (agent_) agent_->Stop();
    controller_.Stop();
  }

  bool Running(const std::string& name, int64_t generation) {
    auto domains = hv_.ListDomains();
    if (!domains.ok()) return false;
    for (const auto& d : *domains) {
      if (d.name == name && d.state == DomainState::kRunning && d.metadata.generation == generation)
        return true;
    }
    return false;
  }
  bool Exists(const std::string& name) {
    auto domains = hv_.ListDomains();
    if (!domains.ok()) return false;
    for (const auto& d : *domains)
      if (d.name == name) return true;
    return false;
  }
  // Waits until the wall of the test's real clock passes `t`.
  void WaitUntil(Clock::TimePoint t) {
    ASSERT_TRUE(WaitFor([&] { return clock_.Now() >= t; }, kWait));
  }

  TempDir dir_{"regen-link-test"};
  FakeAgentService controller_;
  FakeHypervisor hv_;
  RealClock clock_;
  RealCommandRunner runner_;
  FenceTimingCheck timing_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<ControllerLink> link_;
};

// The controller's host_down_after comes with each ack; against the agent's lease and its
// watchdog's timeout it is found too short (2.5 s < 2 s + 1 s + 250 ms), then long enough.
TEST_F(ControllerLinkTest, HostDownAfterFromTheAcksIsCheckedAgainstLeaseAndWatchdog) {
  timing_.SetWatchdogTimeout(1s);
  controller_.SetAck(/*lease=*/2000, /*interval=*/50, /*hold=*/0);
  controller_.SetHostDownAfter(2500);
  StartAgent(3s);  // the controller's shorter lease counts
  ASSERT_TRUE(WaitFor([&] { return !timing_.StatusJson().is_null(); }, kWait));
  nlohmann::json j = timing_.StatusJson();
  EXPECT_EQ(j["fencing_lease_ms"], 2000);
  EXPECT_EQ(j["host_down_after_ms"], 2500);
  EXPECT_EQ(j["watchdog_timeout_ms"], 1000);
  std::string problem = timing_.problem();
  EXPECT_NE(problem.find("host_down_after 2500ms"), std::string::npos) << problem;
  EXPECT_NE(problem.find("above 3250ms"), std::string::npos) << problem;
  controller_.SetHostDownAfter(3500);
  EXPECT_TRUE(WaitFor([&] { return timing_.problem().empty(); }, kWait));
}

// The goal of issue 14: a controller that listens again has the agent's Hello within 500 ms.
TEST_F(ControllerLinkTest, HelloReachesARestartedControllerWithin500Ms) {
  controller_.SetAck(/*lease=*/3000, /*interval=*/100, /*hold=*/0);
  StartAgent(3s);
  ASSERT_TRUE(WaitFor([&] { return !controller_.heartbeats().empty(); }, kWait));
  const int port = controller_.port();
  milliseconds worst(0);
  for (int round = 0; round < 6; ++round) {
    size_t hellos = controller_.hellos().size();
    controller_.Stop();
    ASSERT_TRUE(WaitFor([&] { return !link_->connected(); }, kWait));
    // Down long enough for the link to be retrying, not still dialling its first attempt.
    int64_t attempts = link_->dial_attempts();
    ASSERT_TRUE(WaitFor([&] { return link_->dial_attempts() >= attempts + 2; }, kWait));
    // Back at a different moment of the link's retry cycle (a 500 ms dial + 100 ms) each round.
    WaitUntil(clock_.Now() + round * milliseconds(130));
    auto listening = std::chrono::steady_clock::now();
    ASSERT_TRUE(controller_.Start(port)) << "port " << port << " taken meanwhile";
    ASSERT_TRUE(WaitFor([&] { return controller_.hellos().size() > hellos; }, kWait));
    auto took =
        std::chrono::duration_cast<milliseconds>(controller_.hellos().back().at - listening);
    std::printf("round %d: Hello %lld ms after the controller listened again\n", round,
                static_cast<long long>(took.count()));
    worst = std::max(worst, took);
    EXPECT_FALSE(agent_->fenced());
  }
  std::printf("worst of 6 rounds: %lld ms\n", static_cast<long long>(worst.count()));
  EXPECT_LT(worst, 500ms);
}

// A maintenance hold from the acks keeps the domains past the lease while the controller is
// gone; an ack without a hold ends it, and then the lease alone counts again (the agent fences).
// The fence goes out in the next Hello, is cleared once answered, and only the desired set sent
// after that Hello (generation + 1) is created.
TEST_F(ControllerLinkTest, HoldKeepsDomainsFenceIsReportedInTheNextHello) {
  const milliseconds lease(300);
  controller_.SetAck(lease.count(), /*interval=*/50, /*hold=*/0);
  controller_.SetDesired(DesiredWeb0(1));
  StartAgent(lease);
  ASSERT_TRUE(WaitFor([&] { return Running("web-0", 1); }, kWait));
  ASSERT_TRUE(controller_.hellos().front().hello.fenced().empty());

  // Maintenance: acks grant a 5 s hold; heartbeats then say what they applied and hold.
  controller_.SetAck(lease.count(), 50, /*hold=*/5000);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto hbs = controller_.heartbeats();
        return !hbs.empty() && hbs.back().hold_remaining_ms() > 4000 &&
               hbs.back().acked_through() > 0 && hbs.back().acked_through() < hbs.back().sequence();
      },
      kWait));
  EXPECT_GT(agent_->StatusJson()["hold_remaining_ms"].get<int64_t>(), 4000);

  // The controller goes away for three leases: nothing is fenced.
  controller_.Stop();
  auto gone = clock_.Now();
  WaitUntil(gone + 3 * lease);
  EXPECT_FALSE(agent_->fenced());
  EXPECT_TRUE(Running("web-0", 1));
  EXPECT_GT(agent_->StatusJson()["hold_remaining_ms"].get<int64_t>(), 0);

  // Back without a hold: the next ack ends it.
  controller_.SetAck(lease.count(), 50, /*hold=*/0);
  ASSERT_TRUE(controller_.Start(controller_.port()));
  ASSERT_TRUE(WaitFor([&] { return agent_->StatusJson()["hold_remaining_ms"].get<int64_t>() == 0; },
                      kWait));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto hbs = controller_.heartbeats();
        return !hbs.empty() && hbs.back().hold_remaining_ms() == 0;
      },
      kWait));
  EXPECT_TRUE(Running("web-0", 1));

  // Gone again without a hold: the agent fences after its lease and records it.
  controller_.SetDesired(DesiredWeb0(2));  // what the controller will answer the next Hello with
  size_t hellos = controller_.hellos().size();
  controller_.Stop();
  ASSERT_TRUE(WaitFor([&] { return agent_->fenced() && !Exists("web-0"); }, kWait));
  ASSERT_EQ(agent_->fence_log().Take().records.size(), 1u);

  // Back: the next Hello reports the fence; its answer clears the log; generation 2 runs.
  ASSERT_TRUE(controller_.Start(controller_.port()));
  ASSERT_TRUE(WaitFor([&] { return Running("web-0", 2); }, kWait));
  auto all = controller_.hellos();
  ASSERT_GT(all.size(), hellos);
  const v1::Hello& hello = all.back().hello;
  ASSERT_EQ(hello.fenced_size(), 1);
  EXPECT_EQ(hello.fenced(0).instance(), "web-0");
  EXPECT_EQ(hello.fenced(0).generation(), 1);
  EXPECT_GT(hello.fenced(0).fenced_unix_ms(), 0);
  EXPECT_EQ(hello.fenced(0).reason().rfind("no lease renewal for ", 0), 0u)
      << hello.fenced(0).reason();
  ASSERT_TRUE(WaitFor([&] { return agent_->fence_log().Take().records.empty(); }, kWait));
  EXPECT_FALSE(agent_->fenced());
}

// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  return ok ? ntohs(addr.sin_port) : -1;
}

// A hung controller: the kernel completes TCP handshakes (listen backlog) but nobody ever
// answers, so a dial hangs until its timeout.
class HungListener {
 public:
  HungListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::listen(fd_, 64) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~HungListener() { ::close(fd_); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Past a standby (naming the active one), a dead and a hung address, the agent ends on the active
// one, and status names it.
TEST_F(ControllerLinkTest, EndsOnTheActiveControllerPastStandbyDeadAndHung) {
  FakeAgentService standby, active;
  ASSERT_TRUE(standby.Start());
  ASSERT_TRUE(active.Start());
  active.SetAck(3000, 100, 0);
  standby.SetStandby(active.address());
  HungListener hung;
  ASSERT_GT(hung.port(), 0);
  int dead = ClosedPort();
  ASSERT_GT(dead, 0);
  const std::string dead_address = "127.0.0.1:" + std::to_string(dead);
  StartAgentWith({hung.address(), dead_address, standby.address(), active.address()}, 3s);
  // The first heartbeat may go out before the controller's first answer is read (which is what
  // makes the address the connected one): wait for both (CI, stop 25's run).
  ASSERT_TRUE(WaitFor(
      [&] {
        return !active.heartbeats().empty() && link_->connected_address() == active.address();
      },
      kWait))
      << "connected to \"" << link_->connected_address() << "\"";
  EXPECT_TRUE(link_->connected());
  EXPECT_GE(standby.standby_refusals(), 1);
  auto states = link_->controller_states();
  ASSERT_EQ(states.size(), 4u);
  EXPECT_EQ(states[3].state, "connected (active)");
  EXPECT_EQ(states[2].state, "standby (active at " + active.address() + ")");
  // It stays there: no Hello again.
  ASSERT_TRUE(WaitFor([&] { return active.heartbeats().size() >= 5; }, kWait));
  EXPECT_EQ(active.hellos().size(), 1u);
  EXPECT_FALSE(agent_->fenced());
  standby.Stop();
  active.Stop();
}

// The active controller dies; a standby takes over a little later (as after its election lease):
// the agent, retrying every 100 ms past a dead and a hung address, says Hello to the new active
// one within ~100 ms of its taking over. Five failovers, back and forth; the worst must stay under
// 300 ms.
TEST_F(ControllerLinkTest, FollowsTheActiveControllerAcrossFailovers) {
  FakeAgentService a, b;
  ASSERT_TRUE(a.Start());
  ASSERT_TRUE(b.Start());
  a.SetAck(3000, 100, 0);
  b.SetAck(3000, 100, 0);
  b.SetStandby(a.address());
  HungListener hung;
  int dead = ClosedPort();
  ASSERT_GT(dead, 0);
  StartAgentWith({hung.address(), "127.0.0.1:" + std::to_string(dead), a.address(), b.address()},
                 3s);
  ASSERT_TRUE(WaitFor([&] { return !a.heartbeats().empty(); }, kWait));

  FakeAgentService* active = &a;
  FakeAgentService* standby = &b;
  milliseconds worst(0);
  for (int round = 0; round < 5; ++round) {
    const int port = active->port();
    size_t hellos = standby->hellos().size();
    active->Stop();  // the active one dies; the standby still names it for a while
    ASSERT_TRUE(WaitFor([&] { return !link_->connected(); }, kWait));
    int64_t refusals = standby->standby_refusals();
    ASSERT_TRUE(WaitFor([&] { return standby->standby_refusals() >= refusals + 2; }, kWait));
    auto took_over = std::chrono::steady_clock::now();
    standby->SetStandby(std::nullopt);
    ASSERT_TRUE(WaitFor([&] { return standby->hellos().size() > hellos; }, kWait));
    auto took = std::chrono::duration_cast<milliseconds>(standby->hellos().back().at - took_over);
    std::printf("failover %d: Hello at the new active controller %lld ms after it took over\n",
                round, static_cast<long long>(took.count()));
    worst = std::max(worst, took);
    ASSERT_TRUE(WaitFor([&] { return link_->connected_address() == standby->address(); }, kWait));
    // The old active one comes back as a standby naming the new one.
    active->SetStandby(standby->address());
    ASSERT_TRUE(active->Start(port)) << "port " << port << " taken meanwhile";
    std::swap(active, standby);
    EXPECT_FALSE(agent_->fenced());
  }
  std::printf("worst of 5 failovers: %lld ms\n", static_cast<long long>(worst.count()));
  EXPECT_LT(worst, 300ms);
  a.Stop();
  b.Stop();
}

}  // namespace
}  // namespace regen

namespace regen {
namespace {

// Issue 15 finding 1, as tried: an http check against a guest answering bytes that are not UTF-8
// once broke the agent's stream at every report (the host fenced again and again) and the first
// `regen-agent status` killed the agent. Now the stream stays up, the report says why the check
// fails (valid UTF-8), the failure reaches the controller, and status answers valid JSON.
// Finding 6: the agent keeps probing after the verdict and each report carries the current health.
TEST_F(ControllerLinkTest, AGuestAnsweringInvalidUtf8CannotBreakTheLinkOrStatus) {
  TinyServer guest(Answer("\xff\xfe\xc3\x28 garbage\r\n\r\n"));
  v1::DesiredInstances desired = DesiredWeb0(1);
  auto* spec = desired.mutable_instances(0);
  spec->mutable_allocation()->set_ip("127.0.0.1");
  auto* check = spec->mutable_health_check();
  check->set_type("http");
  check->set_port(guest.port());
  check->set_path("/healthz");
  check->set_interval_ms(50);
  check->set_timeout_ms(25);
  check->set_max_failed(2);
  controller_.SetAck(3000, /*interval=*/100, /*hold=*/0);
  controller_.SetDesired(desired);
  StartAgent(3s);
  ASSERT_TRUE(WaitFor([&] { return Running("web-0", 1); }, kWait));

  // Failing past max_failed (the verdict), and still probed: four failures in a row reported.
  auto failing = [&](int64_t failures) {
    for (const auto& r : controller_.reports()) {
      for (const auto& d : r.domains()) {
        if (d.name() == "web-0" && d.health_failed() && d.health_failures() >= failures) {
          return true;
        }
      }
    }
    return false;
  };
  ASSERT_TRUE(WaitFor([&] { return failing(4); }, kWait))
      << "no report with the check failing 4 times in a row; Hellos: "
      << controller_.hellos().size();
  EXPECT_EQ(controller_.hellos().size(), 1u) << "the stream broke and the agent said Hello again";
  const auto reports = controller_.reports();
  const v1::DomainsReport& last = reports.back();
  EXPECT_TRUE(last.complete());
  ASSERT_EQ(last.domains_size(), 1);
  EXPECT_NE(last.domains(0).health_detail().find("not an HTTP answer"), std::string::npos)
      << last.domains(0).health_detail();
  EXPECT_NE(last.domains(0).health_detail().find("( garbage"), std::string::npos);
  EXPECT_TRUE(IsValidUtf8(last.domains(0).health_detail()));
  ASSERT_TRUE(WaitFor([&] { return !controller_.events().empty(); }, kWait));
  EXPECT_EQ(controller_.events()[0].detected_by(), v1::DETECTED_BY_HEALTH_CHECK);
  EXPECT_EQ(controller_.events().size(), 1u) << "the verdict is one event; the level is in reports";

  // `regen-agent status` over the control socket: valid JSON with the check's error.
  ControlSocketServer status(dir_.File("status.sock"),
                             [&](const nlohmann::json&) { return agent_->StatusJson(); });
  ASSERT_TRUE(status.Start().ok());
  auto answer = ControlSocketCall(dir_.File("status.sock"), {{"command", "status"}}, 5s);
  ASSERT_TRUE(answer.ok()) << answer.status().ToString();
  ASSERT_TRUE((*answer)["health"].is_array());
  ASSERT_EQ((*answer)["health"].size(), 1u);
  EXPECT_TRUE((*answer)["health"][0]["failed"].get<bool>());
  EXPECT_NE((*answer)["health"][0]["last_error"].get<std::string>().find("garbage"),
            std::string::npos);
  EXPECT_TRUE(link_->connected());
}

// The control socket's last line of defence: invalid UTF-8 in an answer is replaced, and a
// handler that throws gets an error answer while the server goes on.
TEST(ControlSocketTest, InvalidUtf8AndExceptionsNeverTakeTheServerDown) {
  TempDir dir("regen-control-test");
  const std::string path = dir.File("agent.sock");
  ControlSocketServer server(path, [](const nlohmann::json& request) -> nlohmann::json {
    if (request["command"] == "throw") throw std::runtime_error("boom \xff");
    return {{"ok", true}, {"text", std::string("\xff\xfe\xc3\x28 garbage")}};
  });
  ASSERT_TRUE(server.Start().ok());
  for (int i = 0; i < 2; ++i) {
    auto r = ControlSocketCall(path, {{"command", "status"}}, 5s);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE((*r)["ok"].get<bool>());
    std::string text = (*r)["text"].get<std::string>();
    EXPECT_TRUE(IsValidUtf8(text));
    EXPECT_NE(text.find(" garbage"), std::string::npos);
    auto t = ControlSocketCall(path, {{"command", "throw"}}, 5s);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_FALSE((*t)["ok"].get<bool>());
    EXPECT_NE((*t)["error"].get<std::string>().find("boom"), std::string::npos);
  }
}

}  // namespace
}  // namespace regen
