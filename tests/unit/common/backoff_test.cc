// The one exponential backoff: delays per failure count, the cap, reset, and the callers'
// policies (the same delays as before the helper existed).
#include "common/backoff.h"

#include <gtest/gtest.h>

#include <vector>

namespace regen {
namespace {

using std::chrono::milliseconds;

std::vector<int64_t> Delays(Backoff& b, int n) {
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) out.push_back(b.Next().count());
  return out;
}

TEST(BackoffTest, DoublesFromInitialUpToMax) {
  Backoff b({milliseconds(100), milliseconds(1000), 2});
  EXPECT_EQ(Delays(b, 6), (std::vector<int64_t>{100, 200, 400, 800, 1000, 1000}));
  EXPECT_EQ(b.failures(), 6);
}

TEST(BackoffTest, ResetStartsAgainAtInitial) {
  Backoff b({milliseconds(500), milliseconds(30000), 2});
  EXPECT_EQ(Delays(b, 3), (std::vector<int64_t>{500, 1000, 2000}));
  b.Reset();
  EXPECT_EQ(b.failures(), 0);
  EXPECT_EQ(b.Next(), milliseconds(500));
}

TEST(BackoffTest, OtherMultipliers) {
  Backoff triple({milliseconds(10), milliseconds(1000), 3});
  EXPECT_EQ(Delays(triple, 6), (std::vector<int64_t>{10, 30, 90, 270, 810, 1000}));
  Backoff constant({milliseconds(10), milliseconds(1000), 1});
  EXPECT_EQ(Delays(constant, 3), (std::vector<int64_t>{10, 10, 10}));
}

TEST(BackoffTest, DelayIsCappedAndNeverOverflows) {
  BackoffPolicy p{milliseconds(250), milliseconds(30000), 2};
  EXPECT_EQ(BackoffDelay(p, 0), milliseconds(250));  // below 1 counts as 1
  EXPECT_EQ(BackoffDelay(p, 1), milliseconds(250));
  EXPECT_EQ(BackoffDelay(p, 8), milliseconds(30000));
  EXPECT_EQ(BackoffDelay(p, int64_t{1} << 62), milliseconds(30000));
  // An initial above the maximum is capped too.
  EXPECT_EQ(BackoffDelay({milliseconds(5000), milliseconds(100), 2}, 1), milliseconds(100));
}

// The agent's create/destroy retries: poll_interval doubled per failure, at most 1024 polls and
// at most 60 s.
TEST(BackoffTest, AgentRetryPolicyMatchesItsOldFormula) {
  for (milliseconds poll :
       {milliseconds(1), milliseconds(10), milliseconds(50), milliseconds(1000)}) {
    BackoffPolicy p{poll, std::min<milliseconds>(poll * 1024, std::chrono::seconds(60)), 2};
    for (int attempts = 1; attempts < 40; ++attempts) {
      milliseconds old = std::min<milliseconds>(poll * (1 << std::min(attempts - 1, 10)),
                                                std::chrono::seconds(60));
      EXPECT_EQ(BackoffDelay(p, attempts), old)
          << "poll " << poll.count() << " attempts " << attempts;
    }
  }
}

}  // namespace
}  // namespace regen
