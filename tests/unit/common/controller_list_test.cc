// Lists of controller addresses (agent.yaml controller_address, regenctl --controller) and the
// standby controller's answer naming the active one.
#include "common/controller_list.h"

#include <gtest/gtest.h>

namespace regen {
namespace {

using Addresses = std::vector<std::string>;

TEST(ControllerListTest, ParsesOneOrSeveralAddresses) {
  auto one = ParseControllerList("ctl.lab:7400");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(*one, Addresses{"ctl.lab:7400"});
  auto three = ParseControllerList("a:7400, 10.0.0.2:7400 ,[::1]:7400");
  ASSERT_TRUE(three.ok()) << three.status().ToString();
  EXPECT_EQ(*three, (Addresses{"a:7400", "10.0.0.2:7400", "[::1]:7400"}));
  EXPECT_EQ(JoinControllerList(*three), "a:7400,10.0.0.2:7400,[::1]:7400");
}

TEST(ControllerListTest, NamesTheBadEntryAndItsValue) {
  struct Case {
    std::string text;
    std::string error;
  };
  const Case cases[] = {
      {"", "must name at least one controller \"host:port\""},
      {"a:7400,b", "entry 2 of 2 \"b\" must be \"host:port\" with a port from 1 to 65535"},
      {"a:7400,b:0", "entry 2 of 2 \"b:0\" must be \"host:port\""},
      {"a:7400,,c:1", "entry 2 of 3 is empty"},
      {"a:7400,b:1,a:7400", "entry 3 of 3 \"a:7400\" is listed twice"},
      {"a:7400,", "entry 2 of 2 is empty"},
  };
  for (const Case& c : cases) {
    auto r = ParseControllerList(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_EQ(r.status().message().rfind(c.error, 0), 0u)
        << c.text << ": " << r.status().message();
  }
}

TEST(ControllerListTest, ReadsTheStandbyAnswer) {
  EXPECT_EQ(StandbyRedirect("standby controller; the active controller is at b:7400"), "b:7400");
  EXPECT_EQ(StandbyRedirect("standby controller; the active controller is at b:7400."), "b:7400");
  EXPECT_EQ(StandbyRedirect("standby controller; the active controller is at [::1]:7400 (etcd)"),
            "[::1]:7400");
  EXPECT_EQ(StandbyRedirect("standby controller; the active controller is at unknown"), "");
  EXPECT_EQ(StandbyRedirect("standby controller; the active controller is at ???"), "");
  EXPECT_EQ(StandbyRedirect("store is read-only"), std::nullopt);
  EXPECT_EQ(StandbyRedirect("Connection refused"), std::nullopt);
}

}  // namespace
}  // namespace regen
