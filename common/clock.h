// Injected time. Production code asks a Clock; tests use FakeClock (tests/fakes/fake_clock.h).
// Implementations are thread-safe.
#pragma once

#include <time.h>

#include <chrono>
#include <cstdint>

namespace regen {

// CLOCK_BOOTTIME as a std::chrono clock: monotonic, and unlike CLOCK_MONOTONIC (steady_clock) it
// keeps counting while the host is suspended. Leases are measured on it: a host that slept through
// its fencing lease must see the lease over when it wakes (the controller healed its instances
// meanwhile). Any thread.
struct BootClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<BootClock>;
  static constexpr bool is_steady = true;
  static time_point now() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_BOOTTIME, &ts);
    return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
};

class Clock {
 public:
  // Points on the clock's own time line (CLOCK_BOOTTIME for RealClock, a test's for FakeClock).
  // Kept as steady_clock's types so that durations mix freely, but a TimePoint is never compared
  // with std::chrono::steady_clock::now(): to sleep until one, sleep for (t - clock.Now()).
  using Duration = std::chrono::steady_clock::duration;
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
  // Wall-clock time for logs and events, in milliseconds since the Unix epoch.
  virtual int64_t WallMillis() const = 0;
};

class RealClock : public Clock {
 public:
  TimePoint Now() const override {
    return TimePoint(std::chrono::duration_cast<Duration>(BootClock::now().time_since_epoch()));
  }
  int64_t WallMillis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace regen
