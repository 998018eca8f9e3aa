// The agent's side of the topology blast, wired as regen-agent wires it: a real controller
// (ControllerServer in process, SQLite, gRPC on loopback), an Agent over the fake hypervisor, its
// ControllerLink and a NetworkAgent over the fake switch. A deploy's revision reaches the switch
// (flows installed), the ack reaches the controller (ListHosts shows the applied revision), a heal
// sends the next one, and a reconnecting agent's Hello restates what it applied.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "agent/agent.h"
#include "agent/controller_link.h"
#include "agent/network_agent.h"
#include "controller/server.h"
#include "tests/fakes/fake_hypervisor.h"
#include "tests/fakes/fake_vswitch.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using namespace std::chrono_literals;
using testing::FakeHypervisor;
using testing::FakeVSwitch;
using testing::TempDir;

constexpr char kService[] = R"(name: web
instances: 2
update_domains: 1
flavor: {vcpus: 1, memory_mib: 64}
network: {subnet: 10.30.0.0/24}
versions:
  v1: {}
version: v1
)";

class NetworkLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqliteStore(dir_.File("controller.db"));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    ControllerConfig cc;
    cc.listen_address = "127.0.0.1:0";
    cc.heartbeat_interval = 200ms;
    cc.fencing_lease = 2s;
    cc.host_down_after = 5s;
    server_ = std::make_unique<ControllerServer>(cc, *store_, clock_);
    ASSERT_TRUE(server_->Start().ok());

    config_.host_name = "host-a";
    config_.address = "192.168.100.1";
    config_.controller_address = "127.0.0.1:" + std::to_string(server_->port());
    config_.libvirt_uri = "fake:///";
    config_.domain_type = "test";
    config_.poll_interval = 50ms;
    config_.fencing_lease = 2s;
    config_.state_dir = dir_.path();
    config_.control_socket = dir_.File("agent.sock");
    config_.capacity = Resources{8, 8192, 100, 1000};
    agent_ = std::make_unique<Agent>(config_, hv_, clock_, runner_);
    ASSERT_TRUE(vswitch_.EnsureBridge("br-int").ok());
    NetworkAgentOptions o;
    o.host = "host-a";
    o.tunnel_ip = config_.address;
    o.resync_interval = 200ms;
    network_ = std::make_unique<NetworkAgent>(o, vswitch_, clock_);
    network_->Start();
    StartLink();
    agent_->Start();
  }

  void TearDown() override {
    network_->Stop();
    if (link_) link_->Stop();
    agent_->Stop();
    server_->Shutdown();
  }

  // As regen-agent does: topology messages to the network worker, its acks back up the link.
  void StartLink() {
    link_ = std::make_unique<ControllerLink>(config_, *agent_, hv_, clock_);
    link_->SetNetworkAgent(network_.get());
    network_->SetAppliedCallback([l = link_.get()](int64_t rev) { l->SendTopologyApplied(rev); });
    link_->Start();
  }

  int64_t ControllerSaysApplied() {
    auto hosts =
        server_->Call<v1::ListHostsResponse>([&] { return server_->controller().ListHosts(); });
    for (const auto& h : hosts.hosts())
      if (h.name() == "host-a") return h.applied_topology_revision();
    return -1;
  }
  int64_t LastHeard() {
    auto hosts =
        server_->Call<v1::ListHostsResponse>([&] { return server_->controller().ListHosts(); });
    for (const auto& h : hosts.hosts())
      if (h.name() == "host-a") return h.last_heartbeat_unix_ms();
    return -1;
  }
  int64_t Revision() {
    return server_->Call<int64_t>([&] { return server_->controller().topology_revision(); });
  }

  TempDir dir_{"regen-network-link-test"};
  RealClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ControllerServer> server_;
  AgentConfig config_;
  FakeHypervisor hv_;
  RealCommandRunner runner_;
  FakeVSwitch vswitch_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<NetworkAgent> network_;
  std::unique_ptr<ControllerLink> link_;
};

TEST_F(NetworkLinkTest, RevisionsReachTheSwitchAndAcksReachTheController) {
  ASSERT_TRUE(testing::WaitFor([&] { return ControllerSaysApplied() == 0; }, 10s, 10ms));
  v1::ApplyServiceRequest req;
  req.set_spec_yaml(kService);
  auto applied = server_->Call<Result<v1::ApplyServiceResponse>>(
      [&] { return server_->controller().ApplyService(req); });
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  const int64_t deployed = Revision();
  ASSERT_EQ(deployed, 1);
  ASSERT_TRUE(testing::WaitFor([&] { return network_->applied_revision() == deployed; }, 10s, 5ms));
  ASSERT_TRUE(testing::WaitFor([&] { return ControllerSaysApplied() == deployed; }, 10s, 5ms));
  auto flows = vswitch_.DumpFlows("br-int");
  ASSERT_TRUE(flows.ok());
  EXPECT_FALSE(flows->empty());
  for (const auto& f : *flows) EXPECT_EQ(f.cookie, 1u) << f.ToString();

  // web-0 crashes on this (only) host: it leaves the topology (a heal never lands on the failed
  // host; it is placed again later): new revisions, each applied and acked.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto d = hv_.ListDomains();
        return d.ok() && d->size() == 2;
      },
      10s, 10ms));
  ASSERT_TRUE(hv_.Crash("web-0"));
  ASSERT_TRUE(testing::WaitFor([&] { return Revision() >= 2; }, 10s, 5ms));
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        int64_t r = Revision();
        return ControllerSaysApplied() == r && network_->applied_revision() == r;
      },
      10s, 5ms));
  const int64_t last = Revision();

  // A new session (agent reconnect): its Hello restates the applied revision at once.
  network_->SetAppliedCallback(nullptr);
  // The agent is stopped while its link is replaced: its reporters point into the link and are set
  // before Agent::Start (a running agent raced with SetReporters and could call the freed link).
  agent_->Stop();
  link_->Stop();
  link_.reset();
  const int64_t reconnect_ms = clock_.WallMillis();
  StartLink();
  agent_->Start();
  // The new session's Hello (or a heartbeat after it) has been handled.
  ASSERT_TRUE(testing::WaitFor([&] { return LastHeard() >= reconnect_ms; }, 10s, 5ms));
  EXPECT_EQ(ControllerSaysApplied(), network_->applied_revision());
  EXPECT_GE(network_->applied_revision(), last);
}

}  // namespace
}  // namespace regen
