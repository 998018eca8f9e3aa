// The agent's own host lease in etcd (agent.yaml `etcd:`), on real processes: a real etcd, the
// agent's etcd link through a TcpProxy that can cut it, a real Agent on libvirt's test driver
// (checked through a second libvirt connection of its own, never through the agent). No
// ControllerLink runs: the test plays the controller's part (desired sets, Hello). Shows that the
// key stays while renewals run, that a partition fences the host strictly before etcd deletes
// its key, that the key comes back (new lease, higher revision) only after the fence, and that a
// revoked lease fences at once.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/controller_link.h"
#include "agent/etcd_lease.h"
#include "agent/libvirt_hypervisor.h"
#include "common/clock.h"
#include "common/subprocess.h"
#include "etcd/etcd_client.h"
#include "etcd/etcd_watch.h"
#include "tests/fakes/fake_agent_service.h"
#include "tests/fakes/tcp_proxy.h"
#include "tests/fakes/test_util.h"
#include "tests/integration/etcd/etcd_harness.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;
using testing::TempDir;
using testing::WaitFor;

constexpr milliseconds kLease(1000);  // fencing_lease
constexpr milliseconds kTtl(3000);    // etcd.lease_ttl: > 1s + 500ms backstop + 500ms
constexpr milliseconds kRenew(250);   // etcd.renew_interval (the default, lease / 4)
constexpr milliseconds kWait(15000);

InstanceSpec Spec(const std::string& name, int64_t generation) {
  InstanceSpec s;
  s.name = name;
  s.service = "etcdlease";
  s.update_domain = 0;
  s.version = "v1";
  s.generation = generation;
  s.allocation.host = "host-e";
  s.allocation.resources = {1, 64, 0, 0};
  s.allocation.mac = "52:54:00:00:0e:" + name.substr(name.size() - 2);
  return s;
}

int PortOf(const std::string& endpoint) {
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

class AgentEtcdLeaseTest : public ::testing::Test {
 protected:
  AgentConfig Config(int etcd_port) {
    AgentConfig c;
    c.host_name = "host-e";
    c.controller_address = "127.0.0.1:1";  // never dialled: no ControllerLink runs here
    c.controller_addresses = {c.controller_address};
    c.insecure = true;
    c.libvirt_uri = "test:///default";  // one state per process: the test's own connection sees it
    c.domain_type = "test";
    c.poll_interval = milliseconds(50);
    c.fencing_lease = kLease;
    c.state_dir = dir_.path();
    c.control_socket = dir_.File("agent.sock");
    AgentEtcdConfig e;
    e.endpoints = {"127.0.0.1:" + std::to_string(etcd_port)};
    e.prefix = "/agent-etcd-lease-test/";
    e.lease_ttl = kTtl;
    e.renew_interval = kRenew;
    c.etcd = e;
    return c;
  }

  // The managed domains libvirt itself lists (not what the agent says).
  int ManagedAlive() {
    auto domains = libvirt_.ListDomains();
    if (!domains.ok()) return -1;
    int n = 0;
    for (const auto& d : *domains) {
      if (d.name.rfind("etcdlease-", 0) == 0 && d.state != DomainState::kShutoff) ++n;
    }
    return n;
  }

  // The controller's part: a Hello reporting every fence so far, then a desired set.
  void Desire(Agent& agent, int64_t generation) {
    agent.NoteHello(agent.fence_log().seq());
    agent.SetControllerDesired(
        {Spec("etcdlease-01", generation), Spec("etcdlease-02", generation)});
  }

  std::optional<etcd::KeyValue> Key(etcd::EtcdClient& client, const std::string& key) {
    auto r = client.Get(key);
    if (!r.ok() || r->kvs.empty()) return std::nullopt;
    return r->kvs[0];
  }

  // The partition test's parts: a real etcd, the agent's link to it through `proxy_`, a direct
  // client and a watch of the key that records when etcd deletes it.
  void StartAll() {
    REGEN_START_ETCD(cluster, 1);
    cluster_ = std::move(cluster);
    ASSERT_TRUE(libvirt_.Connect().ok());
    proxy_ = std::make_unique<testing::TcpProxy>(PortOf(cluster_->endpoint(0)));
    auto direct = etcd::EtcdClient::Connect(cluster_->Options());
    ASSERT_TRUE(direct.ok()) << direct.status().ToString();
    direct_ = *direct;
    config_ = Config(proxy_->port());
    hv_ = std::make_unique<LibvirtHypervisor>(config_.libvirt_uri, /*enable_events=*/true);
    agent_ = std::make_unique<Agent>(config_, *hv_, clock_, runner_);
    lease_ = std::make_unique<EtcdLease>(config_, *agent_, clock_);
    EXPECT_EQ(lease_->key(), "/agent-etcd-lease-test/hosts/host-e/alive");
    agent_->Start();
    lease_->Start();
  }

  void Watch() {
    auto watch = etcd::EtcdWatch::Start(
        direct_, lease_->key(), 0,
        [this](const etcd::WatchEvent& e) {
          std::lock_guard lock(mu_);
          if (e.type == etcd::WatchEvent::Type::kDelete && !deleted_at_) {
            deleted_at_ = SteadyClock::now();
          }
        },
        [](Status) {}, milliseconds(5000));
    ASSERT_TRUE(watch.ok()) << watch.status().ToString();
    watch_ = std::move(*watch);
  }
  std::optional<SteadyClock::time_point> deleted_at() {
    std::lock_guard lock(mu_);
    return deleted_at_;
  }

  // The key stands on the agent's lease (at `revision`) and names this host.
  void ExpectKey(int64_t lease, int64_t revision) {
    auto kv = Key(*direct_, lease_->key());
    ASSERT_TRUE(kv.has_value()) << "the key is not in etcd";
    EXPECT_EQ(kv->lease, lease);
    EXPECT_EQ(kv->mod_revision, revision);
    EXPECT_NE(kv->value.find("\"host\":\"host-e\""), std::string::npos) << kv->value;
  }

  // (a) The key is put on the agent's lease and stays there while the renewals run.
  void KeyStaysWhileRenewalsRun() {
    ASSERT_GT(lease_->WaitRegistered(SteadyClock::now() + kWait), 0) << lease_->StatusJson().dump();
    first_revision_ = lease_->revision();
    first_lease_ = lease_->lease_id();
    ASSERT_NO_FATAL_FAILURE(ExpectKey(first_lease_, first_revision_));
    Desire(*agent_, 1);
    ASSERT_TRUE(WaitFor([&] { return ManagedAlive() == 2; }, kWait)) << ManagedAlive();
    // Two whole TTLs of renewals (each renews the fencing lease: no fence meanwhile).
    const int64_t renewals_needed = 2 * (kTtl / kRenew);
    ASSERT_TRUE(WaitFor([&] { return lease_->renewals() >= renewals_needed; }, 3 * kTtl + kWait));
    ASSERT_NO_FATAL_FAILURE(ExpectKey(first_lease_, first_revision_));
    EXPECT_FALSE(agent_->fenced());
    EXPECT_EQ(ManagedAlive(), 2);
    EXPECT_EQ(agent_->StatusJson()["lease_source"], "etcd");
  }

  // (b) Partition: the agent fences (libvirt lists no managed domain) strictly before etcd
  // deletes the key.
  void PartitionFencesBeforeTheKeyIsDeleted() {
    const auto cut_at = SteadyClock::now();
    proxy_->Cut();
    std::optional<SteadyClock::time_point> gone_at;
    ASSERT_TRUE(WaitFor(
        [&] {
          if (ManagedAlive() != 0) return false;
          gone_at = SteadyClock::now();
          return true;
        },
        kWait));
    ASSERT_FALSE(deleted_at().has_value()) << "etcd deleted the key before the agent had fenced";
    EXPECT_TRUE(agent_->fenced());
    ASSERT_TRUE(WaitFor([&] { return deleted_at().has_value(); }, kTtl + kWait));
    std::printf(
        "partition: managed domains gone %lld ms after the cut, key deleted by etcd %lld ms "
        "after the cut (margin %lld ms)\n",
        Ms(*gone_at - cut_at), Ms(*deleted_at() - cut_at), Ms(*deleted_at() - *gone_at));
    EXPECT_LT(*gone_at, *deleted_at());
    EXPECT_GE(Ms(*gone_at - cut_at), kLease.count() - kRenew.count()) << "fenced too early";
    EXPECT_EQ(lease_->revision(), first_revision_) << "nothing was put through a cut link";
  }

  // (c) Heal: etcd says the old lease is gone; the fence is done, so the agent grants a new lease,
  // puts the key again at a higher revision and renews it.
  void HealRegistersAgain() {
    proxy_->Heal();
    ASSERT_TRUE(WaitFor([&] { return lease_->revision() > first_revision_; }, kWait))
        << lease_->StatusJson().dump();
    second_revision_ = lease_->revision();
    second_lease_ = lease_->lease_id();
    EXPECT_NE(second_lease_, first_lease_);
    ASSERT_NO_FATAL_FAILURE(ExpectKey(second_lease_, second_revision_));
    const int64_t renewals_then = lease_->renewals();
    ASSERT_TRUE(WaitFor([&] { return lease_->renewals() >= renewals_then + 4; }, kWait));
    ASSERT_TRUE(WaitFor([&] { return !agent_->fenced(); }, kWait));
    // The controller's next desired set (after the Hello that reported the fence) counts again.
    Desire(*agent_, 2);
    ASSERT_TRUE(WaitFor([&] { return ManagedAlive() == 2; }, kWait));
  }

  // (d) A revoked lease: etcd deleted the key, a controller may be healing: fence at once (well
  // inside the fencing lease), then register again once the fence is done.
  void RevokeFencesAtOnce() {
    const auto revoke_at = SteadyClock::now();
    ASSERT_TRUE(direct_->RevokeLease(second_lease_).ok());
    ASSERT_TRUE(WaitFor([&] { return ManagedAlive() == 0; }, kWait));
    const long long gone_ms = Ms(SteadyClock::now() - revoke_at);
    std::printf("revoked lease: managed domains gone %lld ms after the revoke\n", gone_ms);
    EXPECT_LT(gone_ms, kLease.count()) << "did not fence at once";
    ASSERT_TRUE(WaitFor([&] { return lease_->revision() > second_revision_; }, kWait));
    EXPECT_NE(lease_->lease_id(), second_lease_);
    ASSERT_NO_FATAL_FAILURE(ExpectKey(lease_->lease_id(), lease_->revision()));
    ASSERT_TRUE(WaitFor([&] { return !agent_->fenced(); }, kWait));
    auto status = lease_->StatusJson();
    EXPECT_EQ(status["registrations"], 3);
    EXPECT_GE(status["last_renewal_age_ms"].get<int64_t>(), 0);
  }

  static long long Ms(SteadyClock::duration d) {
    return static_cast<long long>(std::chrono::duration_cast<milliseconds>(d).count());
  }

  TempDir dir_{"regen-agent-etcd-lease"};
  RealClock clock_;
  RealCommandRunner runner_;
  LibvirtHypervisor libvirt_{"test:///default", /*enable_events=*/false};
  // The partition test's (destroyed in reverse: the lease thread first, etcd last).
  std::unique_ptr<testing::EtcdCluster> cluster_;
  std::unique_ptr<testing::TcpProxy> proxy_;
  std::shared_ptr<etcd::EtcdClient> direct_;
  AgentConfig config_;
  std::unique_ptr<LibvirtHypervisor> hv_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<EtcdLease> lease_;
  std::unique_ptr<etcd::EtcdWatch> watch_;
  std::mutex mu_;
  std::optional<SteadyClock::time_point> deleted_at_;  // guarded by mu_
  int64_t first_revision_ = 0, first_lease_ = 0, second_revision_ = 0, second_lease_ = 0;
};

TEST_F(AgentEtcdLeaseTest, PartitionFencesBeforeTheKeyExpiresAndRevokeFencesAtOnce) {
  ASSERT_NO_FATAL_FAILURE(StartAll());
  ASSERT_NO_FATAL_FAILURE(KeyStaysWhileRenewalsRun());
  ASSERT_NO_FATAL_FAILURE(Watch());
  ASSERT_NO_FATAL_FAILURE(PartitionFencesBeforeTheKeyIsDeleted());
  ASSERT_NO_FATAL_FAILURE(HealRegistersAgain());
  ASSERT_NO_FATAL_FAILURE(RevokeFencesAtOnce());
  watch_->Stop();
  lease_->Stop();
  agent_->Stop();
}

// etcd down when the agent starts: no key is put, the agent's fencing lease simply runs out and
// it fences; once etcd is back the key is put.
TEST_F(AgentEtcdLeaseTest, EtcdDownAtStartNeverRegistersAndTheAgentFences) {
  REGEN_START_ETCD(cluster, 1);
  ASSERT_TRUE(libvirt_.Connect().ok());
  cluster->Stop(0);
  AgentConfig config = Config(PortOf(cluster->endpoint(0)));
  config.host_name = "host-f";
  LibvirtHypervisor hv(config.libvirt_uri, /*enable_events=*/true);
  Agent agent(config, hv, clock_, runner_);
  EtcdLease lease(config, agent, clock_);
  agent.Start();
  lease.Start();
  EXPECT_EQ(lease.WaitRegistered(SteadyClock::now() + 2 * kLease), 0);
  ASSERT_TRUE(WaitFor([&] { return agent.fenced(); }, kWait));
  ASSERT_TRUE(cluster->Restart(0).ok());
  EXPECT_GT(lease.WaitRegistered(SteadyClock::now() + kWait), 0) << lease.StatusJson().dump();
  ASSERT_TRUE(WaitFor([&] { return !agent.fenced(); }, kWait));
  lease.Stop();
  agent.Stop();
}

// The controller link in etcd mode, against a scripted controller: no Hello before the key is
// put; each Hello carries etcd_lease and the key's revision; acks (even ones granting a long
// lease) renew nothing; a key put again brings a new Hello with its new revision.
TEST_F(AgentEtcdLeaseTest, ControllerLinkSaysHelloOnlyWithTheKeyAndAcksRenewNothing) {
  REGEN_START_ETCD(cluster, 1);
  ASSERT_TRUE(libvirt_.Connect().ok());
  testing::FakeAgentService controller;
  ASSERT_TRUE(controller.Start());
  controller.SetAck(/*fencing_lease_ms=*/60000, /*heartbeat_interval_ms=*/100, /*hold_ms=*/0);
  cluster->Stop(0);
  AgentConfig config = Config(PortOf(cluster->endpoint(0)));
  config.host_name = "host-g";
  config.controller_address = controller.address();
  config.controller_addresses = {config.controller_address};
  LibvirtHypervisor hv(config.libvirt_uri, /*enable_events=*/true);
  Agent agent(config, hv, clock_, runner_);
  EtcdLease lease(config, agent, clock_);
  ControllerLink link(config, agent, hv, clock_);
  link.SetEtcdLease(&lease);
  lease.Start();
  link.Start();
  agent.Start();
  ASSERT_TRUE(WaitFor([&] { return agent.fenced(); }, kWait));
  EXPECT_TRUE(controller.hellos().empty()) << "a Hello went out before the key was put";

  ASSERT_TRUE(cluster->Restart(0).ok());
  ASSERT_TRUE(WaitFor([&] { return !controller.hellos().empty(); }, kWait));
  v1::Hello hello = controller.hellos().back().hello;
  EXPECT_TRUE(hello.etcd_lease());
  EXPECT_EQ(hello.etcd_lease_revision(), lease.revision());
  EXPECT_GT(hello.etcd_lease_revision(), 0);
  ASSERT_TRUE(WaitFor([&] { return controller.heartbeats().size() >= 3; }, kWait));
  ASSERT_TRUE(WaitFor([&] { return !agent.fenced(); }, kWait));

  // Acks grant 60 s, but etcd alone renews: a revoked lease fences at once anyway.
  // With no managed domain the fence is lifted again within milliseconds (the key is put again
  // at once), too fast for polling agent.fenced(): the fence log's sequence counts the fence.
  const int64_t first_revision = lease.revision();
  const uint64_t fences_before = agent.fence_log().seq();
  auto direct = etcd::EtcdClient::Connect(cluster->Options());
  ASSERT_TRUE(direct.ok());
  ASSERT_TRUE((*direct)->RevokeLease(lease.lease_id()).ok());
  ASSERT_TRUE(WaitFor([&] { return agent.fence_log().seq() > fences_before; }, kWait));
  EXPECT_GE(controller.heartbeats().size(), 3u);
  // Put again (the fence is done: no managed domain): the controller hears the new revision.
  ASSERT_TRUE(WaitFor([&] { return lease.revision() > first_revision; }, kWait));
  ASSERT_TRUE(WaitFor(
      [&] { return controller.hellos().back().hello.etcd_lease_revision() == lease.revision(); },
      kWait));
  EXPECT_EQ(agent.StatusJson()["lease_source"], "etcd");
  link.Stop();
  lease.Stop();
  agent.Stop();
}

}  // namespace
}  // namespace regen
