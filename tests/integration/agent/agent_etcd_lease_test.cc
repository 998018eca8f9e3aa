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
#include "agent/etcd_lease.h"
#include "agent/libvirt_hypervisor.h"
#include "common/clock.h"
#include "common/subprocess.h"
#include "etcd/etcd_client.h"
#include "etcd/etcd_watch.h"
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

  TempDir dir_{"regen-agent-etcd-lease"};
  RealClock clock_;
  RealCommandRunner runner_;
  LibvirtHypervisor libvirt_{"test:///default", /*enable_events=*/false};
};

TEST_F(AgentEtcdLeaseTest, PartitionFencesBeforeTheKeyExpiresAndRevokeFencesAtOnce) {
  REGEN_START_ETCD(cluster, 1);
  ASSERT_TRUE(libvirt_.Connect().ok());
  testing::TcpProxy proxy(PortOf(cluster->endpoint(0)));
  auto direct_or = etcd::EtcdClient::Connect(cluster->Options());
  ASSERT_TRUE(direct_or.ok()) << direct_or.status().ToString();
  std::shared_ptr<etcd::EtcdClient> direct = *direct_or;

  AgentConfig config = Config(proxy.port());
  LibvirtHypervisor hv(config.libvirt_uri, /*enable_events=*/true);
  Agent agent(config, hv, clock_, runner_);
  EtcdLease lease(config, agent, clock_);
  const std::string key = lease.key();
  EXPECT_EQ(key, "/agent-etcd-lease-test/hosts/host-e/alive");
  agent.Start();
  lease.Start();

  // (a) The key is put on the agent's lease and stays there while the renewals run.
  ASSERT_GT(lease.WaitRegistered(SteadyClock::now() + kWait), 0) << lease.StatusJson().dump();
  const int64_t first_revision = lease.revision();
  const int64_t first_lease = lease.lease_id();
  auto kv = Key(*direct, key);
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->lease, first_lease);
  EXPECT_EQ(kv->mod_revision, first_revision);
  EXPECT_NE(kv->value.find("\"host\":\"host-e\""), std::string::npos) << kv->value;
  Desire(agent, 1);
  ASSERT_TRUE(WaitFor([&] { return ManagedAlive() == 2; }, kWait)) << ManagedAlive();
  // Two whole TTLs of renewals (each renews the fencing lease: no fence meanwhile).
  const int64_t renewals_needed = 2 * (kTtl / kRenew);
  ASSERT_TRUE(WaitFor([&] { return lease.renewals() >= renewals_needed; }, 3 * kTtl + kWait));
  kv = Key(*direct, key);
  ASSERT_TRUE(kv.has_value()) << "the key expired while renewals ran";
  EXPECT_EQ(kv->lease, first_lease);
  EXPECT_EQ(kv->mod_revision, first_revision);
  EXPECT_FALSE(agent.fenced());
  EXPECT_EQ(ManagedAlive(), 2);
  EXPECT_EQ(agent.StatusJson()["lease_source"], "etcd");

  // A direct watch on the key records when etcd deletes it.
  std::mutex mu;
  std::vector<std::pair<etcd::WatchEvent::Type, SteadyClock::time_point>> events;
  auto watch = etcd::EtcdWatch::Start(
      direct, key, 0,
      [&](const etcd::WatchEvent& e) {
        std::lock_guard lock(mu);
        events.emplace_back(e.type, SteadyClock::now());
      },
      [](Status) {}, milliseconds(5000));
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  auto deleted_at = [&]() -> std::optional<SteadyClock::time_point> {
    std::lock_guard lock(mu);
    for (auto& [type, at] : events)
      if (type == etcd::WatchEvent::Type::kDelete) return at;
    return std::nullopt;
  };

  // (b) Partition: the agent fences (libvirt lists no managed domain) strictly before etcd
  // deletes the key.
  const auto cut_at = SteadyClock::now();
  proxy.Cut();
  std::optional<SteadyClock::time_point> gone_at;
  ASSERT_TRUE(WaitFor(
      [&] {
        if (ManagedAlive() != 0) return false;
        gone_at = SteadyClock::now();
        return true;
      },
      kWait));
  ASSERT_FALSE(deleted_at().has_value()) << "etcd deleted the key before the agent had fenced";
  EXPECT_TRUE(agent.fenced());
  ASSERT_TRUE(WaitFor([&] { return deleted_at().has_value(); }, kTtl + kWait));
  auto ms = [](SteadyClock::duration d) {
    return std::chrono::duration_cast<milliseconds>(d).count();
  };
  std::printf(
      "partition: managed domains gone %lld ms after the cut, key deleted by etcd %lld ms "
      "after the cut (margin %lld ms)\n",
      static_cast<long long>(ms(*gone_at - cut_at)),
      static_cast<long long>(ms(*deleted_at() - cut_at)),
      static_cast<long long>(ms(*deleted_at() - *gone_at)));
  EXPECT_LT(*gone_at, *deleted_at());
  EXPECT_GE(ms(*gone_at - cut_at), kLease.count() - kRenew.count()) << "fenced too early";
  EXPECT_EQ(lease.revision(), first_revision) << "nothing was put through a cut link";

  // (c) Heal: etcd says the old lease is gone; the fence is done, so the agent grants a new lease,
  // puts the key again at a higher revision and renews it.
  proxy.Heal();
  ASSERT_TRUE(WaitFor([&] { return lease.revision() > first_revision; }, kWait))
      << lease.StatusJson().dump();
  const int64_t second_revision = lease.revision();
  const int64_t second_lease = lease.lease_id();
  EXPECT_NE(second_lease, first_lease);
  kv = Key(*direct, key);
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->lease, second_lease);
  EXPECT_EQ(kv->mod_revision, second_revision);
  const int64_t renewals_then = lease.renewals();
  ASSERT_TRUE(WaitFor([&] { return lease.renewals() >= renewals_then + 4; }, kWait));
  ASSERT_TRUE(WaitFor([&] { return !agent.fenced(); }, kWait));
  // The controller's next desired set (after the Hello that reported the fence) counts again.
  Desire(agent, 2);
  ASSERT_TRUE(WaitFor([&] { return ManagedAlive() == 2; }, kWait));

  // (d) A revoked lease: etcd deleted the key, a controller may be healing: fence at once (well
  // inside the fencing lease), then register again once the fence is done.
  const auto revoke_at = SteadyClock::now();
  ASSERT_TRUE(direct->RevokeLease(second_lease).ok());
  ASSERT_TRUE(WaitFor([&] { return ManagedAlive() == 0; }, kWait));
  const auto revoked_gone = SteadyClock::now() - revoke_at;
  std::printf("revoked lease: managed domains gone %lld ms after the revoke\n",
              static_cast<long long>(ms(revoked_gone)));
  EXPECT_LT(ms(revoked_gone), kLease.count()) << "did not fence at once";
  ASSERT_TRUE(WaitFor([&] { return lease.revision() > second_revision; }, kWait));
  kv = Key(*direct, key);
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->lease, lease.lease_id());
  EXPECT_NE(lease.lease_id(), second_lease);
  ASSERT_TRUE(WaitFor([&] { return !agent.fenced(); }, kWait));
  auto status = lease.StatusJson();
  EXPECT_EQ(status["registrations"], 3);
  EXPECT_GE(status["last_renewal_age_ms"].get<int64_t>(), 0);

  (*watch)->Stop();
  lease.Stop();
  agent.Stop();
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

}  // namespace
}  // namespace regen
