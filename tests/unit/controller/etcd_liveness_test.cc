// The controller's side of the HA mode's host leases (controller/etcd_liveness.cc over
// controller/host_leases.h, with a fake lease view): only agents that keep their lease in etcd
// are admitted (and only those in embedded mode are refused), a host is down exactly when etcd
// deleted its alive key after the last put known (from the watch or its Hello), heartbeat
// silence alone (a controller failover, a broken stream) never makes a host down, and a
// maintenance defers a deletion's verdict.
#include <gtest/gtest.h>

#include "tests/fakes/controller_harness.h"

namespace regen::testing {
namespace {

using std::chrono::milliseconds;

class FakeHostLeases : public HostLeaseSource {
 public:
  Snapshot Get() const override { return view; }
  Snapshot view;
};

class EtcdLivenessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    leases_.view.read_revision = 10;
    h_.controller().SetHostLeases(&leases_);
    for (const char* host : {"host-1", "host-2", "host-3"}) {
      Put(host, ++revision_);
      ASSERT_TRUE(Hello(host, revision_).ok());
    }
    ASSERT_TRUE(h_.Apply(WebSpecYaml(6)).ok());
    h_.AllRunning();
  }
  void Put(const std::string& host, int64_t revision) {
    leases_.view.hosts[host].put_revision = revision;
  }
  void Delete(const std::string& host, int64_t revision) {
    leases_.view.hosts[host].delete_revision = revision;
  }
  Status Hello(const std::string& host, int64_t revision, bool etcd_lease = true) {
    v1::Hello hello = TestHello(host);
    hello.set_etcd_lease(etcd_lease);
    hello.set_etcd_lease_revision(revision);
    return h_.controller().OnHello(hello, &h_.Sink(host));
  }
  std::vector<std::string> On(const std::string& host) {
    std::vector<std::string> out;
    for (const auto& [name, inst] : h_.controller().instances()) {
      if (inst.allocation.host == host) out.push_back(name);
    }
    return out;
  }

  ControllerHarness h_;
  FakeHostLeases leases_;
  int64_t revision_ = 10;
};

TEST_F(EtcdLivenessTest, HeartbeatSilenceAloneNeverMakesAHostDown) {
  // No heartbeat at all for a minute (a failover, a stream that broke): the keys are alive.
  for (int i = 0; i < 60; ++i) {
    h_.clock().Advance(milliseconds(1000));
    h_.controller().Tick();
  }
  for (const char* host : {"host-1", "host-2", "host-3"}) {
    EXPECT_EQ(h_.controller().HostState(host), "up") << host;
  }
  EXPECT_TRUE(h_.EventsOfKind("heal").empty());
}

TEST_F(EtcdLivenessTest, ADeletedKeyMakesItsHostDownAndItsInstancesAreHealedElsewhere) {
  std::vector<std::string> lost = On("host-1");
  ASSERT_FALSE(lost.empty());
  std::map<std::string, int64_t> gen;
  for (const auto& name : lost) gen[name] = h_.Inst(name).generation;
  Delete("host-1", ++revision_);
  h_.controller().Tick();
  EXPECT_EQ(h_.controller().HostState("host-1"), "down");
  for (const auto& name : lost) {
    EXPECT_NE(h_.Inst(name).allocation.host, "host-1") << name;
    EXPECT_EQ(h_.Inst(name).generation, gen[name] + 1) << name;
  }
  bool said = false;
  for (const auto& e : h_.EventsOfKind("host_state")) {
    said =
        said || (e.host == "host-1" && e.message.find("etcd lease expired") != std::string::npos);
  }
  EXPECT_TRUE(said) << "no host_state event names the expired etcd lease";
  EXPECT_EQ(h_.controller().HostState("host-2"), "up");
}

TEST_F(EtcdLivenessTest, AWatchBehindTheHelloDoesNotMakeAHostDown) {
  // host-1's agent fenced, put its key again at a new revision and said Hello before the watch
  // delivered that put: the deletion the watch shows is older than the Hello's revision.
  Delete("host-1", ++revision_);
  ASSERT_TRUE(Hello("host-1", ++revision_).ok());
  h_.controller().Tick();
  EXPECT_EQ(h_.controller().HostState("host-1"), "up");
}

TEST_F(EtcdLivenessTest, AHelloNamingALeaseEtcdDeletedSinceIsRefused) {
  const int64_t old_revision = leases_.view.hosts["host-2"].put_revision;
  Delete("host-2", ++revision_);
  Status s = Hello("host-2", old_revision);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("etcd lease is gone"), std::string::npos) << s.message();
  h_.controller().Tick();
  EXPECT_EQ(h_.controller().HostState("host-2"), "down");
  // Once it put its key again, it is taken back.
  Put("host-2", ++revision_);
  ASSERT_TRUE(Hello("host-2", revision_).ok());
  h_.controller().Tick();
  EXPECT_EQ(h_.controller().HostState("host-2"), "up");
}

TEST_F(EtcdLivenessTest, AHostWithoutAKeyAtTheFirstReadIsDown) {
  // A controller that takes over reads every key at revision 10: host-3 had none (its lease
  // expired while no controller was active).
  h_.Restart();
  FakeHostLeases view;
  view.view.read_revision = 50;
  view.view.hosts["host-1"].put_revision = 11;
  view.view.hosts["host-2"].put_revision = 12;
  h_.controller().SetHostLeases(&view);
  h_.controller().Tick();
  EXPECT_EQ(h_.controller().HostState("host-1"), "up");
  EXPECT_EQ(h_.controller().HostState("host-3"), "down");
  for (const auto& [name, inst] : h_.controller().instances()) {
    EXPECT_NE(inst.allocation.host, "host-3") << name;
  }
}

TEST_F(EtcdLivenessTest, AgentsInTheWrongModeAreRefusedAndChangeNothing) {
  Status s = Hello("host-4", 0, /*etcd_lease=*/false);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("HA mode (store: etcd)"), std::string::npos) << s.message();
  EXPECT_EQ(h_.controller().HostState("host-4"), "");

  ControllerHarness embedded;
  v1::Hello hello = TestHello("host-1");
  hello.set_etcd_lease(true);
  s = embedded.controller().OnHello(hello, &embedded.Sink("host-1"));
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("store: sqlite"), std::string::npos) << s.message();
  EXPECT_EQ(embedded.controller().HostState("host-1"), "");
}

TEST_F(EtcdLivenessTest, AMaintenanceDefersTheVerdictOfADeletedKey) {
  v1::MaintenanceStartRequest start;
  start.set_duration_ms(60000);
  start.set_reason("etcd upgrade");
  ASSERT_TRUE(h_.controller().MaintenanceStart(start).ok());
  Delete("host-1", ++revision_);
  h_.controller().Tick();
  EXPECT_EQ(h_.controller().HostState("host-1"), "suspect");
  EXPECT_FALSE(On("host-1").empty()) << "healed during a maintenance";
  ASSERT_TRUE(h_.controller().MaintenanceEnd({}).ok());
  h_.clock().Advance(milliseconds(10000));  // past any hold granted during it
  h_.controller().Tick();
  EXPECT_EQ(h_.controller().HostState("host-1"), "down");
  EXPECT_TRUE(On("host-1").empty());
}

}  // namespace
}  // namespace regen::testing
