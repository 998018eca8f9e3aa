// ParseQemuCmdline: the subreaper names a dead qemu by the command line libvirt gave it.
// ChildReaper::ScanOnce with real child processes: a domain's qemu is reaped at once and reported;
// a qemu child that is not a domain (libvirt's capability probe, which libvirt waits for itself)
// is left alone for the grace period, then reaped.
#include "agent/reaper.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>
#include <vector>

#include "tests/fakes/test_util.h"

namespace regen {
namespace {

std::string Cmdline(std::initializer_list<const char*> args) {
  std::string out;
  for (const char* a : args) {
    out += a;
    out += '\0';
  }
  return out;
}

TEST(ParseQemuCmdlineTest, LibvirtStyleGuestNameAndDomainId) {
  auto who = ParseQemuCmdline(Cmdline(
      {"/usr/bin/qemu-system-x86_64", "-name", "guest=crash-0,debug-threads=on", "-S", "-object",
       "{\"qom-type\":\"secret\",\"id\":\"masterKey0\",\"format\":\"raw\",\"file\":\"/tmp/r/lib/"
       "qemu/domain-17-crash-0/master-key.aes\"}"}));
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->name, "crash-0");
  EXPECT_EQ(who->domain_id, 17);
}

TEST(ParseQemuCmdlineTest, EscapedCommaAndPlainName) {
  auto who = ParseQemuCmdline(Cmdline({"qemu", "-name", "guest=a,,b,debug-threads=on"}));
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->name, "a,b");
  EXPECT_EQ(who->domain_id, -1);
  who = ParseQemuCmdline(Cmdline({"qemu", "-name", "plain"}));
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->name, "plain");
}

TEST(ParseQemuCmdlineTest, NoNameIsNotAGuest) {
  EXPECT_FALSE(ParseQemuCmdline(Cmdline({"qemu-img", "create", "-f", "qcow2", "x"})).has_value());
  EXPECT_FALSE(ParseQemuCmdline(Cmdline({"qemu", "-name"})).has_value());
  EXPECT_FALSE(ParseQemuCmdline("").has_value());
}

TEST(ParseQemuCmdlineTest, DomainDirectoryWithoutIdIsIgnored) {
  auto who =
      ParseQemuCmdline(Cmdline({"qemu", "-name", "guest=x", "-chardev", "path=/a/domain-x/m"}));
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->domain_id, -1);
}

// A read that fails once the file is open (a /proc file of a process that exited meanwhile
// fails with ESRCH; a directory with EISDIR) gives "", never an exception: with an
// istreambuf_iterator it ended the agent (std::terminate on the reaper thread).
TEST(ReadProcFileTest, AFailedReadGivesNothingAndNeverThrows) {
  testing::TempDir dir("regen-reaper-read");
  EXPECT_EQ(ReadProcFile(dir.path()), "");  // opens, then read() fails with EISDIR
  EXPECT_EQ(ReadProcFile(dir.File("missing")), "");
  testing::WriteFileOrDie(dir.File("f"), std::string(10000, 'x') + "end");
  EXPECT_EQ(ReadProcFile(dir.File("f")).size(), 10003u);
  const std::string self = ReadProcFile("/proc/self/cmdline");
  EXPECT_NE(self.find("reaper_test"), std::string::npos);
}

// Starts `script` (its name begins with "qemu", so its process is named so) with `args`.
pid_t Spawn(const std::string& script, std::vector<std::string> args, bool new_session = false) {
  pid_t pid = fork();
  if (pid == 0) {
    if (new_session) setsid();  // as qemu -daemonize does
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(script.c_str()));
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(script.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

std::string FakeQemu(const testing::TempDir& dir, const std::string& name, const char* seconds,
                     int code) {
  std::string path = dir.path() + "/" + name;
  std::ofstream(path) << "#!/bin/sh\nsleep " << seconds << "\nexit " << code << "\n";
  chmod(path.c_str(), 0755);
  return path;
}

TEST(ChildReaperTest, ReapsDomainsAtOnceAndLeavesOtherQemusToTheirParentForAWhile) {
  testing::TempDir dir;
  std::vector<std::pair<QemuIdentity, int>> exits;
  ChildReaper reaper(std::chrono::seconds(30));
  reaper.SetExitCallback([&](const QemuIdentity& who, int status) {
    exits.push_back({who, status});
  });
  // A domain's qemu (libvirt's command line names the guest), and a probe-like qemu without one.
  pid_t domain = Spawn(FakeQemu(dir, "qemu-domain", "0.3", 3),
                       {"-name", "guest=web-0,debug-threads=on", "-S"});
  pid_t probe = Spawn(FakeQemu(dir, "qemu-probe", "0.1", 7), {"-machine", "none", "-daemonize"});
  ASSERT_GT(domain, 0);
  ASSERT_GT(probe, 0);
  // Scans learn the domain while it runs and reap it when it exits.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        reaper.ScanOnce();
        return exits.size() == 1;
      },
      std::chrono::seconds(10)))
      << "the domain's qemu is reaped and reported";
  EXPECT_EQ(exits[0].first.name, "web-0");
  EXPECT_TRUE(WIFEXITED(exits[0].second));
  EXPECT_EQ(WEXITSTATUS(exits[0].second), 3);
  // The probe has long exited; its parent (here the test, in the agent libvirt) still gets it.
  int status = 0;
  ASSERT_EQ(waitpid(probe, &status, 0), probe) << "the reaper took libvirt's child";
  EXPECT_EQ(WEXITSTATUS(status), 7);
  EXPECT_EQ(reaper.reaped(), 0) << "ScanOnce's count; the thread is not running";
}

TEST(ChildReaperTest, ADaemonizedQemuInAnotherSessionIsReapedAtOnce) {
  // libvirt polls the capability probe's daemon with kill(pid, 0) until it is gone: a zombie left
  // for the grace period would stall every probe (and every domain start) by that much.
  testing::TempDir dir;
  ChildReaper reaper(std::chrono::seconds(30));
  pid_t daemon = Spawn(FakeQemu(dir, "qemu-daemon", "0", 0), {"-daemonize"}, /*new_session=*/true);
  ASSERT_GT(daemon, 0);
  int reaped = 0;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        reaped += reaper.ScanOnce();
        return reaped == 1;
      },
      std::chrono::seconds(10)))
      << "reaped well before the 30 s grace";
  EXPECT_EQ(waitpid(daemon, nullptr, WNOHANG), -1) << "gone";
}

TEST(ChildReaperTest, AQemuNobodyWaitsForIsReapedAfterTheGrace) {
  testing::TempDir dir;
  ChildReaper reaper(std::chrono::seconds(2));
  int reported = 0;
  reaper.SetExitCallback([&](const QemuIdentity&, int) { ++reported; });
  pid_t orphan = Spawn(FakeQemu(dir, "qemu-orphan", "0", 0), {"-machine", "none"});
  ASSERT_GT(orphan, 0);
  // A zombie now: the scans within the grace leave it (its parent may be about to wait for it).
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        std::ifstream stat("/proc/" + std::to_string(orphan) + "/stat");
        std::string line;
        std::getline(stat, line);
        return line.find(") Z") != std::string::npos;
      },
      std::chrono::seconds(10)));
  EXPECT_EQ(reaper.ScanOnce(), 0) << "reaped before the grace";
  EXPECT_EQ(reaper.ScanOnce(), 0) << "reaped before the grace";
  // After the grace a scan reaps it.
  int reaped = 0;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        reaped += reaper.ScanOnce();
        return reaped == 1;
      },
      std::chrono::seconds(10)));
  EXPECT_EQ(reported, 0) << "not a domain: nothing to report";
  EXPECT_EQ(waitpid(orphan, nullptr, WNOHANG), -1) << "gone";
}

}  // namespace
}  // namespace regen
