// domain_type auto (issue 16): libvirt's test driver gives test; a missing /dev/kvm, libvirt
// refusing kvm, or a test guest that hangs or fails under KVM give qemu with the reason; kvm only
// when the test guest printed its marker. The "emulators" are scripts run by the real command
// runner; one of them runs the real qemu-system-x86_64 with TCG in place of KVM, which shows
// that the 512-byte test guest itself prints the marker and ends qemu.
#include "agent/domain_type.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "tests/fakes/fake_hypervisor.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::FakeHypervisor;
using testing::TempDir;
using testing::WriteFileOrDie;

class DomainTypeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hv_.driver_name = "QEMU";
    WriteFileOrDie(dir_.File("kvm"), "");  // a /dev/kvm stand-in the test can open
    options_.dev_kvm = dir_.File("kvm");
    options_.work_dir = dir_.path();
    options_.timeout = milliseconds(1500);
  }
  // An emulator script; its argv goes to args.txt. Returned as the domain capabilities' path.
  std::string Emulator(const std::string& body) {
    const std::string path = dir_.File("fake-qemu");
    WriteFileOrDie(path, "#!/bin/sh\necho \"$@\" > " + dir_.File("args.txt") + "\n" + body);
    chmod(path.c_str(), 0755);
    hv_.domain_capabilities = "<domainCapabilities>\n  <path>" + path +
                              "</path>\n  <domain>kvm</domain>\n</domainCapabilities>\n";
    return path;
  }
  DomainTypeChoice Resolve(const std::string& configured = "auto") {
    return ResolveDomainType(configured, hv_, runner_, options_);
  }

  TempDir dir_{"regen-domain-type"};
  FakeHypervisor hv_;
  RealCommandRunner runner_;
  KvmProbeOptions options_;
};

TEST_F(DomainTypeTest, ForcedTypesAreTakenAsGivenWithoutAProbe) {
  Emulator("exit 3\n");
  for (const char* type : {"kvm", "qemu", "test"}) {
    DomainTypeChoice c = Resolve(type);
    EXPECT_EQ(c.type, type);
    EXPECT_EQ(c.reason, "set in agent.yaml (domain_type)");
  }
  EXPECT_FALSE(std::ifstream(dir_.File("args.txt")).good()) << "a forced type ran the probe";
}

TEST_F(DomainTypeTest, TheTestDriverGivesTest) {
  hv_.driver_name = "TEST";
  EXPECT_EQ(Resolve().type, "test");
}

TEST_F(DomainTypeTest, NoDevKvmOrLibvirtRefusingKvmGivesTcgWithTheReason) {
  Emulator(std::string("echo ") + kKvmProbeMarker + "\nexit 1\n");
  options_.dev_kvm = dir_.File("no-such-kvm");
  DomainTypeChoice c = Resolve();
  EXPECT_EQ(c.type, "qemu");
  EXPECT_NE(c.reason.find(dir_.File("no-such-kvm") + " does not exist"), std::string::npos)
      << c.reason;

  options_.dev_kvm = dir_.File("kvm");
  hv_.domain_capabilities = Status(Code::kInvalidArgument, "KVM is not supported on this host");
  c = Resolve();
  EXPECT_EQ(c.type, "qemu");
  EXPECT_NE(c.reason.find("libvirt cannot run type kvm: KVM is not supported"), std::string::npos)
      << c.reason;
  EXPECT_FALSE(std::ifstream(dir_.File("args.txt")).good()) << "the probe ran anyway";
}

TEST_F(DomainTypeTest, AGuestThatPrintsTheMarkerGivesKvm) {
  Emulator(std::string("echo ") + kKvmProbeMarker + "\nexit 1\n");
  DomainTypeChoice c = Resolve();
  EXPECT_EQ(c.type, "kvm") << c.reason;
  EXPECT_NE(c.reason.find("a test guest ran under KVM"), std::string::npos) << c.reason;
  std::ifstream args(dir_.File("args.txt"));
  std::string line;
  std::getline(args, line);
  EXPECT_NE(line.find("-accel kvm"), std::string::npos) << line;
  EXPECT_NE(line.find("file=" + dir_.File("kvm-probe.img")), std::string::npos) << line;
  EXPECT_FALSE(std::ifstream(dir_.File("kvm-probe.img")).good()) << "the probe image was left";
}

TEST_F(DomainTypeTest, AGuestThatHangsOrFailsUnderKvmGivesTcg) {
  // What a nested /dev/kvm without support does here: qemu starts, the guest never runs.
  options_.timeout = milliseconds(300);
  Emulator("exec sleep 30\n");
  DomainTypeChoice c = Resolve();
  EXPECT_EQ(c.type, "qemu");
  EXPECT_NE(c.reason.find("printed nothing in 300 ms"), std::string::npos) << c.reason;

  Emulator("echo 'failed to initialize kvm: Permission denied' >&2\nexit 1\n");
  c = Resolve();
  EXPECT_EQ(c.type, "qemu");
  EXPECT_NE(c.reason.find("exit code 1"), std::string::npos) << c.reason;
  EXPECT_NE(c.reason.find("failed to initialize kvm: Permission denied"), std::string::npos)
      << c.reason;
}

// Issue 16: an agent restarted on the same boot takes the cached verdict at once (a /dev/kvm
// that hangs guests would otherwise cost the probe's timeout before the first Hello, with the old
// session's lease running out); another boot, /dev/kvm or emulator, or a bad cache, probes anew.
TEST_F(DomainTypeTest, TheVerdictIsCachedForTheBoot) {
  options_.timeout = milliseconds(300);
  options_.cache_file = dir_.File("domain-type.json");
  options_.boot_id = "boot-1";
  Emulator("exec sleep 30\n");  // a /dev/kvm that cannot run guests
  DomainTypeChoice first = Resolve();
  ASSERT_EQ(first.type, "qemu");
  ASSERT_TRUE(std::ifstream(dir_.File("args.txt")).good()) << "the first start did not probe";

  std::remove(dir_.File("args.txt").c_str());
  DomainTypeChoice again = Resolve();
  EXPECT_EQ(again.type, "qemu");
  EXPECT_NE(again.reason.find(first.reason), std::string::npos) << again.reason;
  EXPECT_NE(again.reason.find("cached in " + dir_.File("domain-type.json")), std::string::npos)
      << again.reason;
  EXPECT_FALSE(std::ifstream(dir_.File("args.txt")).good()) << "a restart on the same boot probed";

  options_.boot_id = "boot-2";  // rebooted (e.g. nested virtualization switched on): probe anew
  Emulator(std::string("echo ") + kKvmProbeMarker + "\nexit 1\n");
  DomainTypeChoice rebooted = Resolve();
  EXPECT_EQ(rebooted.type, "kvm") << rebooted.reason;
  EXPECT_TRUE(std::ifstream(dir_.File("args.txt")).good());
  EXPECT_EQ(rebooted.reason.find("cached"), std::string::npos);

  std::remove(dir_.File("args.txt").c_str());
  WriteFileOrDie(dir_.File("domain-type.json"), "{not json");
  EXPECT_EQ(Resolve().type, "kvm");
  EXPECT_TRUE(std::ifstream(dir_.File("args.txt")).good()) << "a garbled cache was trusted";

  std::remove(dir_.File("args.txt").c_str());
  options_.dev_kvm = dir_.File("kvm2");
  WriteFileOrDie(dir_.File("kvm2"), "");
  EXPECT_EQ(Resolve().type, "kvm");
  EXPECT_TRUE(std::ifstream(dir_.File("args.txt")).good()) << "another /dev/kvm took the cache";
}

TEST_F(DomainTypeTest, TheTestGuestPrintsItsMarkerOnRealQemu) {
  // The real emulator with TCG for KVM (this machine's KVM may not run guests): the probe's
  // verdict then rests on the boot sector alone.
  const std::string qemu = "/usr/bin/qemu-system-x86_64";
  if (!std::ifstream(qemu).good()) {
    FAIL() << qemu << " is missing (apt-get install qemu-system-x86)";
  }
  options_.timeout = milliseconds(20000);  // TCG on a loaded 2-core machine
  Emulator(
      "for a in \"$@\"; do [ \"$a\" = kvm ] && a=tcg; set -- \"$@\" \"$a\"; shift; done\n"
      "exec " +
      qemu + " \"$@\"\n");
  DomainTypeChoice c = Resolve();
  EXPECT_EQ(c.type, "kvm") << c.reason;
  EXPECT_EQ(KvmProbeBootSector().size(), 512u);
  EXPECT_EQ(EmulatorOf("<x><path>/a/b</path></x>"), "/a/b");
  EXPECT_EQ(EmulatorOf("<x></x>"), "");
}

}  // namespace
}  // namespace regen
