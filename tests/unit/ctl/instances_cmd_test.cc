// regenctl's instance commands (ctl/instances_cmd.cc) against the fake AdminService.
#include "tests/unit/ctl/regenctl_test_fixture.h"

namespace regen::ctl_test {
namespace {

// ---- instance ----

TEST_F(RegenctlTest, InstanceListText) {
  CtlResult r = Run({"instance", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_EQ(lines[0],
            "NAME   SERVICE  UD  VERSION  HOST    STATE    GEN  VCPUS  MEMORY_MIB  DISK_GIB  "
            "BANDWIDTH  IP         MAC                DISK   REASON");
  EXPECT_EQ(lines[1],
            "web-0  web      0   v1       host-a  running  1    1      64          1         "
            "100        10.10.0.2  52:54:00:00:00:02  fresh");
  EXPECT_EQ(lines[3],
            "web-2  web      2   v1       -       pending  0    1      64          1         "
            "100        -          -                  fresh  no host has 1 vCPU free");
  EXPECT_EQ(fake_.Last<v1::ListInstancesRequest>().service(), "");
}

TEST_F(RegenctlTest, InstanceListWithoutReasonsHasNoReasonColumn) {
  CtlResult r = Run({"instance", "list", "--service", "db"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("-    none\n")) << "db has no image: DISK none";
  EXPECT_THAT(r.out, Not(HasSubstr("REASON")));
  EXPECT_THAT(r.out, HasSubstr("db-0"));
  EXPECT_THAT(r.out, Not(HasSubstr("web-0")));
  EXPECT_EQ(fake_.Last<v1::ListInstancesRequest>().service(), "db");
}

TEST_F(RegenctlTest, InstanceListJsonHasExactlyTheDocumentedFields) {
  json j = RunJson({"instance", "list", "--service", "web"});
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 3u);
  const std::set<std::string> fields = {
      "name",  "service",    "update_domain", "version",        "host", "state", "generation",
      "vcpus", "memory_mib", "disk_gib",      "bandwidth_mbps", "ip",   "mac",   "disk"};
  EXPECT_EQ(Keys(j[0]), fields);
  std::set<std::string> with_reason = fields;
  with_reason.insert("reason");
  EXPECT_EQ(Keys(j[2]), with_reason);
  EXPECT_EQ(j[0], json::parse(R"({"name":"web-0","service":"web","update_domain":0,
      "version":"v1","host":"host-a","state":"running","generation":1,"vcpus":1,
      "memory_mib":64,"disk_gib":1,"bandwidth_mbps":100,"ip":"10.10.0.2",
      "mac":"52:54:00:00:00:02","disk":"overlay:/var/lib/regen/images/web-v1.qcow2"})"));
  EXPECT_EQ(j[2]["host"], "");
  EXPECT_EQ(j[2]["reason"], "no host has 1 vCPU free");
}

}  // namespace
}  // namespace regen::ctl_test
