// QemuKiller (fast fencing): a pid is SIGKILLed only when /proc says it is the named domain's
// qemu; a stale pid file, a reused pid, another domain's qemu or a process that merely mentions
// `guest=NAME` is never touched. Real processes: a stand-in "qemu" is /bin/sh started through a
// symlink named qemu-fake (so its comm is qemu-fake) with `-name guest=NAME` in its arguments.
#include "agent/qemu_killer.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using testing::ChildProcess;
using testing::TempDir;
using testing::WaitFor;
using testing::WriteFileOrDie;

class QemuKillerTest : public ::testing::Test {
 protected:
  QemuKillerTest() : dir_("regen-qemu-killer") {
    std::filesystem::create_symlink("/bin/sh", dir_.File("qemu-fake"));
    std::filesystem::create_directories(dir_.File("run/qemu"));
  }
  // A stand-in qemu of `guest` (comm qemu-fake); started through `program` when given.
  std::unique_ptr<ChildProcess> Spawn(const std::string& guest, std::string program = "") {
    if (program.empty()) program = dir_.File("qemu-fake");
    // sh -c CMD $0 $1: "-name" and "guest=..." land in the command line, the shell stays alive.
    auto p = std::make_unique<ChildProcess>(
        std::vector<std::string>{program, "-c", "sleep 30; :", "-name",
                                 "guest=" + guest + ",debug-threads=on"},
        dir_.File("child.log"));
    // Wait until the exec happened (the command line is the new one).
    EXPECT_TRUE(
        WaitFor([&] { return testing::ProcCmdline(p->pid()).find("guest=") != std::string::npos; },
                std::chrono::milliseconds(5000)));
    return p;
  }
  void PidFile(const std::string& name, const std::string& text) {
    WriteFileOrDie(dir_.File("run/qemu/" + name + ".pid"), text);
  }
  static bool KilledBySigkill(ChildProcess& p) {
    bool gone = WaitFor([&] { return !p.Running(); }, std::chrono::milliseconds(5000));
    int status = p.Stop();
    return gone && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  }
  TempDir dir_;
};

TEST(QemuPidDirTest, EmbedSystemAndTestDriver) {
  EXPECT_EQ(QemuPidDir("qemu:///embed?root=/var/lib/x"), "/var/lib/x/run/qemu");
  EXPECT_EQ(QemuPidDir("qemu:///embed?root=/r&foo=1"), "/r/run/qemu");
  EXPECT_EQ(QemuPidDir("qemu:///system"), "/run/libvirt/qemu");
  EXPECT_EQ(QemuPidDir("test:///default"), std::nullopt);
  EXPECT_EQ(QemuPidDir("qemu:///embed?root="), std::nullopt);
}

TEST_F(QemuKillerTest, KillsTheVerifiedQemuFromThePidFile) {
  auto qemu = Spawn("vm-a");
  PidFile("vm-a", std::to_string(qemu->pid()) + "\n");
  EXPECT_TRUE(IsQemuOf(qemu->pid(), "vm-a"));
  QemuKiller killer(dir_.File("run/qemu"), nullptr);
  auto killed = killer.Kill({"vm-a"});
  ASSERT_EQ(killed.size(), 1u);
  EXPECT_EQ(killed[0], qemu->pid());
  EXPECT_TRUE(KilledBySigkill(*qemu));
}

TEST_F(QemuKillerTest, KillsTheVerifiedQemuTheReaperKnows) {
  auto qemu = Spawn("vm-a");
  QemuKiller killer("", [&](const std::string& name) {
    return name == "vm-a" ? std::vector<pid_t>{qemu->pid()} : std::vector<pid_t>{};
  });
  EXPECT_EQ(killer.Kill({"vm-a"}).size(), 1u);
  EXPECT_TRUE(KilledBySigkill(*qemu));
}

TEST_F(QemuKillerTest, NeverKillsAPidThatIsNotThatDomainsQemu) {
  // A stale pid file now naming an unrelated process (pid reused), another domain's qemu, a
  // non-qemu process whose arguments say guest=vm-a, and our own pid.
  auto unrelated = std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sleep", "60"},
                                                  dir_.File("sleep.log"));
  auto other_domain = Spawn("vm-b");
  auto not_qemu = Spawn("vm-a", "/bin/sh");
  ASSERT_FALSE(IsQemuOf(unrelated->pid(), "vm-a"));
  ASSERT_FALSE(IsQemuOf(other_domain->pid(), "vm-a"));
  ASSERT_TRUE(IsQemuOf(other_domain->pid(), "vm-b"));
  ASSERT_FALSE(IsQemuOf(not_qemu->pid(), "vm-a"));
  ASSERT_FALSE(IsQemuOf(getpid(), "vm-a"));
  ASSERT_FALSE(IsQemuOf(1, "vm-a"));
  for (pid_t pid : {unrelated->pid(), other_domain->pid(), not_qemu->pid(), getpid()}) {
    PidFile("vm-a", std::to_string(pid));
    QemuKiller killer(dir_.File("run/qemu"), [&](const std::string&) {
      return std::vector<pid_t>{unrelated->pid(), other_domain->pid(), not_qemu->pid()};
    });
    EXPECT_TRUE(killer.Kill({"vm-a"}).empty()) << "pid " << pid;
  }
  for (const char* junk : {"", "abc", "1", "-5", "0", "99999999999"}) {
    PidFile("vm-a", junk);
    EXPECT_TRUE(QemuKiller(dir_.File("run/qemu"), nullptr).Kill({"vm-a"}).empty()) << junk;
  }
  // A name that would leave the pid directory is never looked up.
  EXPECT_TRUE(QemuKiller(dir_.File("run/qemu"), nullptr).Candidates("../run/qemu/vm-a").empty());
  EXPECT_TRUE(unrelated->Running());
  EXPECT_TRUE(other_domain->Running());
  EXPECT_TRUE(not_qemu->Running());
}

}  // namespace
}  // namespace regen
