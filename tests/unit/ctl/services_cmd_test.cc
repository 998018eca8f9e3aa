// regenctl's service commands (ctl/services_cmd.cc) against the fake AdminService.
#include "tests/unit/ctl/regenctl_test_fixture.h"

namespace regen::ctl_test {
namespace {

// ---- service ----

TEST_F(RegenctlTest, ServiceApplySendsTheFileAndSaysCreatedThenUpdated) {
  std::string path = dir_.File("web.yaml");
  testing::WriteFileOrDie(path, kGoodSpec);

  CtlResult r = Run({"service", "apply", "-f", path});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "service web created\n1 instance pending:\n  web-2: no host has 1 vCPU free\n");
  auto request = fake_.Last<v1::ApplyServiceRequest>();
  EXPECT_EQ(request.spec_yaml(), kGoodSpec);
  EXPECT_EQ(request.file_name(), path);
  EXPECT_TRUE(IsHex32(request.operation_id())) << request.operation_id();
  std::string first_id = request.operation_id();

  // The file may also be given without -f.
  r = Run({"service", "apply", path});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "service web updated\n");
  EXPECT_NE(fake_.Last<v1::ApplyServiceRequest>().operation_id(), first_id);
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"ApplyService", "ApplyService"}));
}

TEST_F(RegenctlTest, ServiceApplyJson) {
  std::string path = dir_.File("web.yaml");
  testing::WriteFileOrDie(path, kGoodSpec);
  json j = RunJson({"service", "apply", "-f", path});
  EXPECT_EQ(j, json::parse(R"({"service":"web","created":true,
                              "pending":["web-2: no host has 1 vCPU free"]})"));
}

TEST_F(RegenctlTest, BadServiceYamlIsRefusedLocallyWithFileLineColumn) {
  std::string path = dir_.File("bad.yaml");
  testing::WriteFileOrDie(path, "name: web\ninstances: many\n");
  CtlResult r = Run({"service", "apply", "-f", path});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("regenctl: service apply: " + path + ":2:"));
  EXPECT_THAT(r.err, HasSubstr("instances"));
  EXPECT_TRUE(fake_.Calls().empty());

  r = Run({"service", "apply", "-f", dir_.File("missing.yaml")});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot read " + dir_.File("missing.yaml")));
  EXPECT_TRUE(fake_.Calls().empty());
}

TEST_F(RegenctlTest, ServiceApplyRefusedByTheControllerExitsOne) {
  std::string path = dir_.File("web.yaml");
  testing::WriteFileOrDie(path, kGoodSpec);
  fake_.FailNext(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              path + ":9:10: version: \"v1\" is running an upgrade"));
  CtlResult r = Run({"service", "apply", "-f", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: " + path + ":9:10: version: \"v1\" is running an upgrade\n");
}

TEST_F(RegenctlTest, ServiceListText) {
  CtlResult r = Run({"service", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(
      r.out,
      "NAME  INSTANCES  RUNNING  UDS  VERSION  VCPUS  MEMORY_MIB  DISK_GIB  SUBNET        DNS\n"
      "web   3          2        3    v1       1      64          1         10.10.0.0/24  "
      "web.lab.example\n"
      "db    1          1        1    v7       2      2048        20        -             -\n");
  EXPECT_EQ(fake_.CallNames(), std::vector<std::string>{"ListServices"});
}

TEST_F(RegenctlTest, ServiceListJson) {
  json j = RunJson({"service", "list"});
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0], json::parse(R"({"name":"web","instances":3,"running":2,"update_domains":3,
      "version":"v1","flavor":{"vcpus":1,"memory_mib":64,"disk_gib":1,"bandwidth_mbps":100},
      "subnet":"10.10.0.0/24","dns_name":"web.lab.example"})"));
  EXPECT_EQ(j[1]["name"], "db");
}

TEST_F(RegenctlTest, ServiceShowText) {
  CtlResult r = Run({"service", "show", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("name:            web\n"));
  EXPECT_THAT(r.out, HasSubstr("instances:       3 (2 running)\n"));
  EXPECT_THAT(r.out, HasSubstr("flavor:          1 vCPU, 64 MiB memory, 1 GiB disk, 100 Mbps\n"));
  EXPECT_THAT(r.out, HasSubstr("dns name:        web.lab.example\n"));
  EXPECT_THAT(r.out, HasSubstr("\nNAME   SERVICE  UD  VERSION  HOST"));
  EXPECT_THAT(r.out, HasSubstr("\nweb-2  web      2   v1       -"));
  EXPECT_THAT(r.out, Not(HasSubstr("db-0")));
  EXPECT_THAT(r.out, HasSubstr("\nspec:\n  name: web\n  instances: 3\n"));
  EXPECT_EQ(fake_.Last<v1::GetServiceRequest>().name(), "web");
}

TEST_F(RegenctlTest, ServiceShowJsonAndNotFound) {
  json j = RunJson({"service", "show", "web"});
  EXPECT_EQ(j["service"]["name"], "web");
  EXPECT_EQ(j["instances"].size(), 3u);
  EXPECT_EQ(j["spec_yaml"], "name: web\ninstances: 3\n");

  CtlResult r = Run({"service", "show", "nope"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: service \"nope\" not found\n");
}

TEST_F(RegenctlTest, ServiceDeleteTextJsonForceAndErrors) {
  CtlResult r = Run({"service", "delete", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "service web deleted: 3 instances stopped and removed\n");
  auto request = fake_.Last<v1::DeleteServiceRequest>();
  EXPECT_EQ(request.service(), "web");
  EXPECT_FALSE(request.force());
  EXPECT_TRUE(IsHex32(request.operation_id())) << request.operation_id();

  json j = RunJson({"service", "delete", "web", "--force"});
  EXPECT_EQ(j, json::parse(R"({"service":"web","removed":["web-0","web-1","web-2"]})"));
  EXPECT_TRUE(fake_.Last<v1::DeleteServiceRequest>().force());

  r = Run({"service", "delete", "nope"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: service \"nope\" does not exist\n");
  r = Run({"service", "delete", "Bad_Name"});
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("Bad_Name"));
  EXPECT_EQ(fake_.CallNames(),
            (std::vector<std::string>{"DeleteService", "DeleteService", "DeleteService"}));
}

}  // namespace
}  // namespace regen::ctl_test
