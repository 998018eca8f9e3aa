// FakeClock: time that moves only when a test says so. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>

#include "common/clock.h"

namespace regen::testing {

class FakeClock : public Clock {
 public:
  TimePoint Now() const override { return TimePoint(Duration(now_.load())); }
  int64_t WallMillis() const override {
    return kEpochMs +
           std::chrono::duration_cast<std::chrono::milliseconds>(Duration(now_.load())).count();
  }
  void Advance(Duration d) { now_ += d.count(); }

 private:
  static constexpr int64_t kEpochMs = 1'800'000'000'000;
  std::atomic<Duration::rep> now_{Duration(std::chrono::hours(1)).count()};
};

}  // namespace regen::testing
