// The health-check state (agent/health_tracker.h), pure: probe results in a row -> health and
// the failed verdict, and the monitor's schedule (first probe one interval after the domain runs,
// one probe in flight per instance, generations, stale results) on explicit time points.
#include "agent/health_tracker.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace regen {
namespace {

using std::chrono::milliseconds;

TEST(HealthTrackerTest, StartsUnknownAndPassesOnAPass) {
  HealthTracker t(3);
  EXPECT_EQ(t.state(), HealthState::kUnknown);
  EXPECT_FALSE(t.passed_once());
  EXPECT_FALSE(t.Record(true, ""));
  EXPECT_EQ(t.state(), HealthState::kPassing);
  EXPECT_TRUE(t.passed_once());
  EXPECT_EQ(t.consecutive_failures(), 0);
  EXPECT_FALSE(t.failed());
}

TEST(HealthTrackerTest, MaxFailedInARowGivesTheVerdictWhichIsALevel) {
  HealthTracker t(3);
  EXPECT_FALSE(t.Record(false, "refused 1"));
  EXPECT_EQ(t.state(), HealthState::kFailing);
  EXPECT_FALSE(t.Record(false, "refused 2"));
  EXPECT_EQ(t.consecutive_failures(), 2);
  EXPECT_FALSE(t.failed());
  EXPECT_TRUE(t.Record(false, "refused 3"));
  EXPECT_TRUE(t.failed());
  EXPECT_EQ(t.last_error(), "refused 3");
  // Issue 15 finding 6: the verdict is the current state, not a one-time edge. Another failure
  // keeps it (the edge is not repeated) and updates the detail ...
  EXPECT_FALSE(t.Record(false, "refused 4"));
  EXPECT_TRUE(t.failed());
  EXPECT_EQ(t.consecutive_failures(), 4);
  EXPECT_EQ(t.last_error(), "refused 4");
  // ... a pass clears it ...
  EXPECT_FALSE(t.Record(true, ""));
  EXPECT_FALSE(t.failed());
  EXPECT_EQ(t.state(), HealthState::kPassing);
  EXPECT_TRUE(t.passed_once());
  // ... and a new run of failures reaches it again.
  EXPECT_FALSE(t.Record(false, "refused 5"));
  EXPECT_FALSE(t.Record(false, "refused 6"));
  EXPECT_TRUE(t.Record(false, "refused 7"));
  EXPECT_TRUE(t.failed());
  EXPECT_EQ(t.probes(), 8);
}

TEST(HealthTrackerTest, APassInBetweenResetsTheCountButPassedOnceStays) {
  HealthTracker t(2);
  EXPECT_FALSE(t.Record(false, "timeout"));
  EXPECT_FALSE(t.Record(true, ""));
  EXPECT_EQ(t.consecutive_failures(), 0);
  EXPECT_EQ(t.last_error(), "");
  EXPECT_FALSE(t.Record(false, "timeout"));
  EXPECT_EQ(t.state(), HealthState::kFailing);
  EXPECT_TRUE(t.passed_once()) << "passed once stays: the controller counts the first pass";
  EXPECT_TRUE(t.Record(false, "timeout"));
}

TEST(HealthTrackerTest, MaxFailedOfOneOrLessFailsAtTheFirstFailure) {
  HealthTracker one(1);
  EXPECT_TRUE(one.Record(false, "x"));
  HealthTracker zero(0);  // nonsense from the wire: treated as 1, never "never fails"
  EXPECT_EQ(zero.max_failed(), 1);
  EXPECT_TRUE(zero.Record(false, "x"));
}

TEST(HealthCheckAppliesTest, OnlyTcpOrHttpWithAPortAndAnAddress) {
  HealthCheck c;
  EXPECT_FALSE(HealthCheckApplies(c, "10.0.0.2"));  // none
  c.type = "tcp";
  c.port = 80;
  EXPECT_TRUE(HealthCheckApplies(c, "10.0.0.2"));
  EXPECT_FALSE(HealthCheckApplies(c, ""));
  c.type = "http";
  EXPECT_TRUE(HealthCheckApplies(c, "10.0.0.2"));
  c.port = 0;
  EXPECT_FALSE(HealthCheckApplies(c, "10.0.0.2"));
}

class HealthMonitorTest : public ::testing::Test {
 protected:
  static HealthTarget Target(const std::string& name, int64_t generation, int64_t max_failed = 2) {
    HealthTarget t;
    t.instance = name;
    t.generation = generation;
    t.ip = "10.0.0." + std::to_string(name.back() - '0' + 2);
    t.check.type = "tcp";
    t.check.port = 8080;
    t.check.interval = milliseconds(100);
    t.check.timeout = milliseconds(50);
    t.check.max_failed = max_failed;
    return t;
  }
  static std::vector<std::string> Names(const std::vector<HealthTarget>& due) {
    std::vector<std::string> out;
    for (const auto& t : due) out.push_back(t.instance);
    return out;
  }
  Clock::TimePoint t0_ = Clock::TimePoint(std::chrono::hours(1));
};

TEST_F(HealthMonitorTest, FirstProbeOneIntervalAfterTheDomainRunsThenEveryInterval) {
  HealthMonitor m;
  m.Sync({Target("web-0", 1)}, t0_);
  ASSERT_TRUE(m.NextDue().has_value());
  EXPECT_EQ(*m.NextDue(), t0_ + milliseconds(100));
  EXPECT_TRUE(m.TakeDue(t0_ + milliseconds(99)).empty());
  EXPECT_EQ(Names(m.TakeDue(t0_ + milliseconds(100))), std::vector<std::string>{"web-0"});
  // In flight: not handed out again, and not due either, however late it gets.
  EXPECT_TRUE(m.TakeDue(t0_ + milliseconds(500)).empty());
  EXPECT_FALSE(m.NextDue().has_value());
  EXPECT_FALSE(m.OnResult("web-0", 1, true, "").has_value());
  EXPECT_EQ(*m.NextDue(), t0_ + milliseconds(200));
  auto report = m.Report();
  ASSERT_EQ(report.count("web-0"), 1u);
  EXPECT_EQ(report["web-0"].state, HealthState::kPassing);
  EXPECT_TRUE(report["web-0"].passed_once);
  EXPECT_EQ(report["web-0"].generation, 1);
}

TEST_F(HealthMonitorTest, VerdictAfterMaxFailedAndProbingGoesOn) {
  HealthMonitor m;
  m.Sync({Target("web-0", 4, 2)}, t0_);
  auto now = t0_ + milliseconds(100);
  ASSERT_EQ(m.TakeDue(now).size(), 1u);
  EXPECT_FALSE(m.OnResult("web-0", 4, false, "connection refused").has_value());
  now += milliseconds(100);
  ASSERT_EQ(m.TakeDue(now).size(), 1u);
  auto verdict = m.OnResult("web-0", 4, false, "connection refused");
  ASSERT_TRUE(verdict.has_value());
  EXPECT_EQ(verdict->instance, "web-0");
  EXPECT_EQ(verdict->generation, 4);
  EXPECT_EQ(verdict->failures, 2);
  EXPECT_EQ(verdict->last_error, "connection refused");
  EXPECT_TRUE(m.Report()["web-0"].failed);
  EXPECT_EQ(m.Report()["web-0"].state, HealthState::kFailing);
  // Issue 15 finding 6: probing goes on after the verdict (the agent once stopped here, so a
  // verdict lost on a broken link was never seen again, and a recovery never either).
  ASSERT_TRUE(m.NextDue().has_value());
  EXPECT_EQ(*m.NextDue(), now + milliseconds(100));
  now += milliseconds(100);
  ASSERT_EQ(m.TakeDue(now).size(), 1u);
  EXPECT_FALSE(m.OnResult("web-0", 4, false, "timeout").has_value()) << "the edge is not repeated";
  EXPECT_TRUE(m.Report()["web-0"].failed);
  EXPECT_EQ(m.Report()["web-0"].consecutive_failures, 3);
  EXPECT_EQ(m.Report()["web-0"].last_error, "timeout");
  now += milliseconds(100);
  ASSERT_EQ(m.TakeDue(now).size(), 1u);
  EXPECT_FALSE(m.OnResult("web-0", 4, true, "").has_value());
  EXPECT_FALSE(m.Report()["web-0"].failed) << "the report carries the current health";
  EXPECT_EQ(m.Report()["web-0"].state, HealthState::kPassing);
}

TEST_F(HealthMonitorTest, StaleResultsAreIgnored) {
  HealthMonitor m;
  m.Sync({Target("web-0", 1, 1), Target("web-1", 1, 1)}, t0_);
  EXPECT_EQ(m.TakeDue(t0_ + milliseconds(100)).size(), 2u);
  // Nothing in flight for an unknown instance or another generation.
  EXPECT_FALSE(m.OnResult("web-9", 1, false, "x").has_value());
  EXPECT_FALSE(m.OnResult("web-0", 2, false, "x").has_value());
  // web-1 is dropped (destroyed here) while its probe runs: its result does not count.
  m.Sync({Target("web-0", 1, 1)}, t0_ + milliseconds(110));
  EXPECT_FALSE(m.OnResult("web-1", 1, false, "x").has_value());
  EXPECT_EQ(m.Report().count("web-1"), 0u);
  // A second result for one probe does not count twice.
  EXPECT_FALSE(m.OnResult("web-0", 1, true, "").has_value());
  EXPECT_FALSE(m.OnResult("web-0", 1, false, "x").has_value());
  EXPECT_EQ(m.Report()["web-0"].state, HealthState::kPassing);
}

TEST_F(HealthMonitorTest, ANewGenerationStartsOverUnknown) {
  HealthMonitor m;
  m.Sync({Target("web-0", 1)}, t0_);
  ASSERT_EQ(m.TakeDue(t0_ + milliseconds(100)).size(), 1u);
  (void)m.OnResult("web-0", 1, true, "");
  // Same target again: kept as it is (a poll must not reset the schedule or the results).
  m.Sync({Target("web-0", 1)}, t0_ + milliseconds(150));
  EXPECT_TRUE(m.Report()["web-0"].passed_once);
  EXPECT_EQ(*m.NextDue(), t0_ + milliseconds(200));
  // Re-created (upgrade): generation 2 knows nothing of 1's pass, and waits one interval.
  m.Sync({Target("web-0", 2)}, t0_ + milliseconds(160));
  auto r = m.Report()["web-0"];
  EXPECT_EQ(r.generation, 2);
  EXPECT_EQ(r.state, HealthState::kUnknown);
  EXPECT_FALSE(r.passed_once);
  EXPECT_EQ(*m.NextDue(), t0_ + milliseconds(260));
  // The old generation's late result is ignored.
  EXPECT_FALSE(m.OnResult("web-0", 1, false, "x").has_value());
  EXPECT_EQ(m.Report()["web-0"].consecutive_failures, 0);
}

TEST_F(HealthMonitorTest, AChangedCheckStartsOver) {
  HealthMonitor m;
  m.Sync({Target("web-0", 1)}, t0_);
  ASSERT_EQ(m.TakeDue(t0_ + milliseconds(100)).size(), 1u);
  (void)m.OnResult("web-0", 1, false, "x");
  HealthTarget changed = Target("web-0", 1);
  changed.check.port = 9090;
  m.Sync({changed}, t0_ + milliseconds(120));
  EXPECT_EQ(m.Report()["web-0"].consecutive_failures, 0);
  auto due = m.TakeDue(t0_ + milliseconds(220));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].check.port, 9090);
}

TEST_F(HealthMonitorTest, EmptySyncDropsEverything) {
  HealthMonitor m;
  m.Sync({Target("web-0", 1)}, t0_);
  EXPECT_FALSE(m.empty());
  m.Sync({}, t0_);
  EXPECT_TRUE(m.empty());
  EXPECT_FALSE(m.NextDue().has_value());
  EXPECT_TRUE(m.Report().empty());
}

}  // namespace
}  // namespace regen
