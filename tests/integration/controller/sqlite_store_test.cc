// SqliteStore on a real SQLite file: round trip, transactions all-or-nothing, survival across
// reopen (a controller restart), events in order, operation lookup for idempotency.
#include <gtest/gtest.h>

#include "controller/store.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using testing::TempDir;

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

TEST(SqliteStoreTest, RoundTripAcrossReopen) {
  TempDir dir;
  HostRecord host{"host-a", "127.0.0.1", {8, 16384, 100, 10000}, HostState::kDraining, 1234, 7};
  {
    auto store = OpenSqliteStore(dir.File("c.db"));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE(
        (*store)
            ->Transaction([&](StoreTxn& t) {
              RETURN_IF_ERROR(t.PutHost(host));
              RETURN_IF_ERROR(t.PutService({"web", "name: web\n", "v1", 1}));
              RETURN_IF_ERROR(t.PutInstance(Instance("web-1", "host-a")));
              RETURN_IF_ERROR(t.PutOperation({"op-1", "heal", "web-1", "{}", "running", 1, 2}));
              RETURN_IF_ERROR(t.SetMeta("topology_revision", "42"));
              return t.AppendEvent({0, 5, EventKind::kFailure, "web", "web-1", "host-a", "crashed", "{}"})
                  .status();
            })
            .ok());
  }
  auto store = OpenSqliteStore(dir.File("c.db"));
  ASSERT_TRUE(store.ok());
  auto snap = (*store)->LoadAll();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ(snap->hosts.at("host-a"), host);
  EXPECT_EQ(snap->services.at("web").version, "v1");
  EXPECT_EQ(snap->instances.at("web-1"), Instance("web-1", "host-a"));
  EXPECT_EQ(snap->operations.at("op-1").kind, "heal");
  EXPECT_EQ(snap->meta.at("topology_revision"), "42");
  EXPECT_EQ(snap->last_event_sequence, 1);
}

TEST(SqliteStoreTest, FailedTransactionChangesNothing) {
  TempDir dir;
  auto store = OpenSqliteStore(dir.File("c.db"));
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

TEST(SqliteStoreTest, EventsInOrderAndOperationsByIdempotencyKey) {
  const EventKind kKinds[] = {EventKind::kHostState, EventKind::kService, EventKind::kPlacement,
                              EventKind::kFailure, EventKind::kRunning};
  TempDir dir;
  auto store = OpenSqliteStore(dir.File("c.db"));
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

TEST(SqliteStoreTest, UnopenablePathIsAClearError) {
  auto store = OpenSqliteStore("/nonexistent-dir/regen/c.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("/nonexistent-dir/regen/c.db"), std::string::npos);
}

// The DNS names the controller published survive a restart, per zone; adding twice and deleting
// a name that is not there are harmless (an acknowledgement may be handled twice).
TEST(SqliteStoreTest, DnsNamesPerZoneAcrossReopen) {
  TempDir dir;
  {
    auto store = OpenSqliteStore(dir.File("c.db"));
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
  auto store = OpenSqliteStore(dir.File("c.db"));
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

}  // namespace
}  // namespace regen
