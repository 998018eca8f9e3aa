#include "common/names.h"

#include <gtest/gtest.h>

#include <vector>

namespace regen {
namespace {

TEST(NamesTest, ValidNames) {
  for (const char* n : {"a", "web", "web-0", "db-12-x",
                        "a123456789012345678901234567890123456789012345678901234567890123"}) {
    std::string s(n);
    if (s.size() > 63) s.resize(63);
    EXPECT_TRUE(IsValidName(s)) << s;
  }
}

TEST(NamesTest, InvalidNames) {
  for (std::string n :
       std::vector<std::string>{"", "Web", "0web", "-web", "web_0", "web.0", "web 0", "wéb",
                                std::string(64, 'a'), std::string("we\0b", 4), "web;rm"}) {
    EXPECT_FALSE(IsValidName(n)) << n;
  }
}

TEST(NamesTest, ErrorNamesFieldAndValue) {
  Status s = ValidateName("service.name", "Bad\nName");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("service.name"), std::string::npos);
  EXPECT_NE(s.message().find("\"Bad\\x0aName\""), std::string::npos) << s.message();
}

TEST(NamesTest, MacAndIp) {
  EXPECT_TRUE(IsValidMac("52:54:00:ab:CD:ef"));
  EXPECT_FALSE(IsValidMac("53:54:00:ab:cd:ef"));  // multicast bit
  EXPECT_FALSE(IsValidMac("52:54:00:ab:cd"));
  EXPECT_FALSE(IsValidMac("52-54-00-ab-cd-ef"));
  EXPECT_FALSE(IsValidMac("52:54:00:ab:cd:eg"));
  EXPECT_TRUE(IsValidIpv4("10.0.0.1"));
  EXPECT_FALSE(IsValidIpv4("10.0.0.256"));
  EXPECT_FALSE(IsValidIpv4("10.0.0"));
}

}  // namespace
}  // namespace regen
