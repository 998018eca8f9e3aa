// The chaos runner as a test: CHAOS_RUNS runs (default 3: the test command's short pass) of
// random faults against a lab, each checked against what really runs (tests/chaos/chaos_runner.h).
// scripts/chaos.sh sets the environment: CHAOS_RUNS, CHAOS_SEED (default: the clock; printed),
// CHAOS_DRIVER (qemu | test; default qemu), CHAOS_SECONDS (faults per run, default 20),
// CHAOS_HOSTS (3), CHAOS_INSTANCES (6), CHAOS_FAULTS (a comma-separated subset of the kinds).
// Prints the table; fails on any duplicate, IP or MAC held twice, lost instance, fence after a link
// flap shorter than the lease, or fence after a fault of the controller alone (kill -9, full disk,
// SQLite lock held).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/chaos/chaos_runner.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {
namespace {

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REGEN_CHAOS_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define REGEN_CHAOS_ASAN 1
#endif

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoll(v, nullptr, 10) : fallback;
}

TEST(ChaosTest, RandomFaultsNeverRunAnInstanceTwiceNorLoseOne) {
  ChaosOptions options;
  const char* driver = std::getenv("CHAOS_DRIVER");
  if (driver != nullptr && *driver != '\0') options.driver = driver;
  ASSERT_TRUE(options.driver == "qemu" || options.driver == "test")
      << "CHAOS_DRIVER must be qemu or test, not \"" << options.driver << "\"";
  if (options.driver == "qemu" && !HaveProgram("qemu-system-x86_64")) {
    REGEN_REQUIRE_COMPONENT("qemu-system-x86_64", "apt-get install qemu-system-x86");
  }
#ifdef REGEN_CHAOS_ASAN
  // An agent under ASan cannot run qemu: libvirt (inside the agent with qemu:///embed) mallocs
  // between fork and exec, and clang 14's ASan allocator is not fork-safe: when another thread
  // holds one of its locks at the fork, the child waits forever and so does the start (seen as
  // "the service never ran" in about one run in three; glibc's malloc resets its locks in the
  // child, so a gcc agent cannot hang so). The qemu runs take the agent of the gcc build.
  if (options.driver == "qemu") {
    const char* agent = std::getenv("REGEN_AGENT_BIN");
    ASSERT_TRUE(agent != nullptr && *agent != '\0' && access(agent, X_OK) == 0)
        << "with CHAOS_DRIVER=qemu this ASan build needs REGEN_AGENT_BIN, the regen-agent of a "
           "build without ASan (e.g. build/agent/regen-agent: scripts/build.sh), got \""
        << (agent != nullptr ? agent : "") << "\": an ASan agent deadlocks in libvirt's fork "
        << "children (scripts/chaos.sh --asan and scripts/test.sh set it)";
    std::printf(
        "chaos: agents from %s (ASan's allocator is not fork-safe), controller under "
        "ASan\n",
        agent);
  }
#endif
  options.fault_seconds = static_cast<int>(EnvInt("CHAOS_SECONDS", 20));
  options.hosts = static_cast<int>(EnvInt("CHAOS_HOSTS", 3));
  options.instances = static_cast<int>(EnvInt("CHAOS_INSTANCES", 6));
  if (const char* f = std::getenv("CHAOS_FAULTS"); f != nullptr && *f != '\0') {
    std::string list = f;
    for (size_t at = 0; at <= list.size();) {
      size_t comma = std::min(list.find(',', at), list.size());
      std::string kind = list.substr(at, comma - at);
      const auto& known = ChaosFaultKinds();
      ASSERT_NE(std::find(known.begin(), known.end(), kind), known.end())
          << "CHAOS_FAULTS: unknown fault \"" << kind << "\"";
      options.faults.push_back(kind);
      at = comma + 1;
    }
  }
  options.disk_full = geteuid() == 0;  // a tmpfs needs root; the table says when it was off
  const int runs = static_cast<int>(EnvInt("CHAOS_RUNS", 3));
  const auto seed = static_cast<uint64_t>(EnvInt(
      "CHAOS_SEED", std::chrono::system_clock::now().time_since_epoch().count() % 1000000007));
  std::printf("chaos: %d run(s), seed %llu, driver %s, %d hosts, %d instances, %d s of faults\n",
              runs, static_cast<unsigned long long>(seed), options.driver.c_str(), options.hosts,
              options.instances, options.fault_seconds);
  std::vector<ChaosRunResult> results;
  for (int run = 1; run <= runs; ++run) {
    results.push_back(ChaosRun(options, run, seed + static_cast<uint64_t>(run) - 1));
    const auto& r = results.back();
    for (const auto& p : r.problems) std::printf("run %d: %s\n", run, p.c_str());
    // The table so far after every run: a long run that is stopped still leaves its figures.
    std::printf("%s", ChaosTable(results).c_str());
    std::fflush(stdout);
    EXPECT_FALSE(r.never_ran) << "run " << run << " (seed " << r.seed
                              << "): the service never ran, so no fault was injected\n"
                              << r.logs;
    EXPECT_EQ(r.duplicates, 0) << "run " << run << " (seed " << r.seed << ")\n" << r.logs;
    EXPECT_EQ(r.lost, 0) << "run " << run << " (seed " << r.seed << ")\n" << r.logs;
    EXPECT_EQ(r.ips_twice, 0) << "run " << run;
    EXPECT_EQ(r.macs_twice, 0) << "run " << run;
    EXPECT_EQ(r.flap_fences, 0) << "run " << run << ": a flap shorter than the lease fenced";
    EXPECT_EQ(r.sanitizer_reports, 0)
        << "run " << run << ": a daemon's log holds a sanitizer report";
    EXPECT_EQ(r.controller_fences, 0)
        << "run " << run << ": a fault of the controller alone stopped VMs\n"
        << r.logs;
  }
  std::printf("%s", ChaosTable(results).c_str());
}

}  // namespace
}  // namespace regen::testing
