// Unit tests of the controller's pure parts and its one write path: typed states (states.h), host
// liveness (host_liveness.h), report classification (domain_report.h), the topology's "what
// changed" check (topology.h) and ClusterState::Commit over the in-memory FakeStore.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

#include "controller/cluster_state.h"
#include "controller/domain_report.h"
#include "controller/host_liveness.h"
#include "controller/states.h"
#include "controller/topology.h"
#include "tests/fakes/fake_store.h"

namespace regen {
namespace {

using std::chrono::milliseconds;

TEST(StatesTest, NamesRoundTripAndUnknownOnesAreRefusedByName) {
  for (auto s : {InstanceState::kPending, InstanceState::kCreating, InstanceState::kRunning,
                 InstanceState::kFailed, InstanceState::kMoving}) {
    EXPECT_EQ(*ParseInstanceState(InstanceStateName(s)), s);
  }
  EXPECT_EQ(*ParseEventKind("upgrade_preempted"), EventKind::kUpgradePreempted);
  EXPECT_EQ(std::string(EventKindName(EventKind::kDnsUpdateRecovered)), "dns_update_recovered");
  auto bad = ParseInstanceState("runing");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"runing\""), std::string::npos);
  EXPECT_NE(bad.status().message().find("running"), std::string::npos) << "lists the known ones";
  EXPECT_FALSE(ParseEventKind("").ok());
}

TEST(HostLivenessTest, SuspectAfterAMissedHeartbeatDownAfterHostDownAfter) {
  ControllerConfig c;
  c.heartbeat_interval = milliseconds(200);
  c.host_down_after = milliseconds(1500);
  EXPECT_EQ(JudgeHost(HostState::kUp, milliseconds(300), c), LivenessVerdict::kNoChange);
  EXPECT_EQ(JudgeHost(HostState::kUp, milliseconds(301), c), LivenessVerdict::kSuspect);
  EXPECT_EQ(JudgeHost(HostState::kSuspect, milliseconds(900), c), LivenessVerdict::kNoChange);
  EXPECT_EQ(JudgeHost(HostState::kSuspect, milliseconds(1501), c), LivenessVerdict::kDown);
  EXPECT_EQ(JudgeHost(HostState::kDraining, milliseconds(1501), c), LivenessVerdict::kDown);
  EXPECT_EQ(JudgeHost(HostState::kDraining, milliseconds(400), c), LivenessVerdict::kNoChange)
      << "a draining host is not marked suspect";
  EXPECT_EQ(JudgeHost(HostState::kDown, milliseconds(99999), c), LivenessVerdict::kNoChange);
  EXPECT_TRUE(SessionIsLive(milliseconds(299), c));
  EXPECT_FALSE(SessionIsLive(milliseconds(300), c));
}

InstanceRecord Inst(const std::string& name, const std::string& host, InstanceState state,
                    int64_t generation) {
  InstanceRecord i;
  i.name = name;
  i.service = "web";
  i.allocation.host = host;
  i.state = state;
  i.generation = generation;
  return i;
}

v1::DomainStatus Domain(const std::string& name, v1::DomainState state, int64_t generation,
                        bool passed = false) {
  v1::DomainStatus d;
  d.set_name(name);
  d.set_state(state);
  d.set_generation(generation);
  d.set_health_passed(passed);
  return d;
}

TEST(DomainReportTest, ClassifiesRunningFailedStaleAndFinishedMoves) {
  std::map<std::string, InstanceRecord> instances;
  instances["web-0"] = Inst("web-0", "h1", InstanceState::kCreating, 2);
  instances["web-1"] = Inst("web-1", "h1", InstanceState::kRunning, 1);
  instances["web-2"] = Inst("web-2", "h1", InstanceState::kRunning, 3);  // report is stale
  instances["web-3"] = Inst("web-3", "h2", InstanceState::kMoving, 2);
  instances["web-3"].moving_from = "h1";
  instances["web-4"] = Inst("web-4", "h2", InstanceState::kRunning, 1);  // another host's
  std::map<std::string, v1::DomainStatus> now{
      {"web-0", Domain("web-0", v1::DOMAIN_STATE_RUNNING, 2)},
      {"web-1", Domain("web-1", v1::DOMAIN_STATE_CRASHED, 1)},
      {"web-2", Domain("web-2", v1::DOMAIN_STATE_CRASHED, 2)},
      {"web-4", Domain("web-4", v1::DOMAIN_STATE_CRASHED, 1)}};
  ReportOutcome out = ClassifyReport("h1", {}, now, instances);
  EXPECT_EQ(out.now_running, std::vector<std::string>{"web-0"});
  EXPECT_EQ(out.failed, std::vector<std::string>{"web-1"});
  EXPECT_EQ(out.finished_moves, std::vector<std::string>{"web-3"});
  EXPECT_TRUE(out.newly_passed.empty());
}

// Issue 15 finding 6: a running instance missing from a complete report is gone; never from a
// partial one, never a creating or moving one, never another host's.
TEST(DomainReportTest, ARunningInstanceMissingFromACompleteReportIsGone) {
  std::map<std::string, InstanceRecord> instances;
  instances["web-0"] = Inst("web-0", "h1", InstanceState::kRunning, 2);   // missing: gone
  instances["web-1"] = Inst("web-1", "h1", InstanceState::kCreating, 3);  // not created yet
  instances["web-2"] = Inst("web-2", "h1", InstanceState::kRunning, 1);   // reported
  instances["web-3"] = Inst("web-3", "h2", InstanceState::kRunning, 1);   // another host's
  instances["web-4"] = Inst("web-4", "h1", InstanceState::kFailed, 1);    // being healed
  instances["web-5"] = Inst("web-5", "h1", InstanceState::kMoving, 2);    // moving here
  instances["web-5"].moving_from = "h2";
  std::map<std::string, v1::DomainStatus> now{
      {"web-2", Domain("web-2", v1::DOMAIN_STATE_RUNNING, 1)}};
  EXPECT_EQ(ClassifyReport("h1", {}, now, instances, /*complete=*/true).gone,
            std::vector<std::string>{"web-0"});
  EXPECT_TRUE(ClassifyReport("h1", {}, now, instances, /*complete=*/false).gone.empty());
  EXPECT_TRUE(ClassifyReport("h1", {}, now, instances).gone.empty()) << "partial by default";
}

TEST(DomainReportTest, AHealthVerdictInAReportFailsTheInstanceOncePerSession) {
  std::map<std::string, InstanceRecord> instances{
      {"web-0", Inst("web-0", "h1", InstanceState::kRunning, 2)},
      {"web-1", Inst("web-1", "h1", InstanceState::kRunning, 3)}};  // the report is stale
  auto failing = [](const std::string& name, int64_t generation) {
    v1::DomainStatus d = Domain(name, v1::DOMAIN_STATE_RUNNING, generation);
    d.set_health(v1::HEALTH_STATE_FAILING);
    d.set_health_failures(3);
    d.set_health_failed(true);
    d.set_health_detail("not an HTTP answer");
    return d;
  };
  std::map<std::string, v1::DomainStatus> now{{"web-0", failing("web-0", 2)},
                                              {"web-1", failing("web-1", 2)}};
  ReportOutcome out = ClassifyReport("h1", {}, now, instances, true);
  EXPECT_EQ(out.health_failed, std::vector<std::string>{"web-0"});
  EXPECT_TRUE(out.failed.empty());
  // The same level in the next report of the session is not news (the first one was acted on).
  EXPECT_TRUE(ClassifyReport("h1", now, now, instances, true).health_failed.empty());
  // After a pass, failing again is.
  std::map<std::string, v1::DomainStatus> passing{
      {"web-0", Domain("web-0", v1::DOMAIN_STATE_RUNNING, 2, true)}};
  EXPECT_EQ(ClassifyReport("h1", passing, now, instances, true).health_failed.size(), 1u);
  v1::DomainEvent e = HealthFailureEvent("h1", now["web-0"]);
  EXPECT_EQ(e.instance(), "web-0");
  EXPECT_EQ(e.generation(), 2);
  EXPECT_EQ(e.detected_by(), v1::DETECTED_BY_HEALTH_CHECK);
  EXPECT_NE(e.reason().find("3 times in a row: not an HTTP answer"), std::string::npos);
}

TEST(DomainReportTest, StringsFromAnAgentAreBounded) {
  v1::DomainsReport r;
  r.set_host("h1");
  auto* d = r.add_domains();
  d->set_name("web-0");
  d->set_reason(std::string(100000, 'x'));
  d->set_health_detail("line one\r\nline two\x1b[2J");
  auto* s = r.add_staged();
  s->set_error(std::string(5000, 'e'));
  v1::DomainsReport b = BoundReport(r);
  EXPECT_EQ(b.domains(0).name(), "web-0");
  EXPECT_LE(b.domains(0).reason().size(), 1024u);
  EXPECT_EQ(b.domains(0).health_detail(), "line one\\r\\nline two\\x1b[2J");
  EXPECT_LE(b.staged(0).error().size(), 1024u);
  v1::DomainEvent e;
  e.set_instance("web-0");
  e.set_reason(std::string(2000, 'r'));
  EXPECT_LE(BoundEvent(e).reason().size(), 1024u);
  google::protobuf::RepeatedPtrField<v1::FencedInstance> fenced;
  fenced.Add()->set_reason(std::string(3000, 'f'));
  EXPECT_LE(BoundFenced(fenced)[0].reason().size(), 1024u);
}

TEST(DomainReportTest, AFirstPassedProbeOfAGenerationIsNewsOnce) {
  std::map<std::string, InstanceRecord> instances{
      {"web-0", Inst("web-0", "h1", InstanceState::kRunning, 2)}};
  std::map<std::string, v1::DomainStatus> passed{
      {"web-0", Domain("web-0", v1::DOMAIN_STATE_RUNNING, 2, true)}};
  EXPECT_EQ(ClassifyReport("h1", {}, passed, instances).newly_passed, std::set<std::string>{"web"});
  EXPECT_TRUE(ClassifyReport("h1", passed, passed, instances).newly_passed.empty());
  std::map<std::string, v1::DomainStatus> older{
      {"web-0", Domain("web-0", v1::DOMAIN_STATE_RUNNING, 1, true)}};
  EXPECT_EQ(ClassifyReport("h1", older, passed, instances).newly_passed.size(), 1u);
}

TEST(DomainReportTest, StagingChangesAndErrors) {
  google::protobuf::RepeatedPtrField<v1::StagedImage> now;
  auto* ok = now.Add();
  ok->set_service("web");
  ok->set_version("v2");
  ok->set_image("/img/v2");
  auto* bad = now.Add();
  bad->set_service("db");
  bad->set_version("v9");
  bad->set_error("no space");
  StagingOutcome first = ClassifyStaging({}, now);
  EXPECT_EQ(first.changed, (std::set<std::string>{"db", "web"}));
  ASSERT_EQ(first.failed.size(), 1u);
  EXPECT_EQ(first.failed[0].error(), "no space");
  StagingOutcome again = ClassifyStaging(first.staged, now);
  EXPECT_TRUE(again.changed.empty());
  EXPECT_EQ(again.failed.size(), 1u) << "still failing (the controller events it once)";
}

TEST(TopologyTest, OneCheckFindsRevisionChangesAndServicesWhoseLocationsMoved) {
  std::map<std::string, HostRecord> hosts{{"h1", {"h1", "10.0.0.1", {}, HostState::kUp, 0, 0}},
                                          {"h2", {"h2", "10.0.0.2", {}, HostState::kUp, 0, 0}}};
  std::map<std::string, InstanceRecord> instances{
      {"web-0", Inst("web-0", "h1", InstanceState::kRunning, 1)}};
  TopologyTracker tracker;
  tracker.Reset("");
  TopologyDelta d = tracker.Observe(instances, hosts);
  EXPECT_TRUE(d.revision_changed);
  EXPECT_EQ(d.services, std::set<std::string>{"web"}) << "first publication after a load";
  tracker.Accept(d.digest);
  EXPECT_FALSE(tracker.Observe(instances, hosts).revision_changed);
  // Running -> creating on the same host with the same generation: neither changes.
  instances["web-0"].state = InstanceState::kCreating;
  d = tracker.Observe(instances, hosts);
  EXPECT_FALSE(d.revision_changed);
  EXPECT_TRUE(d.services.empty());
  // A heal: another host and generation.
  instances["web-0"].allocation.host = "h2";
  instances["web-0"].generation = 2;
  d = tracker.Observe(instances, hosts);
  EXPECT_TRUE(d.revision_changed);
  EXPECT_EQ(d.services, std::set<std::string>{"web"});
  EXPECT_EQ(d.topology.hosts(0).address(), "10.0.0.2");
  EXPECT_EQ(TopologyDigest(d.topology), d.digest);
}

// ChangesTopology lets a step skip the O(instances) comparison: it must say "changes" for every
// write after which TopologyTracker::Observe finds a new revision or a moved location.
TEST(TopologyTest, ChangesTopologyCoversEveryWriteTheTrackerSees) {
  std::map<std::string, HostRecord> hosts{{"h1", {"h1", "10.0.0.1", {}, HostState::kUp, 0, 0}},
                                          {"h2", {"h2", "10.0.0.2", {}, HostState::kUp, 0, 0}}};
  const InstanceRecord base = Inst("web-0", "h1", InstanceState::kRunning, 1);
  std::vector<std::pair<std::string, std::function<void(InstanceRecord&)>>> writes = {
      {"creating", [](InstanceRecord& i) { i.state = InstanceState::kCreating; }},
      {"pending", [](InstanceRecord& i) { i.state = InstanceState::kPending; }},
      {"failed", [](InstanceRecord& i) { i.state = InstanceState::kFailed; }},
      {"moving", [](InstanceRecord& i) { i.state = InstanceState::kMoving; }},
      {"host", [](InstanceRecord& i) { i.allocation.host = "h2"; }},
      {"no host", [](InstanceRecord& i) { i.allocation.host = ""; }},
      {"ip", [](InstanceRecord& i) { i.allocation.ip = "10.9.0.9"; }},
      {"mac", [](InstanceRecord& i) { i.allocation.mac = "52:54:00:00:00:99"; }},
      {"generation", [](InstanceRecord& i) { i.generation = 7; }},
      {"service", [](InstanceRecord& i) { i.service = "db"; }},
      {"version", [](InstanceRecord& i) { i.version = "v9"; }},
  };
  int changes = 0;
  for (const auto& [what, write] : writes) {
    for (InstanceState from : {InstanceState::kRunning, InstanceState::kPending,
                               InstanceState::kMoving, InstanceState::kFailed}) {
      InstanceRecord before = base;
      before.state = from;
      InstanceRecord after = before;
      write(after);
      std::map<std::string, InstanceRecord> instances{{"web-0", before}};
      TopologyTracker tracker;
      tracker.Reset("");
      tracker.Accept(tracker.Observe(instances, hosts).digest);
      instances["web-0"] = after;
      TopologyDelta d = tracker.Observe(instances, hosts);
      const bool seen = d.revision_changed || !d.services.empty();
      changes += seen ? 1 : 0;
      if (seen) {
        EXPECT_TRUE(ChangesTopology(&before, after))
            << what << " from " << InstanceStateName(from) << ": the tracker sees a change";
      }
    }
  }
  EXPECT_GT(changes, 10) << "the writes above must include ones the tracker sees";
  EXPECT_FALSE(ChangesTopology(&base, base));
  InstanceRecord running_again = base;
  running_again.state = InstanceState::kCreating;
  EXPECT_FALSE(ChangesTopology(&base, running_again)) << "creating -> running skips the check";
  EXPECT_TRUE(ChangesTopology(nullptr, base)) << "a new instance";
  HostRecord h = hosts["h1"];
  HostRecord heartbeat = h;
  heartbeat.last_heartbeat_unix_ms = 99;
  heartbeat.state = HostState::kSuspect;
  EXPECT_FALSE(ChangesTopology(&h, heartbeat));
  HostRecord moved = h;
  moved.address = "10.0.0.9";
  EXPECT_TRUE(ChangesTopology(&h, moved));
  EXPECT_TRUE(ChangesTopology(nullptr, h)) << "a new host";
}

TEST(ClusterStateTest, CommitWritesOneTransactionThenMemory) {
  testing::FakeStore store;
  ClusterState state(store);
  ASSERT_TRUE(state.Load().ok());
  StateChange change;
  change.hosts.push_back({"h1", "10.0.0.1", {4, 4096, 0, 0}, HostState::kUp, 0, 0});
  change.instances.push_back(Inst("web-0", "h1", InstanceState::kCreating, 1));
  EventRecord e;
  e.kind = EventKind::kPlacement;
  change.events.push_back(e);
  change.events.push_back(e);
  change.topology = StateChange::Topology{7, "abc"};
  auto committed = state.Commit(change);
  ASSERT_TRUE(committed.ok());
  const std::vector<EventRecord>& events = *committed;
  EXPECT_EQ(store.commits(), 1);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].sequence, 1);
  EXPECT_EQ(events[1].sequence, 2);
  EXPECT_EQ(state.instance("web-0")->state, InstanceState::kCreating);
  EXPECT_EQ(state.topology_revision(), 7);
  // A new ClusterState on the same store sees the same.
  ClusterState again(store);
  ASSERT_TRUE(again.Load().ok());
  EXPECT_EQ(again.instances(), state.instances());
  EXPECT_EQ(again.hosts(), state.hosts());
  EXPECT_EQ(again.topology_digest(), "abc");
  // Nothing to write: no transaction.
  EXPECT_TRUE(state.Commit(StateChange{}).ok());
  EXPECT_EQ(store.commits(), 1);
}

TEST(ClusterStateTest, InstancesOnAHostFollowEveryWriteAndALoad) {
  testing::FakeStore store;
  ClusterState state(store);
  ASSERT_TRUE(state.Load().ok());
  using Names = std::set<std::string>;
  StateChange change;
  change.instances.push_back(Inst("web-0", "h1", InstanceState::kRunning, 1));
  change.instances.push_back(Inst("web-1", "h1", InstanceState::kRunning, 1));
  change.instances.push_back(Inst("web-2", "", InstanceState::kPending, 0));
  ASSERT_TRUE(state.Commit(change).ok());
  EXPECT_EQ(state.instances_on("h1"), (Names{"web-0", "web-1"}));
  EXPECT_TRUE(state.instances_on("").empty()) << "a pending instance is on no host";
  // A heal moves web-0 (written twice in one change: the last one counts), web-2 is placed,
  // web-1 is deleted.
  StateChange next;
  next.instances.push_back(Inst("web-0", "h3", InstanceState::kCreating, 2));
  next.instances.push_back(Inst("web-0", "h2", InstanceState::kCreating, 2));
  next.instances.push_back(Inst("web-2", "h2", InstanceState::kCreating, 1));
  next.deleted_instances.push_back("web-1");
  ASSERT_TRUE(state.Commit(next).ok());
  EXPECT_TRUE(state.instances_on("h1").empty());
  EXPECT_TRUE(state.instances_on("h3").empty());
  EXPECT_EQ(state.instances_on("h2"), (Names{"web-0", "web-2"}));
  ClusterState again(store);
  ASSERT_TRUE(again.Load().ok());
  EXPECT_EQ(again.instances_on("h2"), (Names{"web-0", "web-2"}));
  EXPECT_TRUE(again.instances_on("h1").empty());
}

TEST(ClusterStateTest, AFailedWriteLeavesMemoryAsTheStoreIs) {
  testing::FakeStore inner;
  testing::FaultyStore store(inner, 1);
  ClusterState state(store);
  ASSERT_TRUE(state.Load().ok());
  StateChange change;
  change.instances.push_back(Inst("web-0", "h1", InstanceState::kCreating, 1));
  auto refused = state.Commit(change);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("injected failure of write 1"));
  EXPECT_EQ(state.instance("web-0"), nullptr);
  EXPECT_EQ(inner.commits(), 0);
  auto stored = state.Commit(change);  // the store writes again
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(state.instance("web-0")->state, InstanceState::kCreating);
}

}  // namespace
}  // namespace regen
