// RealClock measures leases on CLOCK_BOOTTIME, which keeps counting while the host is suspended
// (CLOCK_MONOTONIC, steady_clock, stops). A suspend cannot be made in a test; a time namespace
// can: its boottime offset (+1000 s here) is what a 1000 s suspend leaves behind. Needs
// CAP_SYS_ADMIN for the namespace: skipped without it, a failure when CI=1.
#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "common/clock.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

namespace regen {
namespace {

using std::chrono::seconds;

// RealClock::Now() - steady_clock::now() in seconds, measured in a child process whose time
// namespace has its boottime moved `offset_s` ahead; or -1 with `error` set.
long long BootOffsetSeen(int offset_s, std::string* error) {
  int fds[2];
  if (pipe(fds) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    return -1;
  }
  pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    long long result = -1;
    // The namespace applies to children made after unshare(): fork once more.
    if (unshare(CLONE_NEWTIME) == 0) {
      FILE* f = std::fopen("/proc/self/timens_offsets", "w");
      bool ok = f != nullptr && std::fprintf(f, "boottime %d 0\n", offset_s) > 0;
      if (f != nullptr) ok = std::fclose(f) == 0 && ok;
      if (ok) {
        pid_t grandchild = fork();
        if (grandchild == 0) {
          RealClock clock;
          long long seen = std::chrono::duration_cast<seconds>(
                               clock.Now().time_since_epoch() -
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
          _exit(write(fds[1], &seen, sizeof seen) == sizeof seen ? 0 : 1);
        }
        int status = 0;
        waitpid(grandchild, &status, 0);
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
      }
    }
    (void)write(fds[1], &result, sizeof result);
    _exit(2);
  }
  close(fds[1]);
  long long seen = -1;
  bool got = read(fds[0], &seen, sizeof seen) == sizeof seen;
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *error = "cannot make a time namespace with a boottime offset (needs CAP_SYS_ADMIN and "
             "Linux >= 5.6)";
    return -1;
  }
  return seen;
}

TEST(RealClockTest, CountsTheTimeAHostSpentSuspended) {
  std::string error;
  long long seen = BootOffsetSeen(1000, &error);
  if (seen < 0) {
    if (getenv("CI") != nullptr && std::string(getenv("CI")) == "1") FAIL() << error;
    GTEST_SKIP() << error;
  }
  // Boottime may already be ahead of monotonic by the host's real suspends: at least 1000 s.
  EXPECT_GE(seen, 999) << "RealClock does not count suspended time (CLOCK_MONOTONIC?)";
}

TEST(BootClockTest, IsMonotonicAndNeverBehindSteadyClock) {
  auto a = BootClock::now();
  auto steady = std::chrono::steady_clock::now();
  auto b = BootClock::now();
  EXPECT_LE(a, b);
  // Both count from boot; boottime also counts suspends, so it is never behind.
  EXPECT_GE(b.time_since_epoch() + std::chrono::milliseconds(1), steady.time_since_epoch());
}

}  // namespace
}  // namespace regen
