// The Store contract (controller/store.h), run against every implementation: SqliteStore on a
// real SQLite file and EtcdStore on a real etcd (tests/integration/etcd/etcd_harness.h). Round
// trip, transactions all-or-nothing, survival across reopen (a controller restart), events in
// order, operation lookup for idempotency, DNS names per zone.
#include <gtest/gtest.h>

#include "controller/etcd_store.h"
#include "controller/store.h"
#include "tests/fakes/test_util.h"
#include "tests/integration/etcd/etcd_harness.h"

namespace regen {
namespace {

using testing::EtcdCluster;
using testing::TempDir;

// "sqlite" or "etcd": Open() gives a new Store over the same durable state each time (a new
// SQLite connection; a new etcd client and EtcdStore), as after a controller restart.
class StoreContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() != "etcd") return;
    if (EtcdCluster::FindEtcd().empty()) {
      REGEN_REQUIRE_COMPONENT("etcd", "install etcd-server (scripts/install-deps.sh)");
    }
    auto cluster = EtcdCluster::Start(1);
    ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
    cluster_ = std::move(*cluster);
  }

  Result<std::unique_ptr<Store>> Open() {
    if (GetParam() == "sqlite") return OpenSqliteStore(dir_.File("c.db"));
    ASSIGN_OR_RETURN(auto client, etcd::EtcdClient::Connect(cluster_->Options()));
    ASSIGN_OR_RETURN(auto store, EtcdStore::Open(client));
    return std::unique_ptr<Store>(std::move(store));
  }

  TempDir dir_;
  std::unique_ptr<EtcdCluster> cluster_;
};

InstanceRecord Instance(const std::string& name, const std::string& host) {
  InstanceRecord i;
  i.name = name;
  i.service = "web";
  i.index = 1;
  i.update_domain = 1;
  i.version = "v1";
  i.generation = 3;
  i.allocation = {host, {1, 64, 1, 100}, "10.10.0.3", "52:54:00:00:00:03"};
  i.state = InstanceState::kRunning;
  return i;
}

TEST_P(StoreContractTest, RoundTripAcrossReopen) {
  HostRecord host{"host-a", "127.0.0.1", {8, 16384, 100, 10000}, HostState::kDraining, 1234, 7};
  {
    auto store = Open();
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE(
        (*store)
            ->Transaction([&](StoreTxn& t) {
              RETURN_IF_ERROR(t.PutHost(host));
              RETURN_IF_ERROR(t.PutService({"web", "name: web\n", "v1", 1}));
              RETURN_IF_ERROR(t.PutInstance(Instance("web-1", "host-a")));
              RETURN_IF_ERROR(t.PutOperation({"op-1", "heal", "web-1", "{}", "running", 1, 2}));
              RETURN_IF_ERROR(t.SetMeta("topology_revision", "42"));
              RETURN_IF_ERROR(t.SetMeta("upgrade/web", "{\"to\": \"v2\"}"));
              return t
                  .AppendEvent(
                      {0, 5, EventKind::kFailure, "web", "web-1", "host-a", "crashed", "{}"})
                  .status();
            })
            .ok());
  }
  auto store = Open();
  ASSERT_TRUE(store.ok());
  auto snap = (*store)->LoadAll();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->hosts.at("host-a"), host);
  EXPECT_EQ(snap->services.at("web").version, "v1");
  EXPECT_EQ(snap->instances.at("web-1"), Instance("web-1", "host-a"));
  EXPECT_EQ(snap->operations.at("op-1").kind, "heal");
  EXPECT_EQ(snap->meta.at("topology_revision"), "42");
  EXPECT_EQ(snap->meta.at("upgrade/web"), "{\"to\": \"v2\"}");
  EXPECT_EQ(snap->last_event_sequence, 1);
}

TEST_P(StoreContractTest, FailedTransactionChangesNothing) {
  auto store = Open();
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(
      (*store)
          ->Transaction([&](StoreTxn& t) { return t.PutInstance(Instance("web-1", "host-a")); })
          .ok());
  Status s = (*store)->Transaction([&](StoreTxn& t) {
    RETURN_IF_ERROR(t.PutInstance(Instance("web-1", "host-b")));
    RETURN_IF_ERROR(t.DeleteInstance("web-1"));
    return FailedPrecondition("allocation refused");
  });
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  auto snap = (*store)->LoadAll();
  ASSERT_TRUE(snap.ok());
  ASSERT_EQ(snap->instances.count("web-1"), 1u);
  EXPECT_EQ(snap->instances.at("web-1").allocation.host, "host-a");
}

TEST_P(StoreContractTest, EventsInOrderAndOperationsByIdempotencyKey) {
  const EventKind kKinds[] = {EventKind::kHostState, EventKind::kService, EventKind::kPlacement,
                              EventKind::kFailure, EventKind::kRunning};
  auto store = Open();
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE((*store)
                    ->Transaction([&](StoreTxn& t) {
                      auto seq = t.AppendEvent({0, i, kKinds[i], "", "", "", "", ""});
                      if (!seq.ok()) return seq.status();
                      EXPECT_EQ(*seq, i + 1);
                      return Status::Ok();
                    })
                    .ok());
  }
  auto events = (*store)->EventsAfter(2, 10);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].sequence, 3);
  EXPECT_EQ((*events)[2].kind, EventKind::kRunning);
  ASSERT_TRUE((*store)
                  ->Transaction([](StoreTxn& t) {
                    return t.PutOperation({"op-9", "failover", "web-1", "{}", "done", 1, 2});
                  })
                  .ok());
  auto op = (*store)->FindOperation("op-9");
  ASSERT_TRUE(op.ok());
  ASSERT_TRUE(op->has_value());
  EXPECT_EQ((*op)->state, "done");
  EXPECT_FALSE((*(*store)->FindOperation("op-10")).has_value());
  // Done operations are not resumed after a restart.
  EXPECT_EQ((*store)->LoadAll()->operations.count("op-9"), 0u);
}

// The DNS names the controller published survive a restart, per zone; adding twice and deleting
// a name that is not there are harmless (an acknowledgement may be handled twice).
TEST_P(StoreContractTest, DnsNamesPerZoneAcrossReopen) {
  {
    auto store = Open();
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)
                    ->Transaction([&](StoreTxn& t) {
                      RETURN_IF_ERROR(t.PutDnsName("lab.example.", "web-0.lab.example."));
                      RETURN_IF_ERROR(t.PutDnsName("lab.example.", "web-1.lab.example."));
                      RETURN_IF_ERROR(t.PutDnsName("lab.example.", "web-1.lab.example."));
                      RETURN_IF_ERROR(t.PutDnsName("old.example.", "web-0.old.example."));
                      return t.PutDnsName("lab.example.", "web.lab.example.");
                    })
                    .ok());
    ASSERT_TRUE((*store)
                    ->Transaction([&](StoreTxn& t) {
                      RETURN_IF_ERROR(t.DeleteDnsName("lab.example.", "web-1.lab.example."));
                      return t.DeleteDnsName("lab.example.", "never.lab.example.");
                    })
                    .ok());
  }
  auto store = Open();
  ASSERT_TRUE(store.ok());
  auto names = (*store)->DnsNames("lab.example.");
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  EXPECT_EQ(*names, (std::set<std::string>{"web-0.lab.example.", "web.lab.example."}));
  auto old = (*store)->DnsNames("old.example.");
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(*old, std::set<std::string>{"web-0.old.example."});
  auto none = (*store)->DnsNames("other.example.");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreContractTest, ::testing::Values("sqlite", "etcd"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace regen
