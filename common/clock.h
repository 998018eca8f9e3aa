// Injected time. Production code asks a Clock; tests use FakeClock (tests/fakes/fake_clock.h).
// Implementations are thread-safe.
#pragma once

#include <chrono>

namespace regen {

class Clock {
 public:
  using Duration = std::chrono::steady_clock::duration;
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  // Wall-clock time for logs and events, in milliseconds since the Unix epoch.
  virtual int64_t WallMillis() const = 0;
};

class RealClock : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  int64_t WallMillis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace regen
