// regenctl's maintenance commands (ctl/maintenance_cmd.cc) against the fake AdminService.
#include "tests/unit/ctl/regenctl_test_fixture.h"

namespace regen::ctl_test {
namespace {

TEST_F(RegenctlTest, MaintenanceStartSendsTheDurationAndShowsInHostList) {
  CtlResult r = Run({"maintenance", "start", "--for", "10m", "--reason", "kernel update"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "maintenance until 2024-05-01T12:10:00.000Z (kernel update): agents hold their "
            "domains, nothing is healed\n");
  auto request = fake_.Last<v1::MaintenanceStartRequest>();
  EXPECT_EQ(request.duration_ms(), 600000);
  EXPECT_EQ(request.reason(), "kernel update");
  EXPECT_TRUE(IsHex32(request.operation_id())) << request.operation_id();

  r = Run({"host", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("maintenance until 2024-05-01T12:10:00.000Z"));
  EXPECT_THAT(r.out, HasSubstr("up (maintenance)"));
  json hosts = RunJson({"host", "list"});
  EXPECT_EQ(hosts[0]["maintenance"], true);

  json status = RunJson({"maintenance", "status"});
  EXPECT_EQ(status["active"], true);
  EXPECT_EQ(status["until_unix_ms"], 1714564800000 + 600000);

  r = Run({"maintenance", "end"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "no maintenance; holds granted until 2024-05-01T12:10:00.000Z delay host-down "
            "decisions\n");
  r = Run({"maintenance", "end"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("no maintenance is running"));
}

TEST_F(RegenctlTest, MaintenanceStartRefusesABadDurationAndSendsNothing) {
  for (const char* bad : {"10", "0s", "500ms", "ten minutes", "-5m"}) {
    CtlResult r = Run({"maintenance", "start", "--for", bad});
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_THAT(r.err, HasSubstr("--for \"" + std::string(bad) + "\"")) << r.err;
  }
  CtlResult r = Run({"maintenance", "start"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--for"));
  EXPECT_TRUE(fake_.CallNames().empty());
}

}  // namespace
}  // namespace regen::ctl_test
