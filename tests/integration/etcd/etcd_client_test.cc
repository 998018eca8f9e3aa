// The etcd client against a real etcd 3.4 (tests/integration/etcd/etcd_harness.h): KV, Txn and
// its limits, lease expiry, KeepAlive, Watch, Election with two campaigners, and a 3-member
// cluster that loses one member while writes and a watch go on.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "common/thread_annotations.h"
#include "etcd/etcd_admin.h"
#include "etcd/etcd_client.h"
#include "etcd/etcd_election.h"
#include "etcd/etcd_keepalive.h"
#include "etcd/etcd_watch.h"
#include "tests/integration/etcd/etcd_harness.h"

namespace regen::etcd {
namespace {

using std::chrono::milliseconds;
using testing::EtcdCluster;
using testing::WaitFor;

std::shared_ptr<EtcdClient> Connect(const EtcdCluster& cluster) {
  auto client = EtcdClient::Connect(cluster.Options());
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? *client : nullptr;
}

// Events a watch delivered, read from the test thread.
struct Recorder {
  Mutex mu;
  std::vector<WatchEvent> events GUARDED_BY(mu);
  void Add(const WatchEvent& e) {
    MutexLock lock(mu);
    events.push_back(e);
  }
  size_t Size() {
    MutexLock lock(mu);
    return events.size();
  }
  std::vector<WatchEvent> Copy() {
    MutexLock lock(mu);
    return events;
  }
};

TEST(EtcdClientTest, KeyValueAndTxn) {
  REGEN_START_ETCD(cluster, 1);
  auto client = Connect(*cluster);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Put("/t/a", "1").ok());
  ASSERT_TRUE(client->Put("/t/b", "2").ok());
  ASSERT_TRUE(client->Put("/u/c", "3").ok());
  auto one = client->Get("/t/a");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_EQ(one->kvs.size(), 1u);
  EXPECT_EQ(one->kvs[0].value, "1");
  EXPECT_EQ(one->kvs[0].version, 1);
  auto prefix = client->GetPrefix("/t/");
  ASSERT_TRUE(prefix.ok());
  ASSERT_EQ(prefix->kvs.size(), 2u);
  EXPECT_EQ(prefix->kvs[1].key, "/t/b");
  EXPECT_TRUE(client->Get("/t/none")->kvs.empty());

  // Create-if-absent: the second one fails and reads the current value instead.
  TxnRequest create;
  create.compares = {Compare::CreateRevision("/t/new", Compare::Op::kEqual, 0)};
  create.success = {TxnOp::Put("/t/new", "first")};
  create.failure = {TxnOp::Get("/t/new")};
  auto first = client->Txn(create);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(first->succeeded);
  create.success = {TxnOp::Put("/t/new", "second")};
  auto second = client->Txn(create);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->succeeded);
  ASSERT_EQ(second->reads.size(), 1u);
  EXPECT_EQ(second->reads[0].kvs.at(0).value, "first");
  // Compare on mod revision and on value.
  int64_t mod = second->reads[0].kvs[0].mod_revision;
  TxnRequest update;
  update.compares = {Compare::ModRevision("/t/new", Compare::Op::kEqual, mod),
                     Compare::Value("/t/a", Compare::Op::kEqual, "1")};
  update.success = {TxnOp::Put("/t/new", "third"), TxnOp::Delete("/t/b")};
  auto third = client->Txn(update);
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(third->succeeded);
  EXPECT_EQ(client->Get("/t/new")->kvs.at(0).value, "third");
  EXPECT_TRUE(client->Get("/t/b")->kvs.empty());
  EXPECT_FALSE(client->Txn(update)->succeeded);  // the mod revision moved on

  auto deleted = client->DeletePrefix("/t/");
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 2);
  EXPECT_EQ(client->GetPrefix("/u/")->kvs.size(), 1u);
}

TEST(EtcdClientTest, TxnOverEtcdLimitsIsRefusedClearly) {
  REGEN_START_ETCD(cluster, 1);
  auto client = Connect(*cluster);
  ASSERT_TRUE(client);
  TxnRequest many;
  for (int i = 0; i < 129; ++i) many.success.push_back(TxnOp::Put("/m/" + std::to_string(i), "x"));
  auto r = client->Txn(many);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("--max-txn-ops"), std::string::npos);
  many.success.resize(128);
  EXPECT_TRUE(client->Txn(many).ok());  // exactly the limit is fine
  TxnRequest big;
  big.success = {TxnOp::Put("/big", std::string(1600 * 1024, 'x'))};
  auto b = client->Txn(big);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("--max-request-bytes"), std::string::npos);
}

TEST(EtcdClientTest, LeaseExpiresAndKeepAliveHoldsIt) {
  REGEN_START_ETCD(cluster, 1);
  auto client = Connect(*cluster);
  ASSERT_TRUE(client);
  // Without renewals: the key goes with its lease.
  auto short_lease = client->GrantLease(1);
  ASSERT_TRUE(short_lease.ok()) << short_lease.status().ToString();
  ASSERT_TRUE(client->Put("/lease/short", "x", short_lease->id).ok());
  EXPECT_TRUE(WaitFor([&] { return client->Get("/lease/short")->kvs.empty(); }, milliseconds(5000),
                      milliseconds(50)));
  EXPECT_EQ(*client->LeaseTimeToLive(short_lease->id), -1);

  // With KeepAlive: still there after several TTLs' worth of renewals.
  auto lease = client->GrantLease(1);
  ASSERT_TRUE(lease.ok());
  ASSERT_TRUE(client->Put("/lease/kept", "x", lease->id).ok());
  std::promise<Status> lost;
  auto start = std::chrono::steady_clock::now();
  EtcdKeepAlive keepalive(client, lease->id, lease->ttl_seconds,
                          [&](Status s) { lost.set_value(s); });
  ASSERT_TRUE(WaitFor([&] { return keepalive.renewals() >= 8; }, milliseconds(10000)));
  EXPECT_GT(std::chrono::steady_clock::now() - start, milliseconds(2000));  // two TTLs
  EXPECT_EQ(client->Get("/lease/kept")->kvs.size(), 1u);
  EXPECT_FALSE(keepalive.lost());
  // Revoked under it: the keep-alive reports the loss.
  ASSERT_TRUE(client->RevokeLease(lease->id).ok());
  auto future = lost.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  Status why = future.get();
  EXPECT_EQ(why.code(), Code::kNotFound) << why.ToString();
  EXPECT_TRUE(keepalive.lost());
  EXPECT_TRUE(client->Get("/lease/kept")->kvs.empty());
}

TEST(EtcdClientTest, WatchDeliversEveryEventOfAPrefixInOrder) {
  REGEN_START_ETCD(cluster, 1);
  auto client = Connect(*cluster);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Put("/w/before", "0").ok());
  Recorder seen;
  auto watch = EtcdWatch::Start(
      client, "/w/", 0, [&](const WatchEvent& e) { seen.Add(e); }, [](Status) {},
      milliseconds(5000));
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  ASSERT_TRUE(client->Put("/w/a", "1").ok());
  ASSERT_TRUE(client->Put("/other", "x").ok());
  ASSERT_TRUE(client->Put("/w/b", "2").ok());
  ASSERT_TRUE(client->Delete("/w/a").ok());
  ASSERT_TRUE(WaitFor([&] { return seen.Size() >= 3; }, milliseconds(5000)));
  auto events = seen.Copy();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kv.key, "/w/a");
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_EQ(events[1].kv.key, "/w/b");
  EXPECT_EQ(events[2].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(events[2].kv.key, "/w/a");
  EXPECT_LT(events[0].kv.mod_revision, events[1].kv.mod_revision);
  (*watch)->Stop();
}

// Runs a Campaign on its own thread (it blocks until it leads).
std::future<Result<LeaderKey>> CampaignAsync(EtcdElection& election, const std::string& value,
                                             int64_t lease) {
  return std::async(std::launch::async, [&election, value, lease] {
    return election.Campaign(value, lease, milliseconds(20000));
  });
}

TEST(EtcdClientTest, ElectionPassesToTheSecondCampaignerWhenTheFirstLeaseEnds) {
  REGEN_START_ETCD(cluster, 1);
  auto client = Connect(*cluster);
  ASSERT_TRUE(client);
  EtcdElection a(client, "/regen/election");
  EtcdElection b(client, "/regen/election");
  Mutex mu;
  std::vector<std::string> observed;
  EtcdLeaderObserver observer(client, "/regen/election", [&](const KeyValue& kv) {
    MutexLock lock(mu);
    if (observed.empty() || observed.back() != kv.value) observed.push_back(kv.value);
  });
  auto lease_a = client->GrantLease(10);
  auto lease_b = client->GrantLease(10);
  ASSERT_TRUE(lease_a.ok() && lease_b.ok());
  auto leader_a = a.Campaign("controller-a", lease_a->id, milliseconds(5000));
  ASSERT_TRUE(leader_a.ok()) << leader_a.status().ToString();
  auto pending_b = CampaignAsync(b, "controller-b", lease_b->id);
  // b waits while a leads.
  EXPECT_EQ(pending_b.wait_for(milliseconds(300)), std::future_status::timeout);
  auto current = a.Leader();
  ASSERT_TRUE(current.ok() && current->has_value()) << current.status().ToString();
  EXPECT_EQ((*current)->value, "controller-a");
  EXPECT_EQ((*current)->key, leader_a->key);
  EXPECT_EQ((*current)->create_revision, leader_a->revision);

  ASSERT_TRUE(client->RevokeLease(lease_a->id).ok());  // a's controller is gone
  ASSERT_EQ(pending_b.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  auto leader_b = pending_b.get();
  ASSERT_TRUE(leader_b.ok()) << leader_b.status().ToString();
  EXPECT_EQ((*a.Leader())->value, "controller-b");
  EXPECT_TRUE(WaitFor(
      [&] {
        MutexLock lock(mu);
        return observed == std::vector<std::string>{"controller-a", "controller-b"};
      },
      milliseconds(5000)));
  ASSERT_TRUE(b.Resign(*leader_b).ok());
  EXPECT_FALSE(a.Leader()->has_value());
  observer.Stop();
}

TEST(EtcdClientTest, ElectionPassesOnWhenTheLeaderLeaseExpires) {
  REGEN_START_ETCD(cluster, 1);
  auto client = Connect(*cluster);
  ASSERT_TRUE(client);
  EtcdElection a(client, "/regen/election");
  EtcdElection b(client, "/regen/election");
  auto lease_a = client->GrantLease(1);  // never renewed: a "crashed"
  auto lease_b = client->GrantLease(10);
  ASSERT_TRUE(lease_a.ok() && lease_b.ok());
  ASSERT_TRUE(a.Campaign("controller-a", lease_a->id, milliseconds(5000)).ok());
  auto pending_b = CampaignAsync(b, "controller-b", lease_b->id);
  ASSERT_EQ(pending_b.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_TRUE(pending_b.get().ok());
  EXPECT_EQ((*b.Leader())->value, "controller-b");
}

TEST(EtcdClientTest, CampaignIsCancelledAndTimesOut) {
  REGEN_START_ETCD(cluster, 1);
  auto client = Connect(*cluster);
  ASSERT_TRUE(client);
  EtcdElection a(client, "/regen/election");
  EtcdElection b(client, "/regen/election");
  auto lease_a = client->GrantLease(10);
  auto lease_b = client->GrantLease(10);
  ASSERT_TRUE(a.Campaign("controller-a", lease_a->id, milliseconds(5000)).ok());
  auto pending_b = CampaignAsync(b, "controller-b", lease_b->id);
  EXPECT_EQ(pending_b.wait_for(milliseconds(200)), std::future_status::timeout);
  b.CancelCampaign();
  ASSERT_EQ(pending_b.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto cancelled = pending_b.get();
  ASSERT_FALSE(cancelled.ok());
  EXPECT_NE(cancelled.status().message().find("cancelled"), std::string::npos);
  auto late = b.Campaign("controller-b", lease_b->id, milliseconds(300));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), Code::kDeadlineExceeded) << late.status().ToString();
  EXPECT_EQ((*a.Leader())->value, "controller-a");
}

// The agent's fencing depends on this: with etcd gone, the loss is reported once the TTL since the
// last renewal has passed (not before, not much after).
TEST(EtcdClientTest, KeepAliveReportsTheLossWhenEtcdIsGone) {
  REGEN_START_ETCD(cluster, 1);
  auto client = Connect(*cluster);
  ASSERT_TRUE(client);
  auto lease = client->GrantLease(2);
  ASSERT_TRUE(lease.ok());
  std::promise<Status> lost;
  EtcdKeepAlive keepalive(client, lease->id, lease->ttl_seconds,
                          [&](Status s) { lost.set_value(s); });
  ASSERT_TRUE(WaitFor([&] { return keepalive.renewals() >= 2; }, milliseconds(5000)));
  auto expiry = keepalive.expiry();
  cluster->Kill(0);
  auto future = lost.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(6)), std::future_status::ready);
  auto reported = std::chrono::steady_clock::now();
  Status why = future.get();
  EXPECT_EQ(why.code(), Code::kUnavailable);
  EXPECT_NE(why.message().find("no renewal succeeded"), std::string::npos) << why.ToString();
  EXPECT_GE(reported, expiry);
  EXPECT_LT(reported - expiry, milliseconds(1000));
}

// Mutual TLS and etcd's users: a host's user may write its own prefix only; a wrong password is
// refused at Connect; the token lost in a member restart is renewed without the caller noticing.
TEST(EtcdClientTest, TlsAndUsersLimitedToTheirPrefix) {
  testing::EtcdClusterOptions options;
  options.tls = true;
  REGEN_START_ETCD(cluster, options);
  auto admin = Connect(*cluster);
  ASSERT_TRUE(admin);
  ASSERT_TRUE(admin->Put("/regen/hosts/host-b/alive", "before").ok());
  ASSERT_TRUE(AddUser(*admin, "root", "root-pw").ok());
  ASSERT_TRUE(GrantRole(*admin, "root", "root").ok());
  ASSERT_TRUE(AddUser(*admin, "host-a", "a-pw").ok());
  ASSERT_TRUE(AddRole(*admin, "host-a").ok());
  ASSERT_TRUE(GrantPrefix(*admin, "host-a", "/regen/hosts/host-a/", true).ok());
  ASSERT_TRUE(GrantRole(*admin, "host-a", "host-a").ok());
  Status enabled = EnableAuth(*admin);
  ASSERT_TRUE(enabled.ok()) << enabled.ToString();

  EtcdOptions host_a = cluster->Options();
  host_a.tls.cert = cluster->certs_dir() + "/host-a.crt";
  host_a.tls.key = cluster->certs_dir() + "/host-a.key";
  host_a.user = "host-a";
  host_a.password = "a-pw";
  auto a = EtcdClient::Connect(host_a);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE((*a)->Put("/regen/hosts/host-a/alive", "1").ok());
  auto denied = (*a)->Put("/regen/hosts/host-b/alive", "1");
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), Code::kPermissionDenied) << denied.status().ToString();
  EXPECT_FALSE(admin->Get("/regen/hosts/host-b/alive").ok());  // no user any more

  host_a.password = "wrong";
  auto refused = EtcdClient::Connect(host_a);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("host-a"), std::string::npos);

  ASSERT_TRUE(cluster->Restart(0).ok());  // simple tokens live in the member's memory
  auto after = (*a)->Put("/regen/hosts/host-a/alive", "2", 0, milliseconds(10000));
  EXPECT_TRUE(after.ok()) << after.status().ToString();
}

// Three members, one killed: writes go on through the other two, the watch resumes on another
// member without losing or repeating an event.
TEST(EtcdClientTest, ThreeMemberClusterSurvivesLosingOneMember) {
  REGEN_START_ETCD(cluster, 3);
  auto client = Connect(*cluster);
  ASSERT_TRUE(client);
  Recorder seen;
  auto watch = EtcdWatch::Start(
      client, "/f/", 0, [&](const WatchEvent& e) { seen.Add(e); }, [](Status) {},
      milliseconds(5000));
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->Put("/f/" + std::to_string(i), "x").ok());
  ASSERT_TRUE(WaitFor([&] { return seen.Size() == 5; }, milliseconds(5000)));
  cluster->Kill(0);  // the member the client and the watch use first
  for (int i = 5; i < 20; ++i) {
    auto put = client->Put("/f/" + std::to_string(i), "x", 0, milliseconds(10000));
    ASSERT_TRUE(put.ok()) << "write " << i << ": " << put.status().ToString();
  }
  TxnRequest txn;
  txn.compares = {Compare::Version("/f/19", Compare::Op::kEqual, 1)};
  txn.success = {TxnOp::Put("/f/txn", "y")};
  auto t = client->Txn(txn);
  ASSERT_TRUE(t.ok() && t->succeeded) << t.status().ToString();
  ASSERT_TRUE(WaitFor([&] { return seen.Size() >= 21; }, milliseconds(15000)))
      << "watch saw " << seen.Size();
  auto events = seen.Copy();
  ASSERT_EQ(events.size(), 21u);
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_LT(events[i - 1].kv.mod_revision, events[i].kv.mod_revision);
  }
  EXPECT_GE((*watch)->reconnects(), 1);
  auto all = client->GetPrefix("/f/");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->kvs.size(), 21u);
}

}  // namespace
}  // namespace regen::etcd
