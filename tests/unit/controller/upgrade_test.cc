// Tests of the upgrade orchestrator's pure core (controller/upgrade.h): the healing version for
// every row of DESIGN.md's table, every transition of the upgrade state machine, NextAction, the
// JSON round trip, and randomized runs of a simulated orchestrator checked against the table.
#include "controller/upgrade.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/unit/controller/upgrade_fixture.h"

namespace regen {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// --- VersionForHealing: the DESIGN table ------------------------------------------------------

HealingVersion Heal(int64_t ud, const UpgradeState* u, std::string_view service_version = "v1") {
  auto r = VersionForHealing(ud, u, service_version);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : HealingVersion{};
}

TEST_F(UpgradeTest, HealingTableRowLowerUdAlreadyUpgradedGetsNewVersion) {
  UpgradeState s = RunningAtUd1();
  HealingVersion h = Heal(0, &s);
  EXPECT_EQ(h.version, "v2");
  EXPECT_FALSE(h.carry_staging());
  EXPECT_EQ(h.rule, HealingCase::kUdUpgraded);
  EXPECT_THAT(h.reason, AllOf(HasSubstr("UD 0"), HasSubstr("already upgraded")));
}

TEST_F(UpgradeTest, HealingTableRowEqualUdBeingUpgradedGetsNewVersion) {
  UpgradeState s = RunningAtUd1();
  HealingVersion h = Heal(1, &s);
  EXPECT_EQ(h.version, "v2");
  EXPECT_FALSE(h.carry_staging());
  EXPECT_EQ(h.rule, HealingCase::kUdBeingUpgraded);
}

TEST_F(UpgradeTest, HealingTableRowHigherUdGetsOldVersionAndCarriesStaging) {
  UpgradeState s = RunningAtUd1();
  HealingVersion h = Heal(2, &s);
  EXPECT_EQ(h.version, "v1");
  EXPECT_TRUE(h.carry_staging());
  EXPECT_EQ(h.carry_staged_version, "v2");
  EXPECT_EQ(h.rule, HealingCase::kUdNotYetUpgraded);
  EXPECT_THAT(h.reason,
              AllOf(HasSubstr("UD 2"), HasSubstr("not yet upgraded"), HasSubstr("staged for v2")));
}

TEST_F(UpgradeTest, HealingTableAtFirstUdOfARunningUpgrade) {
  UpgradeState s = Started();
  EXPECT_EQ(Heal(0, &s).version, "v2");  // equal, begun
  EXPECT_EQ(Heal(1, &s).version, "v1");
  EXPECT_EQ(Heal(2, &s).carry_staged_version, "v2");
}

TEST_F(UpgradeTest, HealingTableAtLastUd) {
  UpgradeState s = Must(RunningAtUd1(), ev::UdInstancesUpgraded{1});
  ASSERT_EQ(s.current_ud, 2);
  EXPECT_EQ(Heal(0, &s).rule, HealingCase::kUdUpgraded);
  EXPECT_EQ(Heal(1, &s).rule, HealingCase::kUdUpgraded);
  EXPECT_EQ(Heal(2, &s).rule, HealingCase::kUdBeingUpgraded);
  EXPECT_EQ(Heal(2, &s).version, "v2");
}

TEST_F(UpgradeTest, HealingTableHoldsWhilePreempted) {
  UpgradeState s = Must(RunningAtUd1(), ev::InstanceFailed{"web-4", 1});
  ASSERT_EQ(s.state, Phase::kPreempted);
  EXPECT_EQ(Heal(0, &s).version, "v2");
  EXPECT_EQ(Heal(1, &s).version, "v2");  // the UD that was being upgraded when pre-empted
  EXPECT_FALSE(Heal(1, &s).carry_staging());
  EXPECT_EQ(Heal(2, &s).version, "v1");
  EXPECT_EQ(Heal(2, &s).carry_staged_version, "v2");
}

TEST_F(UpgradeTest, HealingTableHoldsWhilePausedAndFailed) {
  UpgradeState paused = Must(RunningAtUd1(), ev::Pause{});
  EXPECT_EQ(Heal(0, &paused).version, "v2");
  EXPECT_EQ(Heal(1, &paused).version, "v2");
  EXPECT_EQ(Heal(2, &paused).version, "v1");
  policy_.max_failed_health_checks = 1;
  UpgradeState failed = Must(RunningAtUd1(), ev::HealthCheckFailed{"web-0"});
  ASSERT_EQ(failed.state, Phase::kFailed);
  EXPECT_EQ(Heal(0, &failed).rule, HealingCase::kUdUpgraded);
  EXPECT_EQ(Heal(1, &failed).rule, HealingCase::kUdBeingUpgraded);  // partly upgraded
  EXPECT_EQ(Heal(2, &failed).rule, HealingCase::kUdNotYetUpgraded);
}

TEST_F(UpgradeTest, HealingDuringAnUpgradeStartedPreemptedGivesOldVersion) {
  // DESIGN: an upgrade started while healing runs starts pre-empted; healed instances get the old
  // version, UD 0 included (it has not begun).
  UpgradeState s = Started(UpgradeMode::kAuto, 3, {"web-0"});
  ASSERT_EQ(s.state, Phase::kPreempted);
  ASSERT_FALSE(s.current_ud_started);
  HealingVersion h = Heal(0, &s);
  EXPECT_EQ(h.version, "v1");
  EXPECT_EQ(h.rule, HealingCase::kUdNotYetUpgraded);
  EXPECT_EQ(Heal(2, &s).version, "v1");
  // Once healing ends UD 0 begins, and the table's "equal" row applies.
  s = Must(s, ev::HealingDone{"web-0"});
  EXPECT_EQ(Heal(0, &s).version, "v2");
}

TEST_F(UpgradeTest, HealingInManualModeBeforeTheOperatorMovesTheUd) {
  UpgradeState s = ManualWaitingAtUd1();
  EXPECT_EQ(Heal(0, &s).version, "v2");
  HealingVersion next = Heal(1, &s);  // the next UD, not started by the operator yet
  EXPECT_EQ(next.version, "v1");
  EXPECT_EQ(next.carry_staged_version, "v2");
  EXPECT_EQ(Heal(2, &s).version, "v1");
  s = Must(s, ev::NextUd{});
  EXPECT_EQ(Heal(1, &s).version, "v2");
}

TEST_F(UpgradeTest, HealingWithoutUpgradeUsesTheServiceVersion) {
  HealingVersion none = Heal(5, nullptr, "v7");
  EXPECT_EQ(none.version, "v7");
  EXPECT_FALSE(none.carry_staging());
  EXPECT_EQ(none.rule, HealingCase::kNoUpgrade);
  UpgradeState empty;
  EXPECT_EQ(Heal(0, &empty, "v3").version, "v3");
}

TEST_F(UpgradeTest, HealingAfterCompletedUsesTheServiceVersion) {
  UpgradeState s =
      Must(Must(RunningAtUd1(), ev::UdInstancesUpgraded{1}), ev::UdInstancesUpgraded{2});
  ASSERT_EQ(s.state, Phase::kCompleted);
  HealingVersion h = Heal(0, &s, "v2");
  EXPECT_EQ(h.version, "v2");
  EXPECT_EQ(h.rule, HealingCase::kNoUpgrade);
  EXPECT_FALSE(h.carry_staging());
  EXPECT_THAT(h.reason, HasSubstr("completed"));
  // The service's version wins over the record's (a spec applied later).
  EXPECT_EQ(Heal(2, &s, "v9").version, "v9");
}

TEST_F(UpgradeTest, HealingAfterRolledBackUsesTheServiceVersion) {
  UpgradeState s = Must(RunningAtUd1(), ev::Rollback{});
  s = Must(Must(s, ev::RolledBackUd{1}), ev::RolledBackUd{0});
  ASSERT_EQ(s.state, Phase::kRolledBack);
  HealingVersion h = Heal(1, &s, "v1");
  EXPECT_EQ(h.version, "v1");
  EXPECT_EQ(h.rule, HealingCase::kNoUpgrade);
  EXPECT_THAT(h.reason, HasSubstr("rolled_back"));
}

TEST_F(UpgradeTest, HealingWhileRollingBack) {
  // 4 UDs: 0 and 1 upgraded, 2 partly upgraded when the rollback starts; UD 3 never upgraded.
  UpgradeState s = Must(Started(UpgradeMode::kAuto, 4), ev::UdInstancesUpgraded{0});
  s = Must(Must(s, ev::UdInstancesUpgraded{1}), ev::Rollback{});
  ASSERT_EQ(s.state, Phase::kRollingBack);
  ASSERT_EQ(s.current_ud, 2);
  s = Must(s, ev::RolledBackUd{2});
  ASSERT_EQ(s.current_ud, 1);
  HealingVersion awaiting = Heal(0, &s);
  EXPECT_EQ(awaiting.version, "v2");
  EXPECT_EQ(awaiting.carry_staged_version, "v1");
  EXPECT_EQ(awaiting.rule, HealingCase::kUdAwaitingRollback);
  HealingVersion being = Heal(1, &s);
  EXPECT_EQ(being.version, "v1");
  EXPECT_FALSE(being.carry_staging());
  EXPECT_EQ(being.rule, HealingCase::kUdBeingRolledBack);
  HealingVersion done = Heal(2, &s);
  EXPECT_EQ(done.version, "v1");
  EXPECT_FALSE(done.carry_staging());
  EXPECT_EQ(done.rule, HealingCase::kUdRolledBack);
  EXPECT_EQ(Heal(3, &s).rule, HealingCase::kUdRolledBack);  // never upgraded
  // Pre-empted while rolling back: the same answers.
  UpgradeState pre = Must(s, ev::InstanceFailed{"web-1", 1});
  ASSERT_EQ(pre.state, Phase::kPreempted);
  EXPECT_EQ(Heal(0, &pre).version, "v2");
  EXPECT_EQ(Heal(1, &pre).version, "v1");
  EXPECT_EQ(Heal(2, &pre).version, "v1");
}

TEST_F(UpgradeTest, HealingRefusesBadInput) {
  UpgradeState s = RunningAtUd1();
  auto negative = VersionForHealing(-1, &s, "v1");
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.status().code(), Code::kInvalidArgument);
  auto too_high = VersionForHealing(3, &s, "v1");
  ASSERT_FALSE(too_high.ok());
  EXPECT_EQ(too_high.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(too_high.status().message(),
              AllOf(HasSubstr("service web"), HasSubstr("UD 3"), HasSubstr("UDs 0..2")));
  auto no_version = VersionForHealing(0, nullptr, "");
  ASSERT_FALSE(no_version.ok());
  EXPECT_EQ(no_version.status().code(), Code::kInvalidArgument);
  // While an upgrade runs the record's versions are used; service_version is not needed.
  EXPECT_TRUE(VersionForHealing(0, &s, "").ok());
}

// Every (state, UD) pair of a 3-UD upgrade at UD 1 against the table, as one sweep.
TEST_F(UpgradeTest, HealingTableSweepOverStates) {
  struct Row {
    std::string name;
    UpgradeState state;
    std::vector<std::string> versions;  // per UD 0..2
    std::vector<bool> carry;
  };
  policy_.max_failed_health_checks = 1;
  std::vector<Row> rows = {
      {"running", RunningAtUd1(), {"v2", "v2", "v1"}, {false, false, true}},
      {"preempted",
       Must(RunningAtUd1(), ev::InstanceFailed{"web-1", 1}),
       {"v2", "v2", "v1"},
       {false, false, true}},
      {"paused", Must(RunningAtUd1(), ev::Pause{}), {"v2", "v2", "v1"}, {false, false, true}},
      {"failed",
       Must(RunningAtUd1(), ev::HealthCheckFailed{"web-0"}),
       {"v2", "v2", "v1"},
       {false, false, true}},
      {"waiting", ManualWaitingAtUd1(), {"v2", "v1", "v1"}, {false, true, true}},
      {"rolling_back",
       Must(RunningAtUd1(), ev::Rollback{}),
       {"v2", "v1", "v1"},
       {true, false, false}},
  };
  for (const Row& row : rows) {
    for (int64_t ud = 0; ud < 3; ++ud) {
      HealingVersion h = Heal(ud, &row.state);
      EXPECT_EQ(h.version, row.versions[ud]) << row.name << " UD " << ud;
      EXPECT_EQ(h.carry_staging(), row.carry[ud]) << row.name << " UD " << ud;
    }
  }
}

// --- Start ------------------------------------------------------------------------------------

TEST_F(UpgradeTest, StartAutoRunsUd0) {
  UpgradeState s = Started();
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_EQ(s.service, "web");
  EXPECT_EQ(s.from_version, "v1");
  EXPECT_EQ(s.to_version, "v2");
  EXPECT_EQ(s.update_domains, 3);
  EXPECT_EQ(s.current_ud, 0);
  EXPECT_TRUE(s.current_ud_started);
  EXPECT_THAT(s.upgraded_uds, IsEmpty());
  EXPECT_EQ(s.started_at_unix_ms, now_);
  EXPECT_EQ(s.updated_at_unix_ms, now_);
  EXPECT_THAT(s.message, AllOf(HasSubstr("v1 to v2"), HasSubstr("UD 0")));
  EXPECT_EQ(NextAction(s), (UpgradeAction{UpgradeActionKind::kUpgradeUd, 0, "upgrade UD 0 to v2"}));
}

TEST_F(UpgradeTest, StartManualWaitsForTheOperatorBeforeUd0) {
  UpgradeState s = Started(UpgradeMode::kManual);
  EXPECT_EQ(s.state, Phase::kWaitingForOperator);
  EXPECT_EQ(s.mode, UpgradeMode::kManual);
  EXPECT_FALSE(s.current_ud_started);
  UpgradeAction a = NextAction(s);
  EXPECT_EQ(a.kind, UpgradeActionKind::kNone);
  EXPECT_THAT(a.reason, HasSubstr("next-ud web"));
}

TEST_F(UpgradeTest, StartDuringHealingStartsPreemptedAndBeginsWhenHealingEnds) {
  UpgradeState s = Started(UpgradeMode::kAuto, 3, {"web-2", "web-4"});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_EQ(s.resume_to, Phase::kRunning);
  EXPECT_FALSE(s.current_ud_started);
  EXPECT_THAT(s.healing_in_progress, UnorderedElementsAre("web-2", "web-4"));
  EXPECT_THAT(s.message, AllOf(HasSubstr("preempted"), HasSubstr("web-2, web-4")));
  EXPECT_EQ(NextAction(s).kind, UpgradeActionKind::kNone);
  // UD 0 cannot be reported done before it began.
  Status early = Refused(s, ev::UdInstancesUpgraded{0}, Code::kFailedPrecondition);
  EXPECT_THAT(early.message(), HasSubstr("has not begun"));
  s = Must(s, ev::HealingDone{"web-2"});
  EXPECT_EQ(s.state, Phase::kPreempted);
  s = Must(s, ev::HealingDone{"web-4"});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_FALSE(s.resume_to.has_value());
  EXPECT_TRUE(s.current_ud_started);
  EXPECT_EQ(NextAction(s).kind, UpgradeActionKind::kUpgradeUd);
  EXPECT_EQ(NextAction(s).ud, 0);
}

TEST_F(UpgradeTest, StartDuringHealingInManualModeWaitsAndShowsHealing) {
  UpgradeState s = Started(UpgradeMode::kManual, 3, {"web-1"});
  EXPECT_EQ(s.state, Phase::kWaitingForOperator);
  EXPECT_THAT(s.healing_in_progress, ElementsAre("web-1"));
  EXPECT_THAT(s.message, HasSubstr("healing in progress: web-1"));
  Status blocked = Refused(s, ev::NextUd{}, Code::kFailedPrecondition);
  EXPECT_THAT(blocked.message(), HasSubstr("web-1"));
}

TEST_F(UpgradeTest, StartRefusesBadArguments) {
  auto bad = [&](ev::Start e, const std::string& needle) {
    Status st = Refused(UpgradeState{}, e, Code::kInvalidArgument);
    EXPECT_THAT(st.message(), HasSubstr(needle));
  };
  ev::Start e = StartEvent();
  e.service = "Web_1";
  bad(e, "service");
  e = StartEvent();
  e.to_version = "v1";
  bad(e, "already runs");
  e = StartEvent();
  e.to_version = "";
  bad(e, "to_version");
  e = StartEvent();
  e.from_version = "bad version";
  bad(e, "from_version");
  e = StartEvent();
  e.update_domains = 0;
  bad(e, "update_domains");
  e = StartEvent();
  e.healing_in_progress = {"BAD NAME"};
  bad(e, "instance being healed");
}

TEST_F(UpgradeTest, StartRefusedWhileAnUpgradeIsActive) {
  UpgradeState s = RunningAtUd1();
  Status st = Refused(s, StartEvent(), Code::kFailedPrecondition);
  EXPECT_THAT(st.message(), AllOf(HasSubstr("service web"), HasSubstr("running"), HasSubstr("UD 1"),
                                  HasSubstr("in progress")));
  policy_.max_failed_health_checks = 1;
  UpgradeState failed = Must(s, ev::HealthCheckFailed{"web-0"});
  Status st2 = Refused(failed, StartEvent(), Code::kFailedPrecondition);
  EXPECT_THAT(st2.message(), HasSubstr("rolled back first"));
}

TEST_F(UpgradeTest, StartAfterAnEndedUpgrade) {
  UpgradeState done =
      Must(Must(RunningAtUd1(), ev::UdInstancesUpgraded{1}), ev::UdInstancesUpgraded{2});
  ASSERT_EQ(done.state, Phase::kCompleted);
  ev::Start again{"web", "v2", "v3", UpgradeMode::kManual, 2, {}};
  UpgradeState s = Must(done, again);
  EXPECT_EQ(s.state, Phase::kWaitingForOperator);
  EXPECT_EQ(s.to_version, "v3");
  EXPECT_EQ(s.update_domains, 2);
  EXPECT_THAT(s.upgraded_uds, IsEmpty());
  EXPECT_EQ(s.started_at_unix_ms, now_);

  UpgradeState rolled = Must(Must(Started(), ev::Rollback{}), ev::RolledBackUd{0});
  ASSERT_EQ(rolled.state, Phase::kRolledBack);
  EXPECT_EQ(Must(rolled, StartEvent()).state, Phase::kRunning);

  ev::Start other = StartEvent();
  other.service = "db";
  Status st = Refused(done, other, Code::kInvalidArgument);
  EXPECT_THAT(st.message(), AllOf(HasSubstr("db"), HasSubstr("web")));
}

// --- A full run, in order ---------------------------------------------------------------------

TEST_F(UpgradeTest, AutoUpgradeGoesUdByUdInOrderToCompleted) {
  UpgradeState s = Started();
  for (int64_t ud = 0; ud < 3; ++ud) {
    ASSERT_EQ(s.state, Phase::kRunning);
    ASSERT_EQ(NextAction(s), (UpgradeAction{UpgradeActionKind::kUpgradeUd, ud,
                                            "upgrade UD " + std::to_string(ud) + " to v2"}));
    // Out of order: refused.
    if (ud + 1 < 3) {
      Status st = Refused(s, ev::UdInstancesUpgraded{ud + 1}, Code::kFailedPrecondition);
      EXPECT_THAT(st.message(),
                  AllOf(HasSubstr("service web"), HasSubstr("running"),
                        HasSubstr("UD " + std::to_string(ud + 1)), HasSubstr("in order")));
    }
    s = Must(s, ev::UdInstancesUpgraded{ud});
  }
  EXPECT_EQ(s.state, Phase::kCompleted);
  EXPECT_THAT(s.upgraded_uds, ElementsAre(0, 1, 2));
  EXPECT_EQ(s.current_ud, 2);
  EXPECT_THAT(s.message, HasSubstr("completed"));
  EXPECT_FALSE(IsActive(s));
  UpgradeAction a = NextAction(s);
  EXPECT_EQ(a.kind, UpgradeActionKind::kDone);
  EXPECT_THAT(a.reason, HasSubstr("every UD runs v2"));
  EXPECT_EQ(s.started_at_unix_ms, kT0 + 1);
  EXPECT_EQ(s.updated_at_unix_ms, now_);
}

TEST_F(UpgradeTest, SingleUdUpgradeCompletesAfterUd0) {
  UpgradeState s = Must(Started(UpgradeMode::kAuto, 1), ev::UdInstancesUpgraded{0});
  EXPECT_EQ(s.state, Phase::kCompleted);
}

TEST_F(UpgradeTest, RepeatedUdReportIsANoOp) {
  UpgradeState s = RunningAtUd1();
  auto again = Try(s, ev::UdInstancesUpgraded{0});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, s);  // updated_at unchanged too
  UpgradeState done = Must(Must(s, ev::UdInstancesUpgraded{1}), ev::UdInstancesUpgraded{2});
  auto late = Try(done, ev::UdInstancesUpgraded{2});
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(*late, done);
}

TEST_F(UpgradeTest, UdReportOutOfRangeIsInvalid) {
  UpgradeState s = RunningAtUd1();
  Status st = Refused(s, ev::UdInstancesUpgraded{7}, Code::kInvalidArgument);
  EXPECT_THAT(st.message(), AllOf(HasSubstr("UD 7"), HasSubstr("UDs 0..2")));
  ExpectRefused(s, ev::UdInstancesUpgraded{-1}, Code::kInvalidArgument);
}

// --- Pre-emption by failures ------------------------------------------------------------------

TEST_F(UpgradeTest, FailurePreemptsAndHealingResumesAtTheSameUd) {
  UpgradeState s = RunningAtUd1();
  s = Must(s, ev::InstanceFailed{"web-5", 2});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_EQ(s.resume_to, Phase::kRunning);
  EXPECT_EQ(s.current_ud, 1);
  EXPECT_THAT(s.healing_in_progress, ElementsAre("web-5"));
  EXPECT_THAT(s.message, AllOf(HasSubstr("preempted at UD 1"), HasSubstr("web-5 (UD 2)")));
  UpgradeAction wait = NextAction(s);
  EXPECT_EQ(wait.kind, UpgradeActionKind::kNone);
  EXPECT_THAT(wait.reason, HasSubstr("web-5"));
  s = Must(s, ev::HealingDone{"web-5"});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_EQ(s.current_ud, 1);
  EXPECT_THAT(s.healing_in_progress, IsEmpty());
  EXPECT_THAT(s.message, HasSubstr("resumed"));
  EXPECT_EQ(NextAction(s), (UpgradeAction{UpgradeActionKind::kUpgradeUd, 1, "upgrade UD 1 to v2"}));
}

TEST_F(UpgradeTest, SeveralFailuresHealedIndividuallyResumeOnlyWhenNoneIsLeft) {
  UpgradeState s = RunningAtUd1();
  s = Must(s, ev::InstanceFailed{"web-0", 0});
  s = Must(s, ev::InstanceFailed{"web-4", 1});
  s = Must(s, ev::InstanceFailed{"web-2", 2});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_THAT(s.healing_in_progress, ElementsAre("web-0", "web-2", "web-4"));
  s = Must(s, ev::HealingDone{"web-4"});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_THAT(s.message, HasSubstr("still healing web-0, web-2"));
  EXPECT_EQ(NextAction(s).kind, UpgradeActionKind::kNone);
  s = Must(s, ev::HealingDone{"web-0"});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_THAT(s.healing_in_progress, ElementsAre("web-2"));
  s = Must(s, ev::HealingDone{"web-2"});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_EQ(s.current_ud, 1);
}

TEST_F(UpgradeTest, RepeatedFailureAndUnknownHealingDoneAreNoOps) {
  UpgradeState s = Must(RunningAtUd1(), ev::InstanceFailed{"web-1", 1});
  auto again = Try(s, ev::InstanceFailed{"web-1", 1});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, s);
  auto unknown = Try(s, ev::HealingDone{"web-3"});
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(*unknown, s);
  EXPECT_EQ(unknown->state, Phase::kPreempted);
}

TEST_F(UpgradeTest, FailureRefusesBadInstanceOrUd) {
  UpgradeState s = RunningAtUd1();
  Status name = Refused(s, ev::InstanceFailed{"Web/1", 1}, Code::kInvalidArgument);
  EXPECT_THAT(name.message(), AllOf(HasSubstr("service web"), HasSubstr("instance")));
  Status ud = Refused(s, ev::InstanceFailed{"web-1", 3}, Code::kInvalidArgument);
  EXPECT_THAT(ud.message(), HasSubstr("UD 3 does not exist"));
  ExpectRefused(s, ev::HealingDone{""}, Code::kInvalidArgument);
}

TEST_F(UpgradeTest, WorkUnderWayMayFinishWhilePreempted) {
  UpgradeState s = Must(RunningAtUd1(), ev::InstanceFailed{"web-0", 0});
  s = Must(s, ev::UdInstancesUpgraded{1});  // the last instance of UD 1 was already being created
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_EQ(s.current_ud, 2);
  EXPECT_FALSE(s.current_ud_started);
  EXPECT_THAT(s.upgraded_uds, ElementsAre(0, 1));
  EXPECT_THAT(s.message, HasSubstr("UD 2 starts when healing of web-0 ends"));
  EXPECT_EQ(NextAction(s).kind, UpgradeActionKind::kNone);
  // UD 2 has not begun: a failure there is healed with the old version.
  EXPECT_EQ(Heal(2, &s).version, "v1");
  s = Must(s, ev::HealingDone{"web-0"});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_TRUE(s.current_ud_started);
  EXPECT_EQ(NextAction(s).ud, 2);
}

TEST_F(UpgradeTest, LastUdFinishingWhilePreemptedCompletes) {
  UpgradeState s =
      Must(Must(RunningAtUd1(), ev::UdInstancesUpgraded{1}), ev::InstanceFailed{"web-3", 0});
  s = Must(s, ev::UdInstancesUpgraded{2});
  EXPECT_EQ(s.state, Phase::kCompleted);
  EXPECT_FALSE(s.resume_to.has_value());
  EXPECT_THAT(s.healing_in_progress, ElementsAre("web-3"));  // still shown until healed
  s = Must(s, ev::HealingDone{"web-3"});
  EXPECT_EQ(s.state, Phase::kCompleted);
  EXPECT_THAT(s.healing_in_progress, IsEmpty());
}

TEST_F(UpgradeTest, FailureAfterTheUpgradeEndedIsRefused) {
  UpgradeState s =
      Must(Must(RunningAtUd1(), ev::UdInstancesUpgraded{1}), ev::UdInstancesUpgraded{2});
  Status st = Refused(s, ev::InstanceFailed{"web-1", 1}, Code::kFailedPrecondition);
  EXPECT_THAT(st.message(), AllOf(HasSubstr("completed"), HasSubstr("web-1")));
}

// --- Manual mode ------------------------------------------------------------------------------

TEST_F(UpgradeTest, ManualModeStepsEveryUdAndCompletesWithoutWaitingAfterTheLast) {
  UpgradeState s = Started(UpgradeMode::kManual);
  for (int64_t ud = 0; ud < 3; ++ud) {
    ASSERT_EQ(s.state, Phase::kWaitingForOperator);
    ASSERT_EQ(s.current_ud, ud);
    s = Must(s, ev::NextUd{});
    ASSERT_EQ(s.state, Phase::kRunning);
    EXPECT_THAT(s.message, HasSubstr("UD " + std::to_string(ud) + " started by the operator"));
    EXPECT_EQ(NextAction(s).ud, ud);
    s = Must(s, ev::UdInstancesUpgraded{ud});
  }
  EXPECT_EQ(s.state, Phase::kCompleted);
}

TEST_F(UpgradeTest, ManualNextUdBlockedWhileHealingNamesTheInstances) {
  UpgradeState s = ManualWaitingAtUd1();
  s = Must(s, ev::InstanceFailed{"web-4", 1});
  s = Must(s, ev::InstanceFailed{"web-2", 2});
  EXPECT_EQ(s.state, Phase::kWaitingForOperator);  // nothing automatic to pre-empt
  EXPECT_THAT(s.healing_in_progress, ElementsAre("web-2", "web-4"));
  UpgradeState before = s;
  Status st = Refused(s, ev::NextUd{}, Code::kFailedPrecondition);
  EXPECT_THAT(st.message(),
              AllOf(HasSubstr("service web"), HasSubstr("waiting_for_operator"), HasSubstr("UD 1"),
                    HasSubstr("web-2, web-4"), HasSubstr("policy block"), HasSubstr("--force")));
  EXPECT_EQ(s, before);
  // Once healing ends the step goes through without force.
  s = Must(Must(s, ev::HealingDone{"web-4"}), ev::HealingDone{"web-2"});
  EXPECT_EQ(s.state, Phase::kWaitingForOperator);
  s = Must(s, ev::NextUd{});
  EXPECT_EQ(s.state, Phase::kRunning);
}

TEST_F(UpgradeTest, ManualNextUdWithForceProceedsWhileHealing) {
  UpgradeState s = Must(ManualWaitingAtUd1(), ev::InstanceFailed{"web-4", 1});
  s = Must(s, ev::NextUd{.force = true});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_TRUE(s.current_ud_started);
  EXPECT_THAT(s.healing_in_progress, ElementsAre("web-4"));  // still visible
  EXPECT_THAT(s.message, AllOf(HasSubstr("--force"), HasSubstr("web-4")));
  EXPECT_EQ(NextAction(s), (UpgradeAction{UpgradeActionKind::kUpgradeUd, 1, "upgrade UD 1 to v2"}));
  s = Must(s, ev::HealingDone{"web-4"});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_THAT(s.healing_in_progress, IsEmpty());
}

TEST_F(UpgradeTest, ManualNextUdWithPolicyAllowProceedsAndShowsHealing) {
  policy_.manual_policy = ManualStepPolicy::kAllow;
  UpgradeState s = Must(ManualWaitingAtUd1(), ev::InstanceFailed{"web-2", 2});
  s = Must(s, ev::NextUd{});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_THAT(s.healing_in_progress, ElementsAre("web-2"));
  EXPECT_THAT(s.message, AllOf(HasSubstr("policy allow"), HasSubstr("web-2")));
  EXPECT_EQ(UpgradeStateToJson(s)["healing_in_progress"], nlohmann::json::array({"web-2"}));
  // A UD finished while healing runs: the next one waits for the operator, healing shown.
  s = Must(s, ev::UdInstancesUpgraded{1});
  EXPECT_EQ(s.state, Phase::kWaitingForOperator);
  EXPECT_EQ(s.current_ud, 2);
  EXPECT_THAT(s.message, HasSubstr("healing in progress: web-2"));
}

TEST_F(UpgradeTest, ManualAllowedStepIsPreemptedByANewFailureUntilAllHealingEnds) {
  policy_.manual_policy = ManualStepPolicy::kAllow;
  UpgradeState s = Must(ManualWaitingAtUd1(), ev::InstanceFailed{"web-2", 2});
  s = Must(s, ev::NextUd{});
  s = Must(s, ev::InstanceFailed{"web-1", 1});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_EQ(s.resume_to, Phase::kRunning);
  s = Must(s, ev::HealingDone{"web-1"});
  EXPECT_EQ(s.state, Phase::kPreempted);  // web-2 is still being healed
  s = Must(s, ev::HealingDone{"web-2"});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_EQ(s.current_ud, 1);
}

TEST_F(UpgradeTest, ManualUdFinishingWhilePreemptedWaitsForTheOperator) {
  UpgradeState s = Must(ManualWaitingAtUd1(), ev::NextUd{});
  s = Must(s, ev::InstanceFailed{"web-0", 0});
  ASSERT_EQ(s.state, Phase::kPreempted);
  s = Must(s, ev::UdInstancesUpgraded{1});
  EXPECT_EQ(s.state, Phase::kWaitingForOperator);
  EXPECT_FALSE(s.resume_to.has_value());
  EXPECT_EQ(s.current_ud, 2);
  EXPECT_THAT(s.healing_in_progress, ElementsAre("web-0"));
}

TEST_F(UpgradeTest, NextUdRefusedOutsideItsPlace) {
  Status auto_mode = Refused(RunningAtUd1(), ev::NextUd{}, Code::kFailedPrecondition);
  EXPECT_THAT(auto_mode.message(), AllOf(HasSubstr("mode auto"), HasSubstr("manual mode")));
  UpgradeState running = Must(ManualWaitingAtUd1(), ev::NextUd{});
  Status busy = Refused(running, ev::NextUd{.force = true}, Code::kFailedPrecondition);
  EXPECT_THAT(busy.message(), HasSubstr("UD 1 is still being upgraded"));
  Status preempted = Refused(Must(running, ev::InstanceFailed{"web-0", 0}),
                             ev::NextUd{.force = true}, Code::kFailedPrecondition);
  EXPECT_THAT(preempted.message(), HasSubstr("still being upgraded (preempted)"));
  Status paused =
      Refused(Must(ManualWaitingAtUd1(), ev::Pause{}), ev::NextUd{}, Code::kFailedPrecondition);
  EXPECT_THAT(paused.message(), HasSubstr("resume it first"));
}

// --- Pause and resume -------------------------------------------------------------------------

TEST_F(UpgradeTest, PauseAndResumeRunning) {
  UpgradeState s = Must(RunningAtUd1(), ev::Pause{});
  EXPECT_EQ(s.state, Phase::kPaused);
  EXPECT_EQ(s.resume_to, Phase::kRunning);
  UpgradeAction a = NextAction(s);
  EXPECT_EQ(a.kind, UpgradeActionKind::kNone);
  EXPECT_THAT(a.reason, HasSubstr("resume web"));
  auto twice = Try(s, ev::Pause{});
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(*twice, s);
  s = Must(s, ev::Resume{});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_EQ(s.current_ud, 1);
  auto again = Try(s, ev::Resume{});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, s);
}

TEST_F(UpgradeTest, UdFinishingWhilePausedStaysPausedBeforeTheNext) {
  UpgradeState s = Must(Must(RunningAtUd1(), ev::Pause{}), ev::UdInstancesUpgraded{1});
  EXPECT_EQ(s.state, Phase::kPaused);
  EXPECT_EQ(s.current_ud, 2);
  EXPECT_FALSE(s.current_ud_started);
  EXPECT_EQ(Heal(2, &s).version, "v1");
  s = Must(s, ev::Resume{});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_TRUE(s.current_ud_started);
}

TEST_F(UpgradeTest, PausePreemptedThenHealingEndsStaysPaused) {
  UpgradeState s = Must(Must(RunningAtUd1(), ev::InstanceFailed{"web-1", 1}), ev::Pause{});
  EXPECT_EQ(s.state, Phase::kPaused);
  EXPECT_EQ(s.resume_to, Phase::kRunning);
  s = Must(s, ev::HealingDone{"web-1"});
  EXPECT_EQ(s.state, Phase::kPaused);
  EXPECT_EQ(NextAction(s).kind, UpgradeActionKind::kNone);
  s = Must(s, ev::Resume{});
  EXPECT_EQ(s.state, Phase::kRunning);
}

TEST_F(UpgradeTest, ResumeWhileHealingRemainsIsPreempted) {
  UpgradeState s = Must(Must(RunningAtUd1(), ev::Pause{}), ev::InstanceFailed{"web-2", 2});
  EXPECT_EQ(s.state, Phase::kPaused);  // a failure while paused only records the healing
  EXPECT_THAT(s.healing_in_progress, ElementsAre("web-2"));
  s = Must(s, ev::Resume{});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_EQ(s.resume_to, Phase::kRunning);
  EXPECT_EQ(Must(s, ev::HealingDone{"web-2"}).state, Phase::kRunning);
}

TEST_F(UpgradeTest, ResumeWhilePreemptedIsRefusedNamingTheHealing) {
  UpgradeState s = Must(RunningAtUd1(), ev::InstanceFailed{"web-2", 2});
  Status st = Refused(s, ev::Resume{}, Code::kFailedPrecondition);
  EXPECT_THAT(st.message(),
              AllOf(HasSubstr("preempted"), HasSubstr("web-2"), HasSubstr("resumes by itself")));
}

TEST_F(UpgradeTest, PauseWaitingAndRollingBack) {
  UpgradeState w = Must(ManualWaitingAtUd1(), ev::Pause{});
  EXPECT_EQ(w.resume_to, Phase::kWaitingForOperator);
  EXPECT_EQ(Must(w, ev::Resume{}).state, Phase::kWaitingForOperator);
  UpgradeState r = Must(Must(RunningAtUd1(), ev::Rollback{}), ev::Pause{});
  EXPECT_EQ(r.state, Phase::kPaused);
  EXPECT_EQ(r.resume_to, Phase::kRollingBack);
  EXPECT_EQ(NextAction(r).kind, UpgradeActionKind::kNone);
  r = Must(r, ev::Resume{});
  EXPECT_EQ(r.state, Phase::kRollingBack);
  EXPECT_EQ(NextAction(r).kind, UpgradeActionKind::kRollBackUd);
}

TEST_F(UpgradeTest, PauseAndResumeRefusedWhenOverOrFailed) {
  UpgradeState done =
      Must(Must(RunningAtUd1(), ev::UdInstancesUpgraded{1}), ev::UdInstancesUpgraded{2});
  Status p = Refused(done, ev::Pause{}, Code::kFailedPrecondition);
  EXPECT_THAT(p.message(), AllOf(HasSubstr("service web"), HasSubstr("completed")));
  ExpectRefused(done, ev::Resume{}, Code::kFailedPrecondition);
  policy_.max_failed_health_checks = 1;
  UpgradeState failed = Must(RunningAtUd1(), ev::HealthCheckFailed{"web-0"});
  ExpectRefused(failed, ev::Pause{}, Code::kFailedPrecondition);
  Status r = Refused(failed, ev::Resume{}, Code::kFailedPrecondition);
  EXPECT_THAT(r.message(), HasSubstr("roll it back"));
}

// --- Health checks ----------------------------------------------------------------------------

TEST_F(UpgradeTest, HealthCheckFailuresUpToMaxFailedStopTheUpgrade) {
  policy_.max_failed_health_checks = 3;
  UpgradeState s = RunningAtUd1();
  s = Must(s, ev::HealthCheckFailed{"web-1"});
  s = Must(s, ev::HealthCheckFailed{"web-4"});
  s = Must(s, ev::HealthCheckFailed{"web-1"});
  EXPECT_EQ(s.state, Phase::kRunning);
  EXPECT_EQ(s.failed_health_checks, (std::map<std::string, int64_t>{{"web-1", 2}, {"web-4", 1}}));
  EXPECT_THAT(s.message, HasSubstr("2 of max_failed 3"));
  s = Must(s, ev::HealthCheckFailed{"web-1"});
  EXPECT_EQ(s.state, Phase::kFailed);
  EXPECT_THAT(s.message, AllOf(HasSubstr("web-1"), HasSubstr("3 of max_failed 3"),
                               HasSubstr("failed at UD 1"), HasSubstr("rollback web")));
  UpgradeAction a = NextAction(s);
  EXPECT_EQ(a.kind, UpgradeActionKind::kNone);
  EXPECT_THAT(a.reason, HasSubstr("rollback"));
  EXPECT_TRUE(IsActive(s));
  // Failed: further failures only count; work reports are refused.
  s = Must(s, ev::HealthCheckFailed{"web-1"});
  EXPECT_EQ(s.state, Phase::kFailed);
  EXPECT_EQ(s.failed_health_checks.at("web-1"), 4);
  ExpectRefused(s, ev::UdInstancesUpgraded{1}, Code::kFailedPrecondition);
}

TEST_F(UpgradeTest, HealthCheckFailureWhilePreemptedOrWaitingFails) {
  policy_.max_failed_health_checks = 1;
  UpgradeState pre = Must(RunningAtUd1(), ev::InstanceFailed{"web-2", 2});
  UpgradeState failed = Must(pre, ev::HealthCheckFailed{"web-0"});
  EXPECT_EQ(failed.state, Phase::kFailed);
  EXPECT_FALSE(failed.resume_to.has_value());
  EXPECT_THAT(failed.healing_in_progress, ElementsAre("web-2"));
  EXPECT_EQ(Must(ManualWaitingAtUd1(), ev::HealthCheckFailed{"web-0"}).state, Phase::kFailed);
}

TEST_F(UpgradeTest, HealthCheckFailureWithAutoRollbackRollsBackIncludingThePartialUd) {
  policy_.max_failed_health_checks = 2;
  policy_.auto_rollback = true;
  UpgradeState s = Must(RunningAtUd1(), ev::HealthCheckFailed{"web-4"});
  EXPECT_EQ(s.state, Phase::kRunning);
  s = Must(s, ev::HealthCheckFailed{"web-4"});
  EXPECT_EQ(s.state, Phase::kRollingBack);
  EXPECT_EQ(s.current_ud, 1);  // UD 1 had begun: it holds v2 instances
  EXPECT_THAT(s.upgraded_uds, ElementsAre(0, 1));
  EXPECT_THAT(s.message, AllOf(HasSubstr("auto_rollback"), HasSubstr("UDs 1, 0 to v1")));
  EXPECT_EQ(NextAction(s),
            (UpgradeAction{UpgradeActionKind::kRollBackUd, 1, "roll back UD 1 to v1"}));
}

TEST_F(UpgradeTest, AutoRollbackWhilePausedStaysPaused) {
  policy_.max_failed_health_checks = 1;
  policy_.auto_rollback = true;
  UpgradeState s = Must(Must(RunningAtUd1(), ev::Pause{}), ev::HealthCheckFailed{"web-0"});
  EXPECT_EQ(s.state, Phase::kPaused);
  EXPECT_EQ(s.resume_to, Phase::kRollingBack);
  EXPECT_EQ(s.current_ud, 1);
  EXPECT_EQ(NextAction(s).kind, UpgradeActionKind::kNone);
  EXPECT_EQ(Must(s, ev::Resume{}).state, Phase::kRollingBack);
}

TEST_F(UpgradeTest, AutoRollbackWhileHealingIsPreempted) {
  policy_.max_failed_health_checks = 1;
  policy_.auto_rollback = true;
  UpgradeState s =
      Must(Must(RunningAtUd1(), ev::InstanceFailed{"web-5", 2}), ev::HealthCheckFailed{"web-0"});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_EQ(s.resume_to, Phase::kRollingBack);
  s = Must(s, ev::HealingDone{"web-5"});
  EXPECT_EQ(s.state, Phase::kRollingBack);
}

TEST_F(UpgradeTest, HealthCheckFailureWhileRollingBackOnlyCounts) {
  policy_.max_failed_health_checks = 1;
  UpgradeState s = Must(Must(RunningAtUd1(), ev::Rollback{}), ev::HealthCheckFailed{"web-3"});
  EXPECT_EQ(s.state, Phase::kRollingBack);
  EXPECT_EQ(s.failed_health_checks.at("web-3"), 1);
}

TEST_F(UpgradeTest, HealthCheckRefusals) {
  UpgradeState done = Must(Started(UpgradeMode::kAuto, 1), ev::UdInstancesUpgraded{0});
  ExpectRefused(done, ev::HealthCheckFailed{"web-0"}, Code::kFailedPrecondition);
  policy_.max_failed_health_checks = 0;
  Status st = Refused(RunningAtUd1(), ev::HealthCheckFailed{"web-0"}, Code::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("max_failed"));
  policy_.max_failed_health_checks = 3;
  ExpectRefused(RunningAtUd1(), ev::HealthCheckFailed{"-bad"}, Code::kInvalidArgument);
}

// --- Rollback ---------------------------------------------------------------------------------

TEST_F(UpgradeTest, RollbackGoesUdByUdInReverse) {
  UpgradeState s = Must(Must(RunningAtUd1(), ev::UdInstancesUpgraded{1}), ev::Rollback{});
  // UD 2 had begun (running): it is rolled back first.
  EXPECT_EQ(s.state, Phase::kRollingBack);
  EXPECT_EQ(s.current_ud, 2);
  EXPECT_THAT(s.upgraded_uds, ElementsAre(0, 1, 2));
  EXPECT_THAT(s.message, HasSubstr("UDs 2, 1, 0 to v1"));
  std::vector<int64_t> order;
  while (NextAction(s).kind == UpgradeActionKind::kRollBackUd) {
    int64_t ud = NextAction(s).ud;
    order.push_back(ud);
    if (ud > 0) {
      Status st = Refused(s, ev::RolledBackUd{ud - 1}, Code::kFailedPrecondition);
      EXPECT_THAT(st.message(),
                  AllOf(HasSubstr("rolling_back"), HasSubstr("UD " + std::to_string(ud - 1)),
                        HasSubstr("highest first")));
    }
    s = Must(s, ev::RolledBackUd{ud});
    ASSERT_LT(order.size(), 10u);
  }
  EXPECT_THAT(order, ElementsAre(2, 1, 0));
  EXPECT_EQ(s.state, Phase::kRolledBack);
  EXPECT_THAT(s.upgraded_uds, IsEmpty());
  EXPECT_EQ(NextAction(s).kind, UpgradeActionKind::kDone);
  EXPECT_THAT(NextAction(s).reason, HasSubstr("every UD runs v1"));
  EXPECT_FALSE(IsActive(s));
  // Repeats: no-ops.
  auto again = Try(s, ev::RolledBackUd{0});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, s);
  auto rollback_again = Try(s, ev::Rollback{});
  ASSERT_TRUE(rollback_again.ok());
  EXPECT_EQ(*rollback_again, s);
}

TEST_F(UpgradeTest, RollbackOfAFailedUpgrade) {
  policy_.max_failed_health_checks = 1;
  UpgradeState s = Must(Must(RunningAtUd1(), ev::HealthCheckFailed{"web-1"}), ev::Rollback{});
  EXPECT_EQ(s.state, Phase::kRollingBack);
  EXPECT_EQ(s.current_ud, 1);
  s = Must(Must(s, ev::RolledBackUd{1}), ev::RolledBackUd{0});
  EXPECT_EQ(s.state, Phase::kRolledBack);
}

TEST_F(UpgradeTest, RollbackWhileWaitingSkipsTheUdNotStarted) {
  UpgradeState s = Must(ManualWaitingAtUd1(), ev::Rollback{});
  EXPECT_EQ(s.state, Phase::kRollingBack);
  EXPECT_EQ(s.current_ud, 0);
  EXPECT_THAT(s.upgraded_uds, ElementsAre(0));
  EXPECT_EQ(Must(s, ev::RolledBackUd{0}).state, Phase::kRolledBack);
}

TEST_F(UpgradeTest, RollbackWithNothingUpgradedEndsAtOnce) {
  UpgradeState s = Must(Started(UpgradeMode::kAuto, 3, {"web-0"}), ev::Rollback{});
  EXPECT_EQ(s.state, Phase::kRolledBack);
  EXPECT_THAT(s.message, HasSubstr("no UD had been upgraded"));
  EXPECT_EQ(Must(Started(UpgradeMode::kManual), ev::Rollback{}).state, Phase::kRolledBack);
}

TEST_F(UpgradeTest, RollbackWhileHealingIsPreemptedAndResumesByItself) {
  UpgradeState s = Must(Must(RunningAtUd1(), ev::InstanceFailed{"web-2", 2}), ev::Rollback{});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_EQ(s.resume_to, Phase::kRollingBack);
  EXPECT_EQ(s.current_ud, 1);
  EXPECT_THAT(s.message, HasSubstr("preempted"));
  EXPECT_EQ(NextAction(s).kind, UpgradeActionKind::kNone);
  // Work under way may finish while pre-empted.
  s = Must(s, ev::RolledBackUd{1});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_EQ(s.current_ud, 0);
  s = Must(s, ev::HealingDone{"web-2"});
  EXPECT_EQ(s.state, Phase::kRollingBack);
  EXPECT_EQ(NextAction(s),
            (UpgradeAction{UpgradeActionKind::kRollBackUd, 0, "roll back UD 0 to v1"}));
}

TEST_F(UpgradeTest, FailureDuringRollbackPreemptsIt) {
  UpgradeState s = Must(Must(RunningAtUd1(), ev::Rollback{}), ev::InstanceFailed{"web-3", 0});
  EXPECT_EQ(s.state, Phase::kPreempted);
  EXPECT_EQ(s.resume_to, Phase::kRollingBack);
  ExpectRefused(s, ev::NextUd{}, Code::kFailedPrecondition);
  s = Must(s, ev::HealingDone{"web-3"});
  EXPECT_EQ(s.state, Phase::kRollingBack);
  EXPECT_EQ(s.current_ud, 1);
}

TEST_F(UpgradeTest, RollbackUnpausesAPausedUpgrade) {
  UpgradeState s = Must(Must(RunningAtUd1(), ev::Pause{}), ev::Rollback{});
  EXPECT_EQ(s.state, Phase::kRollingBack);
  EXPECT_FALSE(s.resume_to.has_value());
}

TEST_F(UpgradeTest, RollbackRefusedOnceCompleted) {
  UpgradeState done = Must(Started(UpgradeMode::kAuto, 1), ev::UdInstancesUpgraded{0});
  Status st = Refused(done, ev::Rollback{}, Code::kFailedPrecondition);
  EXPECT_THAT(st.message(), AllOf(HasSubstr("service web"), HasSubstr("completed"),
                                  HasSubstr("--to-version v1")));
}

TEST_F(UpgradeTest, RolledBackUdRefusedWithoutARollbackAndNoOpForDoneUds) {
  Status st = Refused(RunningAtUd1(), ev::RolledBackUd{0}, Code::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("no rollback is in progress"));
  UpgradeState s = Must(Must(Must(RunningAtUd1(), ev::UdInstancesUpgraded{1}), ev::Rollback{}),
                        ev::RolledBackUd{2});
  auto late = Try(s, ev::RolledBackUd{2});
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(*late, s);
  ExpectRefused(s, ev::RolledBackUd{3}, Code::kInvalidArgument);
  ExpectRefused(s, ev::UdInstancesUpgraded{1}, Code::kFailedPrecondition);
}

// --- General refusals -------------------------------------------------------------------------

TEST_F(UpgradeTest, EventsWithoutAnUpgradeAreRefused) {
  std::vector<UpgradeEventKind> events = {ev::InstanceFailed{"web-0", 0},
                                          ev::HealingDone{"web-0"},
                                          ev::UdInstancesUpgraded{0},
                                          ev::HealthCheckFailed{"web-0"},
                                          ev::Pause{},
                                          ev::Resume{},
                                          ev::NextUd{},
                                          ev::Rollback{},
                                          ev::RolledBackUd{0}};
  for (const auto& e : events) {
    Status st = Refused(UpgradeState{}, e, Code::kFailedPrecondition);
    EXPECT_THAT(st.message(), HasSubstr("no upgrade has been started"));
  }
}

TEST_F(UpgradeTest, RefusalsLeaveTheStateUnchangedAndNameServiceStateAndUd) {
  UpgradeState s = RunningAtUd1();
  const UpgradeState copy = s;
  Status st = Refused(s, ev::UdInstancesUpgraded{2}, Code::kFailedPrecondition);
  EXPECT_EQ(s, copy);
  EXPECT_THAT(st.message(),
              AllOf(HasSubstr("upgrade of service web"), HasSubstr("v1 -> v2"),
                    HasSubstr("is running at UD 1"), HasSubstr("ud-upgraded refused")));
}

TEST_F(UpgradeTest, AnInvalidInputStateIsRefused) {
  UpgradeState s = RunningAtUd1();
  s.state = Phase::kPreempted;  // no resume_to, no healing
  Status st = Refused(s, ev::Pause{}, Code::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("resume_to"));
  UpgradeState bad_ud = RunningAtUd1();
  bad_ud.upgraded_uds = {1};
  ExpectRefused(bad_ud, ev::UdInstancesUpgraded{1}, Code::kInvalidArgument);
}

TEST_F(UpgradeTest, NegativeEventTimeIsInvalid) {
  auto r = Apply(RunningAtUd1(), UpgradeEvent{ev::Pause{}, -5}, policy_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST_F(UpgradeTest, AcceptedEventsSetUpdatedAtAndKeepStartedAt) {
  UpgradeState s = Started();
  int64_t started = s.started_at_unix_ms;
  auto r = Apply(s, UpgradeEvent{ev::Pause{}, started + 5000}, policy_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->started_at_unix_ms, started);
  EXPECT_EQ(r->updated_at_unix_ms, started + 5000);
}

// --- Randomized: a simulated orchestrator -----------------------------------------------------

// Six instances web-0..web-5 in 3 UDs (UD = index mod 3). The simulation follows NextAction,
// upgrades (or rolls back) one instance per step, fails random instances and heals them with
// VersionForHealing's answer, finishes work under way while pre-empted, and in manual mode steps
// UDs with force. It checks after every step that instances in finished UDs run the target
// version and instances in UDs not reached yet run the other one, and that the run ends with
// every instance on to_version (or from_version after a rollback) and nothing left to heal.
struct SimInstance {
  int64_t ud = 0;
  std::string version = "v1";
  bool healing = false;
  std::string heal_to;
};

struct SimParams {
  uint32_t seed = 0;
  UpgradeMode mode = UpgradeMode::kAuto;
  bool rollback = false;
};

void PrintTo(const SimParams& p, std::ostream* os) {
  *os << "seed " << p.seed << " mode " << UpgradeModeName(p.mode)
      << (p.rollback ? " with rollback" : "");
}

class UpgradeSimulationTest : public ::testing::TestWithParam<SimParams> {};

TEST_P(UpgradeSimulationTest, EndsConsistentWithTheTable) {
  const SimParams p = GetParam();
  std::mt19937 rng(p.seed);
  auto chance = [&rng](int percent) {
    return std::uniform_int_distribution<int>(0, 99)(rng) < percent;
  };
  UpgradePolicy policy;
  policy.manual_policy = ManualStepPolicy::kBlock;
  int64_t now = kT0;
  std::vector<SimInstance> inst(6);
  for (int i = 0; i < 6; ++i) inst[i].ud = i % 3;
  auto name = [](size_t i) { return "web-" + std::to_string(i); };
  UpgradeState s;
  auto apply = [&](UpgradeEventKind what) {
    auto r = Apply(s, UpgradeEvent{std::move(what), ++now}, policy);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (r.ok()) s = *r;
    return r.ok();
  };
  std::set<std::string> healing_at_start;
  if (chance(50)) {
    inst[4].healing = true;
    inst[4].heal_to = "v1";  // healed before the upgrade existed: the service's version
    healing_at_start.insert(name(4));
  }
  ASSERT_TRUE(apply(ev::Start{"web", "v1", "v2", p.mode, 3, healing_at_start}));
  bool rolled = false;
  int failures = 0;
  for (int step = 0; step < 2000; ++step) {
    const bool inject = step < 300;
    if (p.rollback && !rolled && step == 4) {
      ASSERT_TRUE(apply(ev::Rollback{}));
      rolled = true;
    }
    const bool back = s.state == Phase::kRollingBack || s.state == Phase::kRolledBack ||
                      s.resume_to == Phase::kRollingBack;
    // Consistency with the table, for instances not being healed.
    for (size_t i = 0; i < inst.size(); ++i) {
      if (inst[i].healing || !IsActive(s)) continue;
      int64_t ud = inst[i].ud;
      if (back) {
        if (ud > s.current_ud || !s.upgraded_uds.contains(ud)) {
          ASSERT_EQ(inst[i].version, "v1") << name(i) << " step " << step;
        } else if (ud < s.current_ud) {
          ASSERT_EQ(inst[i].version, "v2") << name(i) << " step " << step;
        }
      } else {
        if (s.upgraded_uds.contains(ud)) {
          ASSERT_EQ(inst[i].version, "v2") << name(i) << " step " << step;
        } else if (ud > s.current_ud || (ud == s.current_ud && !s.current_ud_started)) {
          ASSERT_EQ(inst[i].version, "v1") << name(i) << " step " << step;
        }
      }
    }
    if (inject && IsActive(s) && (step == 2 || chance(12))) {
      size_t i = step == 2 ? p.seed % 4  // never web-4, which may be healing since the start

                           : std::uniform_int_distribution<size_t>(0, inst.size() - 1)(rng);
      if (!inst[i].healing) {
        auto h = VersionForHealing(inst[i].ud, &s, "v1");
        ASSERT_TRUE(h.ok()) << h.status().ToString();
        inst[i].healing = true;
        inst[i].heal_to = h->version;
        ASSERT_TRUE(apply(ev::InstanceFailed{name(i), inst[i].ud}));
        ++failures;
        continue;
      }
    }
    std::vector<size_t> healing;
    for (size_t i = 0; i < inst.size(); ++i) {
      if (inst[i].healing) healing.push_back(i);
    }
    if (!healing.empty() && (chance(30) || !inject)) {
      size_t i = healing[std::uniform_int_distribution<size_t>(0, healing.size() - 1)(rng)];
      inst[i].healing = false;
      inst[i].version = inst[i].heal_to;
      ASSERT_TRUE(apply(ev::HealingDone{name(i)}));
      continue;
    }
    // The orchestrator: work on the current UD while running / rolling back, and sometimes let
    // the work under way finish while pre-empted.
    Phase base = s.resume_to && s.state == Phase::kPreempted ? *s.resume_to : s.state;
    bool working = s.state == Phase::kRunning || s.state == Phase::kRollingBack ||
                   (s.state == Phase::kPreempted && chance(20));
    if (s.state == Phase::kWaitingForOperator) {
      bool force = chance(50);
      if (force || s.healing_in_progress.empty()) {
        ASSERT_TRUE(apply(ev::NextUd{.force = force}));
      } else {
        auto r = Apply(s, UpgradeEvent{ev::NextUd{}, ++now}, policy);
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
      }
      continue;
    }
    if (!working) continue;
    if (base == Phase::kRunning && !s.current_ud_started) continue;
    const std::string target = base == Phase::kRollingBack ? "v1" : "v2";
    bool all = true;
    bool moved = false;
    for (auto& in : inst) {
      if (in.ud != s.current_ud) continue;
      if (in.healing || in.version != target) all = false;
      if (!moved && !in.healing && in.version != target) {
        in.version = target;
        moved = true;
      }
    }
    if (all) {
      if (base == Phase::kRollingBack) {
        ASSERT_TRUE(apply(ev::RolledBackUd{s.current_ud}));
      } else {
        ASSERT_TRUE(apply(ev::UdInstancesUpgraded{s.current_ud}));
      }
    }
    if (!IsActive(s) && !inject) break;
  }
  ASSERT_FALSE(IsActive(s)) << DescribeUpgrade(s) << " " << s.message;
  EXPECT_EQ(s.state, p.rollback ? Phase::kRolledBack : Phase::kCompleted);
  // Healing started before the end finishes afterwards: apply the last ones.
  for (size_t i = 0; i < inst.size(); ++i) {
    if (!inst[i].healing) continue;
    inst[i].healing = false;
    inst[i].version = inst[i].heal_to;
    ASSERT_TRUE(apply(ev::HealingDone{name(i)}));
  }
  EXPECT_THAT(s.healing_in_progress, IsEmpty());
  for (size_t i = 0; i < inst.size(); ++i) {
    EXPECT_EQ(inst[i].version, p.rollback ? "v1" : "v2") << name(i);
  }
  EXPECT_GT(failures, 0);
}

std::vector<SimParams> SimCases() {
  std::vector<SimParams> out;
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    out.push_back({seed, seed % 2 ? UpgradeMode::kAuto : UpgradeMode::kManual, seed % 4 == 3});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Seeds, UpgradeSimulationTest, ::testing::ValuesIn(SimCases()),
                         [](const ::testing::TestParamInfo<SimParams>& info) {
                           return "seed" + std::to_string(info.param.seed) +
                                  (info.param.mode == UpgradeMode::kAuto ? "_auto" : "_manual") +
                                  (info.param.rollback ? "_rollback" : "");
                         });

}  // namespace
}  // namespace regen
