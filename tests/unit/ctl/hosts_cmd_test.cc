// regenctl's host commands and failover (ctl/hosts_cmd.cc) against the fake AdminService.
#include "tests/unit/ctl/regenctl_test_fixture.h"

namespace regen::ctl_test {
namespace {

// ---- host ----

TEST_F(RegenctlTest, HostListText) {
  CtlResult r = Run({"host", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "NAME    ADDRESS       STATE  TYPE  VCPUS  MEMORY_MIB  LAST_HEARTBEAT            "
            "TOPOLOGY_REV\n"
            "host-a  192.168.0.11  up     kvm   3/8    2112/16384  2024-05-01T12:00:00.250Z  7\n"
            "host-b  192.168.0.12  down   -     1/4    64/8192     -                         0\n");
}

TEST_F(RegenctlTest, HostListJson) {
  json j = RunJson({"host", "list"});
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0], json::parse(R"({"name":"host-a","address":"192.168.0.11","state":"up",
      "capacity":{"vcpus":8,"memory_mib":16384,"disk_gib":200,"bandwidth_mbps":10000},
      "allocated":{"vcpus":3,"memory_mib":2112,"disk_gib":21,"bandwidth_mbps":100},
      "last_heartbeat_unix_ms":1714564800250,"applied_topology_revision":7,
      "domain_type":"kvm","domain_type_reason":"auto: libvirt offers kvm and a test guest ran under KVM",
      "maintenance":false})"));
}

TEST_F(RegenctlTest, HostDrainTextAndJson) {
  CtlResult r = Run({"host", "drain", "host-a"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "host host-a drained: 2 instances moved\n"
            "  web-0 -> host-b (generation 2)\n"
            "  db-0 not placed: no host has 64 MiB free\n");
  auto request = fake_.Last<v1::DrainRequest>();
  EXPECT_EQ(request.host(), "host-a");
  EXPECT_TRUE(IsHex32(request.operation_id()));

  json j = RunJson({"host", "drain", "host-a"});
  EXPECT_EQ(j["host"], "host-a");
  ASSERT_EQ(j["moved"].size(), 2u);
  EXPECT_EQ(j["moved"][0]["host"], "host-b");
  EXPECT_EQ(j["moved"][1]["reason"], "no host has 64 MiB free");

  r = Run({"host", "drain", "host-z"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: host \"host-z\" unknown\n");
}

TEST_F(RegenctlTest, HostUndrainCordonUncordon) {
  CtlResult r = Run({"host", "undrain", "host-a"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "host host-a undrained: now up (takes new instances)\n");
  auto request = fake_.Last<v1::HostRequest>();
  EXPECT_EQ(request.host(), "host-a");
  EXPECT_TRUE(IsHex32(request.operation_id()));

  r = Run({"host", "cordon", "host-a"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "host host-a cordoned: now cordoned (no new instances; running ones stay)\n");
  json j = RunJson({"host", "uncordon", "host-a"});
  EXPECT_EQ(j["name"], "host-a");
  EXPECT_EQ(j["state"], "up");
  EXPECT_EQ(fake_.CallNames(),
            (std::vector<std::string>{"UndrainHost", "CordonHost", "UncordonHost"}));

  r = Run({"host", "undrain", "host-b"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: host host-b is down, not draining: nothing to undrain\n");
  r = Run({"host", "cordon", "host-z"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: host \"host-z\" is not known\n");
  // A bad name is refused before anything is sent.
  r = Run({"host", "uncordon", "Host_A"});
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("Host_A"));
  EXPECT_EQ(fake_.CallNames().size(), 5u);
}

// ---- failover ----

TEST_F(RegenctlTest, FailoverNamesOldAndNewHost) {
  CtlResult r = Run({"failover", "web-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "instance web-1 moved from host-b to host-c (generation 3)\n");
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"ListInstances", "Failover"}));
  EXPECT_EQ(fake_.Last<v1::ListInstancesRequest>().service(), "web");
  auto request = fake_.Last<v1::FailoverRequest>();
  EXPECT_EQ(request.instance(), "web-1");
  EXPECT_EQ(request.to_host(), "");
  EXPECT_TRUE(IsHex32(request.operation_id()));
}

TEST_F(RegenctlTest, FailoverToAHostJson) {
  json j = RunJson({"failover", "web-0", "--to", "host-b"});
  EXPECT_EQ(fake_.Last<v1::FailoverRequest>().to_host(), "host-b");
  EXPECT_EQ(j["name"], "web-0");
  EXPECT_EQ(j["host"], "host-b");
  EXPECT_EQ(j["generation"], 2);
  EXPECT_EQ(j.size(), 14u);  // no "reason" when it is empty
}

TEST_F(RegenctlTest, FailoverWhenTheOldHostIsUnknownNamesTheNewOne) {
  fake_.FailNext(grpc::Status(grpc::StatusCode::INTERNAL, "listing broke"));
  CtlResult r = Run({"failover", "web-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "instance web-1 moved to host-c (generation 3)\n");
}

TEST_F(RegenctlTest, FailoverOfAnUnknownInstanceExitsOne) {
  CtlResult r = Run({"failover", "web-9"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: instance \"web-9\" not found\n");
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace regen::ctl_test
