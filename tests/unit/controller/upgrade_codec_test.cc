// Tests of the upgrade state's codec (controller/upgrade_codec.h): the invariants
// (ValidateUpgradeState), the text names of the enums, and the JSON round trip.
#include "controller/upgrade_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "controller/upgrade.h"
#include "tests/unit/controller/upgrade_fixture.h"

namespace regen {
namespace {

using ::testing::HasSubstr;

// --- Validation -------------------------------------------------------------------------------

TEST_F(UpgradeTest, ValidateUpgradeStateCatchesBrokenInvariants) {
  UpgradeState good = RunningAtUd1();
  ASSERT_TRUE(ValidateUpgradeState(good).ok());
  auto expect_bad = [](UpgradeState s, const std::string& needle) {
    Status st = ValidateUpgradeState(s);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << needle;
    EXPECT_THAT(st.message(), HasSubstr(needle));
  };
  UpgradeState s = good;
  s.upgraded_uds = {0, 2};
  expect_bad(s, "upgraded_uds");
  s = good;
  s.current_ud = 3;
  expect_bad(s, "current_ud 3");
  s = good;
  s.healing_in_progress = {"web-1"};
  expect_bad(s, "must be preempted");
  s = good;
  s.state = Phase::kWaitingForOperator;
  s.current_ud_started = false;
  expect_bad(s, "auto mode");
  s = good;
  s.resume_to = Phase::kRunning;
  expect_bad(s, "resume_to");
  s = good;
  s.state = Phase::kPaused;
  s.resume_to = Phase::kFailed;
  expect_bad(s, "paused with resume_to failed");
  s = good;
  s.to_version = s.from_version;
  expect_bad(s, "from_version equals to_version");
  s = good;
  s.failed_health_checks["web-1"] = 0;
  expect_bad(s, "failed_health_checks");
  s = good;
  s.state = Phase::kCompleted;
  expect_bad(s, "completed");
}

// --- Names ------------------------------------------------------------------------------------

TEST(UpgradeNamesTest, EnumNamesRoundTrip) {
  for (Phase p : {Phase::kRunning, Phase::kPreempted, Phase::kPaused, Phase::kWaitingForOperator,
                  Phase::kCompleted, Phase::kRollingBack, Phase::kRolledBack, Phase::kFailed}) {
    auto parsed = ParseUpgradePhase(UpgradePhaseName(p));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, p);
  }
  EXPECT_STREQ(UpgradePhaseName(Phase::kWaitingForOperator), "waiting_for_operator");
  EXPECT_STREQ(UpgradePhaseName(Phase::kRolledBack), "rolled_back");
  EXPECT_EQ(*ParseUpgradeMode("manual"), UpgradeMode::kManual);
  EXPECT_EQ(*ParseUpgradeMode("auto"), UpgradeMode::kAuto);
  EXPECT_EQ(*ParseManualStepPolicy("allow"), ManualStepPolicy::kAllow);
  EXPECT_EQ(*ParseManualStepPolicy("block"), ManualStepPolicy::kBlock);
  EXPECT_EQ(ParseUpgradePhase("Running").status().code(), Code::kInvalidArgument);
  EXPECT_THAT(ParseUpgradeMode("fast").status().message(), HasSubstr("auto | manual"));
  EXPECT_THAT(ParseManualStepPolicy("maybe").status().message(), HasSubstr("block | allow"));
  EXPECT_STREQ(UpgradeEventName(UpgradeEvent{ev::NextUd{}, 0}), "next-ud");
  EXPECT_STREQ(UpgradeEventName(UpgradeEvent{ev::RolledBackUd{}, 0}), "ud-rolled-back");
  EXPECT_STREQ(HealingCaseName(HealingCase::kUdNotYetUpgraded), "ud_not_yet_upgraded");
  EXPECT_STREQ(UpgradeActionKindName(UpgradeActionKind::kRollBackUd), "roll_back_ud");
}

// --- JSON -------------------------------------------------------------------------------------

TEST_F(UpgradeTest, JsonRoundTripOfManyStates) {
  policy_.max_failed_health_checks = 5;
  policy_.manual_policy = ManualStepPolicy::kAllow;
  std::vector<UpgradeState> states = {
      Started(),
      Started(UpgradeMode::kAuto, 3, {"web-0", "web-1"}),  // preempted, resume_to
      Must(Must(ManualWaitingAtUd1(), ev::InstanceFailed{"web-2", 2}), ev::NextUd{}),
      Must(Must(RunningAtUd1(), ev::HealthCheckFailed{"web-0"}), ev::Pause{}),
      Must(Must(RunningAtUd1(), ev::Rollback{}), ev::InstanceFailed{"web-1", 1}),
      Must(Must(Must(RunningAtUd1(), ev::Rollback{}), ev::RolledBackUd{1}), ev::RolledBackUd{0}),
      Must(Must(RunningAtUd1(), ev::UdInstancesUpgraded{1}), ev::UdInstancesUpgraded{2}),
  };
  for (const UpgradeState& s : states) {
    nlohmann::json j = UpgradeStateToJson(s);
    auto back = UpgradeStateFromJson(j);
    ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << j.dump(2);
    EXPECT_EQ(*back, s) << j.dump(2);
    auto from_text = ParseUpgradeStateJson(j.dump());
    ASSERT_TRUE(from_text.ok()) << from_text.status().ToString();
    EXPECT_EQ(*from_text, s);
  }
}

TEST_F(UpgradeTest, JsonHasTheStatusKeys) {
  UpgradeState s =
      Must(Must(RunningAtUd1(), ev::InstanceFailed{"web-5", 2}), ev::HealthCheckFailed{"web-0"});
  nlohmann::json j = UpgradeStateToJson(s);
  EXPECT_EQ(j["service"], "web");
  EXPECT_EQ(j["from_version"], "v1");
  EXPECT_EQ(j["to_version"], "v2");
  EXPECT_EQ(j["mode"], "auto");
  EXPECT_EQ(j["state"], "preempted");
  EXPECT_EQ(j["resume_to"], "running");
  EXPECT_EQ(j["current_ud"], 1);
  EXPECT_EQ(j["update_domains"], 3);
  EXPECT_EQ(j["upgraded_uds"], nlohmann::json::array({0}));
  EXPECT_EQ(j["healing_in_progress"], nlohmann::json::array({"web-5"}));
  EXPECT_EQ(j["failed_health_checks"]["web-0"], 1);
  EXPECT_EQ(j["started_at"], s.started_at_unix_ms);
  EXPECT_EQ(j["updated_at"], s.updated_at_unix_ms);
  EXPECT_EQ(j["message"], s.message);
  EXPECT_FALSE(UpgradeStateToJson(RunningAtUd1()).contains("resume_to"));
}

TEST_F(UpgradeTest, JsonRefusesBrokenInput) {
  nlohmann::json good = UpgradeStateToJson(RunningAtUd1());
  auto expect_bad = [](const nlohmann::json& j, const std::string& needle) {
    auto r = UpgradeStateFromJson(j);
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(needle));
  };
  expect_bad(nlohmann::json::array(), "object");
  nlohmann::json j = good;
  j.erase("service");
  expect_bad(j, "\"service\"");
  j = good;
  j["current_ud"] = "1";
  expect_bad(j, "\"current_ud\" must be an integer");
  j = good;
  j["current_ud"] = 1.5;
  expect_bad(j, "\"current_ud\"");
  j = good;
  j["state"] = "sleeping";
  expect_bad(j, "sleeping");
  j = good;
  j["mode"] = 1;
  expect_bad(j, "\"mode\"");
  j = good;
  j["upgraded_uds"] = nlohmann::json::array({"0"});
  expect_bad(j, "upgraded_uds");
  j = good;
  j["healing_in_progress"] = nlohmann::json::array({1});
  expect_bad(j, "healing_in_progress");
  j = good;
  j["failed_health_checks"] = nlohmann::json::object({{"web-0", "x"}});
  expect_bad(j, "failed_health_checks");
  j = good;
  j["updated_at"] = 18446744073709551615ull;
  expect_bad(j, "updated_at");
  j = good;
  j["current_ud_started"] = 1;
  expect_bad(j, "current_ud_started");
  j = good;
  j["state"] = "preempted";  // no resume_to, no healing: an invariant breaks
  expect_bad(j, "resume_to");
  j = good;
  j["unknown_future_key"] = 42;  // ignored
  EXPECT_TRUE(UpgradeStateFromJson(j).ok());
  auto text = ParseUpgradeStateJson("{not json");
  ASSERT_FALSE(text.ok());
  EXPECT_THAT(text.status().message(), HasSubstr("not valid JSON"));
}

}  // namespace
}  // namespace regen
