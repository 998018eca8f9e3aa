// The lab harness's sanitizer check (no daemon started): a daemon's log holding an ASan, UBSan or
// TSan report is found and named, and the Lab's destructor fails the test for it.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "tests/e2e/lab_harness.h"
#include "tests/e2e/lab_watchdog.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {
namespace {

constexpr char kAsanReport[] =
    "==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010\n"
    "    #0 0x55 in regen::Reconciler::Tick() controller/reconciler.cc:42\n";

TEST(LabHarnessTest, SanitizerReportsNameTheLogAndTheReport) {
  LabOptions o;
  o.hosts = 2;
  Lab lab(o);
  WriteFileOrDie(lab.dir() + "/controller.log", "info: listening\n");
  WriteFileOrDie(lab.dir() + "/host-1/agent.log", std::string("info: up\n") + kAsanReport);
  WriteFileOrDie(lab.dir() + "/host-2/agent.log",
                 "agent/x.cc:7:3: runtime error: signed integer overflow\n");
  auto reports = lab.SanitizerReports();
  ASSERT_EQ(reports.size(), 2u);
  std::sort(reports.begin(), reports.end());
  EXPECT_NE(reports[0].find("host-1/agent.log"), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find("heap-use-after-free"), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find("reconciler.cc:42"), std::string::npos) << reports[0];  // the stack
  EXPECT_EQ(reports[0].find("info: up"), std::string::npos) << reports[0];
  EXPECT_NE(reports[1].find("host-2/agent.log"), std::string::npos) << reports[1];
  EXPECT_NE(reports[1].find("runtime error: signed integer overflow"), std::string::npos);
  // Checked here; a clean lab for the destructor.
  WriteFileOrDie(lab.dir() + "/host-1/agent.log", "");
  WriteFileOrDie(lab.dir() + "/host-2/agent.log", "");
}

TEST(LabHarnessTest, LogsWithoutReportsAndLeakReportsAreClean) {
  Lab lab({});
  WriteFileOrDie(
      lab.dir() + "/controller.log",
      "info: runtime of the heal 12 ms\n==1==ERROR: LeakSanitizer: detected memory leaks\n");
  EXPECT_TRUE(lab.SanitizerReports().empty());
}

TEST(LabHarnessTest, TheLabFailsTheTestForADaemonsReport) {
  EXPECT_NONFATAL_FAILURE(
      {
        Lab lab({});
        WriteFileOrDie(lab.dir() + "/controller.log",
                       "WARNING: ThreadSanitizer: data race (pid=7)\n  Write of size 8\n");
      },
      "controller.log:\nWARNING: ThreadSanitizer: data race");
}

// The stand-in watchdog: a host whose device was petted and then no more is reset (every process
// whose command line names the host's directory gets SIGKILL), once; its log says how long after
// the timeout the reset came, and resets that were late are counted apart (the chaos runner
// reports them as the harness's problem). Two hosts due together are reset in the same pass:
// one's processes are never waited for before the other's reset (chaos run 53).
TEST(LabWatchdogTest, AHostNoLongerPettedIsResetOnceAndItsLatenessIsRecorded) {
  TempDir dir("regen-lab-watchdog-test");
  for (int k = 1; k <= 2; ++k) {
    std::filesystem::create_directories(dir.File("host-" + std::to_string(k)));
  }
  LabWatchdog watchdog(dir.path(), 2, std::chrono::milliseconds(300));
  std::vector<std::unique_ptr<ChildProcess>> hosts;
  for (int k = 1; k <= 2; ++k) {
    // A process of host K: its command line names the host's directory.
    const std::string file = dir.File("host-" + std::to_string(k) + "/agent.log");
    WriteFileOrDie(file, "");
    hosts.push_back(
        std::make_unique<ChildProcess>(std::vector<std::string>{"/usr/bin/tail", "-f", file},
                                       dir.File("host-" + std::to_string(k) + "/out")));
  }
  for (int k = 1; k <= 2; ++k) {
    int fd = open(watchdog.Device(k).c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << watchdog.Device(k);
    ASSERT_EQ(write(fd, ".", 1), 1);
    close(fd);  // no 'V': the count goes on
  }
  ASSERT_TRUE(WaitFor([&] { return watchdog.resets() == 2; }, std::chrono::milliseconds(10000)));
  for (auto& h : hosts) {
    ASSERT_TRUE(WaitFor([&] { return !h->Running(); }, std::chrono::milliseconds(10000)))
        << "a process of a reset host is still alive";
  }
  auto log = watchdog.log();
  ASSERT_EQ(log.size(), 2u);
  for (const auto& line : log) {
    EXPECT_NE(line.find("ms after its timeout"), std::string::npos) << line;
    EXPECT_NE(line.find("1 process(es) killed"), std::string::npos) << line;
  }
  EXPECT_GE(watchdog.max_late_ms(), 0);
  EXPECT_LE(watchdog.late_resets(), watchdog.resets());
  // Not petted again: no second reset.
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(watchdog.resets(), 2);
}

}  // namespace
}  // namespace regen::testing
