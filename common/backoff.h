// Exponential backoff, written once: the wait after each failure in a row starts at `initial`, is
// multiplied by `multiplier` after every further failure and never exceeds `max`; a success
// resets it. Pure (no clock, no sleeping: the caller waits). Backoff is not thread-safe: one
// owner thread; BackoffDelay from any thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace regen {

struct BackoffPolicy {
  std::chrono::milliseconds initial{100};  // the wait after the first failure
  std::chrono::milliseconds max{30000};    // the longest wait
  int64_t multiplier = 2;                  // growth per further failure (1: constant)
};

// The wait after `failures` failures in a row (below 1 counts as 1):
// min(initial * multiplier^(failures - 1), max), without overflow.
inline std::chrono::milliseconds BackoffDelay(const BackoffPolicy& policy, int64_t failures) {
  std::chrono::milliseconds wait = policy.initial;
  if (policy.multiplier > 1) {
    for (int64_t i = 1; i < failures && wait < policy.max; ++i) wait *= policy.multiplier;
  }
  return std::min(wait, policy.max);
}

// Counts the failures in a row of one thing being retried.
class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy) : policy_(policy) {}

  // Counts one more failure and returns the wait before the next try.
  std::chrono::milliseconds Next() { return BackoffDelay(policy_, ++failures_); }
  // After a success: the next failure waits `initial` again.
  void Reset() { failures_ = 0; }
  int64_t failures() const { return failures_; }
  const BackoffPolicy& policy() const { return policy_; }

 private:
  BackoffPolicy policy_;
  int64_t failures_ = 0;
};

}  // namespace regen
