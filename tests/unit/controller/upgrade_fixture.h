// Shared by the upgrade tests: applies events with a clock that advances 1 ms per event and
// checks every state it gets back against the invariants. Test-only.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>

#include "controller/upgrade.h"

namespace regen {

namespace ev = upgrade_event;
using Phase = UpgradePhase;

constexpr int64_t kT0 = 1'700'000'000'000;

inline ev::Start StartEvent(UpgradeMode mode = UpgradeMode::kAuto, int64_t uds = 3,
                            std::set<std::string> healing = {}) {
  return ev::Start{"web", "v1", "v2", mode, uds, std::move(healing)};
}

// Applies events with a clock that advances by 1 ms per event, and checks every state it gets
// back against the invariants.
class UpgradeTest : public ::testing::Test {
 protected:
  Result<UpgradeState> Try(const UpgradeState& s, UpgradeEventKind what) {
    ++now_;
    auto r = Apply(s, UpgradeEvent{std::move(what), now_}, policy_);
    if (r.ok()) {
      Status valid = ValidateUpgradeState(*r);
      EXPECT_TRUE(valid.ok()) << valid.ToString();
    }
    return r;
  }
  // The new state; on an error, a test failure and the input.
  UpgradeState Must(const UpgradeState& s, UpgradeEventKind what) {
    auto r = Try(s, std::move(what));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : s;
  }
  // The error; a test failure if the event was accepted.
  Status Refused(const UpgradeState& s, UpgradeEventKind what, Code code) {
    auto r = Try(s, std::move(what));
    EXPECT_FALSE(r.ok()) << "accepted, state " << UpgradePhaseName(r->state);
    if (r.ok()) return Status::Ok();
    EXPECT_EQ(r.status().code(), code) << r.status().ToString();
    return r.status();
  }
  void ExpectRefused(const UpgradeState& s, UpgradeEventKind what, Code code) {
    (void)Refused(s, std::move(what), code);
  }
  UpgradeState Started(UpgradeMode mode = UpgradeMode::kAuto, int64_t uds = 3,
                       std::set<std::string> healing = {}) {
    return Must(UpgradeState{}, StartEvent(mode, uds, std::move(healing)));
  }
  // Auto upgrade of 3 UDs, UD 0 upgraded, UD 1 being upgraded.
  UpgradeState RunningAtUd1() {
    UpgradeState s = Must(Started(), ev::UdInstancesUpgraded{0});
    EXPECT_EQ(s.state, Phase::kRunning);
    EXPECT_EQ(s.current_ud, 1);
    return s;
  }
  // Manual upgrade of 3 UDs, UD 0 upgraded, waiting for the operator to start UD 1.
  UpgradeState ManualWaitingAtUd1() {
    UpgradeState s = Must(Started(UpgradeMode::kManual), ev::NextUd{});
    s = Must(s, ev::UdInstancesUpgraded{0});
    EXPECT_EQ(s.state, Phase::kWaitingForOperator);
    EXPECT_EQ(s.current_ud, 1);
    return s;
  }

  UpgradePolicy policy_;
  int64_t now_ = kT0;
};

}  // namespace regen
