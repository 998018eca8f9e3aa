// host_down_after against fencing_lease + the watchdog timeout (+ margin), as the agent checks it.
#include "agent/fence_timing.h"

#include <gtest/gtest.h>

namespace regen {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(FenceTimingTest, WithoutWatchdogOnlyTheLeaseAndMarginCount) {
  EXPECT_EQ(FenceTimingProblem(seconds(3), seconds(4), std::nullopt), "");
  EXPECT_NE(FenceTimingProblem(seconds(3), milliseconds(3250), std::nullopt), "");
}

TEST(FenceTimingTest, WatchdogTimeoutMustFitBeforeHostDown) {
  // The lab's old default: lease 2 s, host_down_after 2.5 s; a 1 s watchdog does not fit.
  std::string p = FenceTimingProblem(seconds(2), milliseconds(2500), seconds(1));
  ASSERT_NE(p, "");
  EXPECT_NE(p.find("host_down_after 2500ms"), std::string::npos) << p;
  EXPECT_NE(p.find("fencing_lease 2s"), std::string::npos) << p;
  EXPECT_NE(p.find("watchdog timeout 1s"), std::string::npos) << p;
  EXPECT_NE(p.find("above 3250ms"), std::string::npos) << p;
  // Exactly lease + watchdog + margin is still too short; just over it is fine.
  EXPECT_NE(FenceTimingProblem(seconds(2), milliseconds(3250), seconds(1)), "");
  EXPECT_EQ(FenceTimingProblem(seconds(2), milliseconds(3251), seconds(1)), "");
  EXPECT_EQ(FenceTimingProblem(seconds(2), milliseconds(3500), seconds(1)), "");  // chaos lab
}

TEST(FenceTimingTest, CheckFollowsTheLatestValuesAndTheDevice) {
  FenceTimingCheck check;
  EXPECT_TRUE(check.StatusJson().is_null());  // nothing heard yet
  check.Note(seconds(2), seconds(3), /*new_connection=*/true);
  EXPECT_EQ(check.problem(), "");
  auto j = check.StatusJson();
  EXPECT_EQ(j["fencing_lease_ms"], 2000);
  EXPECT_EQ(j["host_down_after_ms"], 3000);
  EXPECT_FALSE(j.contains("watchdog_timeout_ms"));
  // The device turns out to have a 10 s timeout: now unsafe.
  check.SetWatchdogTimeout(seconds(10));
  EXPECT_NE(check.problem().find("watchdog timeout 10s"), std::string::npos);
  EXPECT_EQ(check.StatusJson()["watchdog_timeout_ms"], 10000);
  EXPECT_TRUE(check.StatusJson().contains("problem"));
  // The controller raises host_down_after.
  check.Note(seconds(2), seconds(13), /*new_connection=*/false);
  EXPECT_EQ(check.problem(), "");
  EXPECT_FALSE(check.StatusJson().contains("problem"));
}

}  // namespace
}  // namespace regen
