// Parallel creates (issue 16): a host that takes over a failed host's instances starts them at
// once, up to Agent::kMaxParallelActions, instead of one after another on the main loop. The
// fake hypervisor's define holds each start until as many starts as a batch has are in flight (or
// a deadline), so a serial agent shows 1 in flight and fails here. Controller mode on a fake
// clock; the test plays the controller link's part.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "tests/fakes/agent_test_config.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/hanging_hypervisor.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::FakeClock;
using testing::HangingHypervisor;
using testing::TempDir;
using testing::WaitFor;

constexpr milliseconds kWait(10000);

InstanceSpec Spec(int i) {
  InstanceSpec s;
  s.name = "web-" + std::to_string(i);
  s.service = "web";
  s.update_domain = i % 3;
  s.version = "v1";
  s.generation = 1;
  s.allocation.host = "host-a";
  s.allocation.resources = {1, 64, 0, 0};
  s.allocation.mac = "52:54:00:00:00:1" + std::to_string(i);
  return s;
}

// Counts defines in flight. Each waits (on its own thread) until `hold_until` are in flight at
// once, or 3 s: a batch's starts overlap only if the agent really runs them at once.
class InFlight {
 public:
  void Enter(size_t hold_until) {
    std::unique_lock lock(mu_);
    ++now_;
    max_ = std::max(max_, now_);
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::seconds(3), [&] { return now_ >= hold_until || released_; });
    released_ = released_ || now_ >= hold_until;
  }
  void Leave() {
    std::unique_lock lock(mu_);
    --now_;
    if (now_ == 0) released_ = false;  // the next batch waits for its own starts
  }
  size_t max() {
    std::unique_lock lock(mu_);
    return max_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t now_ = 0;
  size_t max_ = 0;
  bool released_ = false;
};

class ParallelActionsTest : public ::testing::Test {
 protected:
  AgentConfig Config() { return testing::ControllerModeConfig(dir_, milliseconds(3600 * 1000)); }
  int Running() {
    auto domains = hv_.ListDomains();
    if (!domains.ok()) return -1;
    return static_cast<int>(std::count_if(domains->begin(), domains->end(), [](const auto& d) {
      return d.state == DomainState::kRunning;
    }));
  }

  TempDir dir_{"regen-parallel-actions"};
  HangingHypervisor hv_;
  FakeClock clock_;
  RealCommandRunner runner_;
};

TEST_F(ParallelActionsTest, SixCreatesRunInBatchesOfFourAtOnce) {
  InFlight in_flight;
  const size_t batch = 4;  // parallel_starts' default
  hv_.after_define = [&] {
    in_flight.Enter(batch);
    in_flight.Leave();
  };
  Agent agent(Config(), hv_, clock_, runner_);
  agent.Start();
  std::vector<InstanceSpec> desired;
  for (int i = 0; i < 6; ++i) desired.push_back(Spec(i));
  agent.RenewLease(clock_.Now() + std::chrono::hours(1));
  agent.SetControllerDesired(desired);
  ASSERT_TRUE(WaitFor([&] { return Running() == 6; }, kWait)) << Running() << " running";
  EXPECT_EQ(in_flight.max(), batch) << "the creates of one pass did not run at once";
  EXPECT_EQ(hv_.defines(), 6);
  agent.Stop();
}

TEST_F(ParallelActionsTest, ParallelStartsOneCreatesOneAfterAnother) {
  InFlight in_flight;
  hv_.after_define = [&] {
    in_flight.Enter(1);
    std::this_thread::sleep_for(milliseconds(100));  // long enough for another to overlap
    in_flight.Leave();
  };
  AgentConfig config = Config();
  config.parallel_starts = 1;
  Agent agent(config, hv_, clock_, runner_);
  agent.Start();
  std::vector<InstanceSpec> desired;
  for (int i = 0; i < 3; ++i) desired.push_back(Spec(i));
  agent.RenewLease(clock_.Now() + std::chrono::hours(1));
  agent.SetControllerDesired(desired);
  ASSERT_TRUE(WaitFor([&] { return Running() == 3; }, kWait)) << Running() << " running";
  EXPECT_EQ(in_flight.max(), 1u);
  agent.Stop();
}

TEST_F(ParallelActionsTest, AFailedCreateInABatchFailsAloneAndIsRetried) {
  InFlight in_flight;
  const size_t batch = 2;
  hv_.after_define = [&] {
    in_flight.Enter(batch);
    in_flight.Leave();
  };
  hv_.FailNextDefine(Status(Code::kInternal, "injected define failure"));
  Agent agent(Config(), hv_, clock_, runner_);
  agent.Start();
  agent.RenewLease(clock_.Now() + std::chrono::hours(1));
  agent.SetControllerDesired({Spec(0), Spec(1), Spec(2)});
  ASSERT_TRUE(WaitFor([&] { return Running() == 2; }, kWait)) << Running() << " running";
  EXPECT_EQ(in_flight.max(), batch);
  auto failed = agent.Changes();
  EXPECT_EQ(std::count_if(failed.begin(), failed.end(),
                          [](const ChangeRecord& c) { return c.what == "create-failed"; }),
            1);
  // The failed one is retried after its backoff (poll_interval on the fake clock).
  clock_.Advance(milliseconds(200));
  agent.RequestReconcile("test");
  ASSERT_TRUE(WaitFor([&] { return Running() == 3; }, kWait)) << Running() << " running";
  agent.Stop();
}

}  // namespace
}  // namespace regen
