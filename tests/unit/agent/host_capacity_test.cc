// The capacity an agent offers when agent.yaml does not say it all (issue 16: a host set up as
// the README says reported 0 disk and 0 bandwidth, and any flavor asking for either stayed
// pending): configured values as they are, measured ones less the reserve, and a NIC whose
// speed is unknown assumed with a warning; the probes on this machine's loopback and a fake sysfs.
#include "agent/host_capacity.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "config/agent_config.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using testing::TempDir;
using testing::WriteFileOrDie;

TEST(HostCapacityTest, MeasuredValuesLessTheReserveConfiguredOnesAsTheyAre) {
  MeasuredCapacity m;
  m.vcpus = 16;
  m.memory_mib = 65536;
  m.disk_gib = 900;
  m.disk_dir = "/var/lib/regen";
  m.bandwidth_mbps = 10000;
  m.nic = "eno1";
  FilledCapacity f = FillCapacity(Resources{}, Resources{0, 512, 5, 0}, m);
  EXPECT_EQ(f.value, (Resources{16, 65024, 895, 10000}));
  EXPECT_EQ(f.explained,
            "16 vCPU (libvirt 16), 65024 MiB memory (libvirt 65536 - reserve 512), 895 GiB disk "
            "(room in /var/lib/regen 900 - reserve 5), 10000 Mbps (NIC eno1 10000)");
  EXPECT_EQ(f.warnings, "");
  // Configured values win and take no reserve; the others are still measured.
  f = FillCapacity(Resources{4, 0, 0, 100}, Resources{1, 512, 5, 50}, m);
  EXPECT_EQ(f.value, (Resources{4, 65024, 895, 100}));
  EXPECT_NE(f.explained.find("4 vCPU (capacity.vcpus)"), std::string::npos) << f.explained;
  // A reserve larger than what there is leaves 0, never less.
  m.disk_gib = 3;
  EXPECT_EQ(FillCapacity(Resources{}, Resources{0, 0, 5, 0}, m).value.disk_gib, 0);
}

TEST(HostCapacityTest, WhatCannotBeMeasuredIsSaidAndBandwidthIsAssumed) {
  MeasuredCapacity m;  // libvirt unreachable, no disk, a virtual NIC
  m.nic = "br0";
  FilledCapacity f = FillCapacity(Resources{}, Resources{0, 512, 5, 0}, m);
  EXPECT_EQ(f.value, (Resources{0, 0, 0, kDefaultBandwidthMbps}));
  EXPECT_NE(f.warnings.find("vcpus: cannot measure it"), std::string::npos) << f.warnings;
  EXPECT_NE(f.warnings.find("disk_gib: cannot measure it"), std::string::npos) << f.warnings;
  EXPECT_NE(f.warnings.find("NIC br0 has no speed in sysfs"), std::string::npos) << f.warnings;
  EXPECT_NE(f.warnings.find("set capacity.bandwidth_mbps"), std::string::npos) << f.warnings;
  // Configured: no assumption, no warning about it.
  f = FillCapacity(Resources{0, 0, 0, 2500}, Resources{}, m);
  EXPECT_EQ(f.value.bandwidth_mbps, 2500);
  EXPECT_EQ(f.warnings.find("bandwidth"), std::string::npos) << f.warnings;
}

TEST(HostCapacityTest, DiskRoomCountsFreeSpaceAndTheAgentsOwnDisks) {
  TempDir dir("regen-capacity-test");
  auto before = DiskRoomGib(dir.path(), dir.File("disks"));
  ASSERT_TRUE(before.has_value());
  EXPECT_GT(*before, 0);
  EXPECT_EQ(DiskRoomGib(dir.File("no-such-dir"), dir.File("disks")), std::nullopt);
}

TEST(HostCapacityTest, NicSpeedOfTheAddressFromSysfs) {
  TempDir sys("regen-capacity-sys");
  // 127.0.0.1 is on lo; a fake sysfs says 10000 Mbit/s, then -1 (what virtual NICs say).
  std::filesystem::create_directories(sys.File("class/net/lo"));
  WriteFileOrDie(sys.File("class/net/lo/speed"), "10000\n");
  NicSpeed s = NicSpeedOf("127.0.0.1", sys.path());
  EXPECT_EQ(s.nic, "lo");
  EXPECT_EQ(s.mbps, std::optional<int64_t>(10000));
  WriteFileOrDie(sys.File("class/net/lo/speed"), "-1\n");
  EXPECT_EQ(NicSpeedOf("127.0.0.1", sys.path()).mbps, std::nullopt);
  // No NIC holds it; not an address.
  EXPECT_EQ(NicSpeedOf("192.0.2.77", sys.path()).nic, "");
  EXPECT_EQ(NicSpeedOf("not-an-ip", sys.path()).nic, "");
}

// agent.yaml: capacity: keys may be left out (measured); reserve: has a default and can be set;
// bad values name the field.
TEST(HostCapacityTest, ConfigTakesPartialCapacityAndAReserve) {
  auto c = ParseAgentConfig("host_name: host-1\ncapacity: {vcpus: 4}\n", "agent.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->capacity.has_value());
  EXPECT_EQ(*c->capacity, (Resources{4, 0, 0, 0}));
  EXPECT_EQ(c->reserve, (Resources{0, 512, 5, 0}));
  c = ParseAgentConfig("host_name: host-1\nreserve: {memory_mib: 2048, disk_gib: 20}\n",
                       "agent.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->capacity.has_value());
  EXPECT_EQ(c->reserve, (Resources{0, 2048, 20, 0}));
  c = ParseAgentConfig("host_name: host-1\nreserve: {memory_mib: -1}\n", "agent.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("reserve.memory_mib"), std::string::npos)
      << c.status().message();
  c = ParseAgentConfig("host_name: host-1\ncapacity: {disk_gib: 0}\n", "agent.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("capacity.disk_gib"), std::string::npos)
      << c.status().message();
}

}  // namespace
}  // namespace regen
