// Issue 15, findings 11 and 12, driven through the controller (ControllerHarness): a scale-up
// during an upgrade gives new instances the version of their UD and the upgrade completes only
// when every instance runs the new version; scaling down an instance being healed lets the
// upgrade resume; service delete; host undrain, cordon and uncordon; operation ids honoured by
// pause, resume, next-ud and rollback.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "controller/controller.h"
#include "tests/fakes/controller_harness.h"

namespace regen {
namespace {

using testing::ControllerHarness;
using ::testing::HasSubstr;

// "web": `instances` instances in 3 UDs, versions v1 (current) and v2.
std::string Web(int instances) {
  return "name: web\ninstances: " + std::to_string(instances) +
         "\nupdate_domains: 3\nflavor:\n  vcpus: 1\n  memory_mib: 256\nnetwork:\n"
         "  subnet: 10.10.0.0/24\nversions:\n  v1: {}\n  v2: {}\nversion: v1\n";
}

class ServiceOpsTest : public ::testing::Test {
 protected:
  void Deploy(int instances, int hosts = 3) {
    h_.Hosts(hosts);
    auto r = h_.Apply(Web(instances));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    h_.AllRunning();
  }
  Controller& c() { return h_.controller(); }

  v1::UpgradeStatus Start(const std::string& mode) {
    v1::UpgradeStartRequest r;
    r.set_service("web");
    r.set_to_version("v2");
    r.set_mode(mode);
    auto st = c().UpgradeStart(r);
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? *st : v1::UpgradeStatus();
  }
  static v1::UpgradeServiceRequest Req(const std::string& op = "", bool force = false) {
    v1::UpgradeServiceRequest r;
    r.set_service("web");
    r.set_operation_id(op);
    r.set_force(force);
    return r;
  }
  v1::UpgradeStatus Status() {
    auto st = c().UpgradeGet("web");
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? *st : v1::UpgradeStatus();
  }
  // Every host reports its desired set running until nothing changes (at most `rounds` times).
  void Settle(int rounds = 6) {
    for (int i = 0; i < rounds; ++i) h_.AllRunning();
  }
  std::set<std::string> InstancesOn(const std::string& host) {
    std::set<std::string> out;
    for (const auto& [name, inst] : c().instances()) {
      if (inst.allocation.host == host) out.insert(name);
    }
    return out;
  }
  std::string HostState(const std::string& host) { return c().HostState(host); }
  Result<v1::HostInfo> Verb(const std::string& host, HostVerb verb, const std::string& op = "") {
    v1::HostRequest r;
    r.set_host(host);
    r.set_operation_id(op);
    return c().ChangeHost(r, verb);
  }
  Result<v1::DeleteServiceResponse> Delete(const std::string& service, const std::string& op = "",
                                           bool force = false) {
    v1::DeleteServiceRequest r;
    r.set_service(service);
    r.set_operation_id(op);
    r.set_force(force);
    return c().DeleteService(r);
  }

  ControllerHarness h_;
};

// ---- finding 11a ----

TEST_F(ServiceOpsTest, ScaleUpDuringAnUpgradeGivesNewInstancesTheVersionOfTheirUd) {
  Deploy(6);
  Start("manual");
  ASSERT_TRUE(c().UpgradeNextUd(Req()).ok());
  h_.AllRunning();
  ASSERT_EQ(Status().state(), "waiting_for_operator");
  ASSERT_EQ(Status().current_ud(), 1);
  ASSERT_TRUE(h_.Apply(Web(9)).ok());  // web-6 in UD 0 (upgraded), web-7 UD 1, web-8 UD 2
  EXPECT_EQ(h_.Inst("web-6").version, "v2") << "UD 0 is upgraded already";
  EXPECT_EQ(h_.Inst("web-7").version, "v1") << "UD 1 has not begun";
  EXPECT_EQ(h_.Inst("web-8").version, "v1");
  h_.AllRunning();
  for (int ud = 1; ud <= 2; ++ud) {
    auto st = c().UpgradeNextUd(Req());
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    h_.AllRunning();
  }
  EXPECT_EQ(Status().state(), "completed") << Status().DebugString();
  for (const auto& [name, inst] : c().instances()) {
    EXPECT_EQ(inst.version, "v2") << name;
    EXPECT_EQ(inst.state, InstanceState::kRunning) << name;
  }
}

TEST_F(ServiceOpsTest, AnInstanceLeftBehindInAnUpgradedUdIsUpgradedBeforeCompletion) {
  Deploy(6);
  Start("manual");
  ASSERT_TRUE(c().UpgradeNextUd(Req()).ok());
  h_.AllRunning();
  ASSERT_EQ(Status().current_ud(), 1);
  ASSERT_EQ(h_.Inst("web-3").version, "v2");
  // web-3 (UD 0) back on v1 behind the upgrade's back, as an old record would have it.
  h_.Restart([](Store& store) {
    auto snap = store.LoadAll();
    ASSERT_TRUE(snap.ok());
    InstanceRecord r = snap->instances.at("web-3");
    r.version = "v1";
    ASSERT_TRUE(store.Transaction([&](StoreTxn& t) { return t.PutInstance(r); }).ok());
  });
  h_.Hosts(3);
  h_.AllRunning();
  for (int ud = 1; ud <= 2; ++ud) {
    auto st = c().UpgradeNextUd(Req());
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    Settle();
  }
  EXPECT_EQ(Status().state(), "completed") << Status().DebugString();
  EXPECT_EQ(h_.Inst("web-3").version, "v2") << "completed with an instance still on v1";
  EXPECT_EQ(h_.Inst("web-3").state, InstanceState::kRunning);
}

// ---- finding 11b ----

TEST_F(ServiceOpsTest, ScalingDownAnInstanceBeingHealedLetsThePreemptedUpgradeResume) {
  Deploy(6);
  Start("auto");
  h_.Crash("web-5");  // UD 2: healed with v1; the upgrade is pre-empted
  ASSERT_EQ(Status().state(), "preempted");
  ASSERT_EQ(Status().healing_in_progress_size(), 1);
  ASSERT_TRUE(h_.Apply(Web(5)).ok());  // web-5 goes away while being healed
  EXPECT_EQ(c().instances().count("web-5"), 0u);
  EXPECT_EQ(Status().healing_in_progress_size(), 0) << Status().DebugString();
  EXPECT_EQ(Status().state(), "running") << Status().DebugString();
  EXPECT_THAT(Status().message(), HasSubstr("web-5 removed"));
  Settle();
  EXPECT_EQ(Status().state(), "completed") << Status().DebugString();
  for (const auto& [name, inst] : c().instances()) EXPECT_EQ(inst.version, "v2") << name;
}

// ---- finding 12: operation ids of the upgrade verbs ----

TEST_F(ServiceOpsTest, ARepeatedNextUdOperationDoesNotStartAnotherUd) {
  Deploy(6);
  Start("manual");
  ASSERT_TRUE(c().UpgradeNextUd(Req("op-next-1")).ok());
  h_.AllRunning();
  ASSERT_EQ(Status().state(), "waiting_for_operator");
  ASSERT_EQ(Status().current_ud(), 1);
  auto again = c().UpgradeNextUd(Req("op-next-1"));  // a retry of the first call
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->state(), "waiting_for_operator");
  EXPECT_EQ(Status().state(), "waiting_for_operator") << "the retry started UD 1";
  EXPECT_EQ(h_.Inst("web-1").version, "v1");
}

TEST_F(ServiceOpsTest, ARepeatedPauseOrResumeOperationChangesNothing) {
  Deploy(6);
  Start("auto");
  ASSERT_EQ(Status().state(), "running");
  ASSERT_TRUE(c().UpgradePause(Req("op-pause")).ok());
  ASSERT_EQ(Status().state(), "paused");
  ASSERT_TRUE(c().UpgradeResume(Req("op-resume")).ok());
  ASSERT_EQ(Status().state(), "running");
  auto pause = c().UpgradePause(Req("op-pause"));  // a late retry of the first pause
  ASSERT_TRUE(pause.ok()) << pause.status().ToString();
  EXPECT_EQ(Status().state(), "running") << "the retried pause paused it again";
  ASSERT_TRUE(c().UpgradePause(Req("op-pause-2")).ok());
  auto resume = c().UpgradeResume(Req("op-resume"));
  ASSERT_TRUE(resume.ok()) << resume.status().ToString();
  EXPECT_EQ(Status().state(), "paused") << "the retried resume resumed it again";
  ASSERT_TRUE(c().UpgradeRollback(Req("op-rb")).ok());
  std::string after = Status().state();
  EXPECT_TRUE(c().UpgradeRollback(Req("op-rb")).ok());
  EXPECT_EQ(Status().state(), after);
  // Bad input changes nothing and names it.
  v1::UpgradeServiceRequest unknown = Req("op-x");
  unknown.set_service("nope");
  auto refused = c().UpgradePause(unknown);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("\"nope\""));
}

// ---- finding 12: service delete ----

TEST_F(ServiceOpsTest, DeleteRemovesEveryInstanceFreesAddressesAndIsIdempotent) {
  Deploy(6);
  std::set<std::string> ips;
  for (const auto& [name, inst] : c().instances()) ips.insert(inst.allocation.ip);
  auto r = Delete("web", "op-del");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->removed_size(), 6);
  EXPECT_TRUE(c().instances().empty());
  EXPECT_EQ(c().ListServices().services_size(), 0);
  for (const auto& [host, sink] : h_.sinks()) {
    auto desired = sink->LastDesired();
    ASSERT_TRUE(desired.has_value()) << host;
    EXPECT_TRUE(desired->empty()) << host << " still runs instances of web";
  }
  EXPECT_EQ(c().Topology().instances_size(), 0) << "DNS and OVS follow the topology";
  size_t events = h_.Events().size();
  auto again = Delete("web", "op-del");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(h_.Events().size(), events) << "a repeated operation id did something";
  // Unknown now (another operation): refused, naming it.
  auto unknown = Delete("web", "op-del-2");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Code::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("\"web\""));
  auto bad = Delete("Web_1");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  // The addresses are free again: a new service gets them; a restart keeps it deleted.
  h_.Restart();
  EXPECT_EQ(c().ListServices().services_size(), 0);
  h_.Hosts(3);
  ASSERT_TRUE(h_.Apply(Web(6)).ok());
  std::set<std::string> again_ips;
  for (const auto& [name, inst] : c().instances()) again_ips.insert(inst.allocation.ip);
  EXPECT_EQ(again_ips, ips);
}

TEST_F(ServiceOpsTest, DeleteIsRefusedDuringAnUpgradeUnlessForced) {
  Deploy(6);
  Start("manual");
  auto refused = Delete("web", "op-1");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("--force"));
  EXPECT_EQ(c().instances().size(), 6u) << "a refused delete changed something";
  auto forced = Delete("web", "op-2", /*force=*/true);
  ASSERT_TRUE(forced.ok()) << forced.status().ToString();
  EXPECT_TRUE(c().instances().empty());
  // Its upgrade record went with it: a new service of that name starts clean, also after a
  // restart.
  h_.Restart();
  h_.Hosts(3);
  ASSERT_TRUE(h_.Apply(Web(6)).ok());
  auto st = c().UpgradeGet("web");
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.status().message(), HasSubstr("never been upgraded"));
}

// ---- finding 12: undrain, cordon, uncordon ----

TEST_F(ServiceOpsTest, CordonKeepsWhatRunsAndPlacesNothingNewThere) {
  Deploy(3, /*hosts=*/3);
  std::set<std::string> on_host1 = InstancesOn("host-1");
  ASSERT_FALSE(on_host1.empty());
  auto cordoned = Verb("host-1", HostVerb::kCordon, "op-c");
  ASSERT_TRUE(cordoned.ok()) << cordoned.status().ToString();
  EXPECT_EQ(cordoned->state(), "cordoned");
  EXPECT_EQ(InstancesOn("host-1"), on_host1) << "cordon moved instances";
  ASSERT_TRUE(h_.Apply(Web(9)).ok());
  EXPECT_EQ(InstancesOn("host-1"), on_host1) << "a new instance landed on a cordoned host";
  h_.Restart();
  EXPECT_EQ(HostState("host-1"), "cordoned") << "stored";
  h_.Hosts(3);
  EXPECT_EQ(HostState("host-1"), "cordoned") << "an agent reconnecting keeps the cordon";
  auto up = Verb("host-1", HostVerb::kUncordon, "op-u");
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_EQ(up->state(), "up");
  // A retry of the cordon (same operation id) does not cordon it again.
  ASSERT_TRUE(Verb("host-1", HostVerb::kCordon, "op-c").ok());
  EXPECT_EQ(HostState("host-1"), "up");
  ASSERT_TRUE(h_.Apply(Web(12)).ok());
  EXPECT_GT(InstancesOn("host-1").size(), on_host1.size()) << "uncordoned, it takes instances";
}

// host-1 stops heartbeating until the controller declares it down (the others go on).
void LoseHost1(ControllerHarness& h) {
  for (int i = 0; i < 8; ++i) {
    h.clock().Advance(std::chrono::milliseconds(500));
    for (const char* host : {"host-2", "host-3"}) {
      h.controller().OnHeartbeat(host, v1::Heartbeat(), &h.Sink(host));
    }
    h.controller().Tick();
  }
}

TEST_F(ServiceOpsTest, ACordonOrDrainOutlastsTheHostGoingDownAndComingBack) {
  Deploy(3, /*hosts=*/3);
  ASSERT_TRUE(Verb("host-1", HostVerb::kCordon).ok());
  LoseHost1(h_);
  ASSERT_EQ(HostState("host-1"), "down");
  ASSERT_TRUE(h_.Hello("host-1").ok());
  EXPECT_EQ(HostState("host-1"), "cordoned") << "the cordon was lost when the host came back";
  ASSERT_TRUE(h_.Apply(Web(9)).ok());
  EXPECT_TRUE(InstancesOn("host-1").empty()) << "placed on a cordoned host";
  // Uncordoned while down: it comes back up, and takes instances.
  LoseHost1(h_);
  ASSERT_EQ(HostState("host-1"), "down");
  auto up = Verb("host-1", HostVerb::kUncordon);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_EQ(up->state(), "down");
  ASSERT_TRUE(h_.Hello("host-1").ok());
  EXPECT_EQ(HostState("host-1"), "up");
  // A drained host that goes down comes back draining (and stored so: a restart keeps it).
  v1::DrainRequest drain;
  drain.set_host("host-1");
  ASSERT_TRUE(c().Drain(drain).ok());
  LoseHost1(h_);
  h_.Restart();
  h_.Hosts(3);
  EXPECT_EQ(HostState("host-1"), "draining");
}

TEST_F(ServiceOpsTest, UndrainLetsADrainedHostTakeInstancesAgain) {
  Deploy(3, /*hosts=*/2);
  v1::DrainRequest drain;
  drain.set_host("host-1");
  ASSERT_TRUE(c().Drain(drain).ok());
  ASSERT_EQ(HostState("host-1"), "draining");
  h_.AllRunning();
  ASSERT_TRUE(h_.Apply(Web(4)).ok());
  EXPECT_TRUE(InstancesOn("host-1").empty());
  auto up = Verb("host-1", HostVerb::kUndrain, "op-undrain");
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_EQ(up->state(), "up");
  ASSERT_TRUE(h_.Apply(Web(8)).ok());
  EXPECT_FALSE(InstancesOn("host-1").empty()) << "undrained, it takes instances";
}

TEST_F(ServiceOpsTest, HostVerbsRefuseUnknownHostsAndWrongStatesAndChangeNothing) {
  Deploy(3, /*hosts=*/2);
  size_t events = h_.Events().size();
  auto unknown = Verb("host-9", HostVerb::kCordon);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Code::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("\"host-9\""));
  auto bad = Verb("Host_1", HostVerb::kUndrain);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  auto undrain = Verb("host-1", HostVerb::kUndrain);
  ASSERT_FALSE(undrain.ok());
  EXPECT_EQ(undrain.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(undrain.status().message(), HasSubstr("host host-1 is up, not draining"));
  auto uncordon = Verb("host-1", HostVerb::kUncordon);
  ASSERT_FALSE(uncordon.ok());
  EXPECT_THAT(uncordon.status().message(), HasSubstr("host host-1 is up, not cordoned"));
  ASSERT_TRUE(Verb("host-2", HostVerb::kCordon).ok());
  auto twice = Verb("host-2", HostVerb::kCordon);
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(twice.status().message(), HasSubstr("host host-2 is cordoned already"));
  auto wrong = Verb("host-2", HostVerb::kUndrain);
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(), HasSubstr("regenctl host uncordon host-2"));
  EXPECT_EQ(HostState("host-1"), "up");
  EXPECT_EQ(HostState("host-2"), "cordoned");
  EXPECT_EQ(h_.Events().size(), events + 1) << "only the one cordon is an event";
}

}  // namespace
}  // namespace regen
