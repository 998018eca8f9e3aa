// regenctl events (ctl/events_cmd.cc) against the fake AdminService.
#include "tests/unit/ctl/regenctl_test_fixture.h"

namespace regen::ctl_test {
namespace {

// ---- events ----

TEST_F(RegenctlTest, EventsText) {
  CtlResult r = Run({"events"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[0],
            "1      2024-05-01T12:00:00.250Z host_state   -            -              host-b       "
            "host-b is down");
  EXPECT_EQ(lines[1],
            "2      2024-05-01T12:00:01.000Z reallocation web          web-1          host-c       "
            "web-1 moved from host-b to host-c");
  EXPECT_THAT(lines[2], HasSubstr("2024-05-01T12:00:02.005Z failure "));
  auto request = fake_.Last<v1::EventsRequest>();
  EXPECT_EQ(request.after_sequence(), 0);
  EXPECT_FALSE(request.follow());
}

TEST_F(RegenctlTest, EventsJsonLinesEmbedTheDetail) {
  CtlResult r = Run({"events", "--after", "1", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  json e2 = json::parse(lines[0]);
  EXPECT_EQ(e2, json::parse(R"({"sequence":2,"unix_ms":1714564801000,"kind":"reallocation",
      "service":"web","instance":"web-1","host":"host-c",
      "message":"web-1 moved from host-b to host-c",
      "detail":{"from":"host-b","to":"host-c","generation":3}})"));
  json e3 = json::parse(lines[1]);
  EXPECT_EQ(e3["sequence"], 3);
  EXPECT_FALSE(e3.contains("detail"));  // its json field is not JSON
  EXPECT_EQ(fake_.Last<v1::EventsRequest>().after_sequence(), 1);
}

TEST_F(RegenctlTest, EventsFollowPrintsUntilTheStreamEnds) {
  CtlResult r = Run({"events", "--follow", "--after", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_EQ(lines[0].substr(0, 2), "3 ");
  EXPECT_THAT(lines[1], HasSubstr("topology revision 4"));
  auto request = fake_.Last<v1::EventsRequest>();
  EXPECT_TRUE(request.follow());
  EXPECT_EQ(request.after_sequence(), 2);
}

}  // namespace
}  // namespace regen::ctl_test
