#include "common/names.h"

#include <gtest/gtest.h>

#include <string>
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

TEST(NamesTest, DnsNames) {
  for (const char* good : {"web", "web.lab.example", "a-b.c0", "0.x"}) {
    EXPECT_TRUE(IsValidDnsName(good)) << good;
  }
  for (const char* bad : {"", "Web", "web.", ".web", "a..b", "-a", "a-", "a_b", "a b"}) {
    EXPECT_FALSE(IsValidDnsName(bad)) << bad;
  }
  EXPECT_TRUE(IsValidDnsName(std::string(63, 'a')));
  EXPECT_FALSE(IsValidDnsName(std::string(64, 'a')));
}

TEST(NamesTest, HostPort) {
  for (const char* good :
       {"127.0.0.1:7400", "ctl.lab:1", "localhost:65535", "[::1]:53", "[::]:7400"}) {
    EXPECT_TRUE(IsValidHostPort(good, false)) << good;
  }
  for (const char* bad : {"", "7400", ":7400", "host:", "host:0", "host:65536", "host:+1", "::1:53",
                          "[::1]", "[zz]:53", "a b:1", "host:1x"}) {
    EXPECT_FALSE(IsValidHostPort(bad, false)) << bad;
  }
  EXPECT_TRUE(IsValidHostPort("10.0.0.1:53", true));
  EXPECT_TRUE(IsValidHostPort("[::1]:53", true));
  EXPECT_FALSE(IsValidHostPort("ns.lab:53", true));
}

TEST(NamesTest, VersionNames) {
  for (const char* good : {"v1", "1", "v1.2.3", "2024-01_rc"}) {
    EXPECT_TRUE(IsValidVersionName(good)) << good;
  }
  for (const char* bad : {"", "V1", ".v1", "-v1", "_v1", "v 1", "v1/2"}) {
    EXPECT_FALSE(IsValidVersionName(bad)) << bad;
  }
  EXPECT_TRUE(IsValidVersionName(std::string(63, 'a')));
  EXPECT_FALSE(IsValidVersionName(std::string(64, 'a')));
  EXPECT_NE(std::string(kVersionNameRule).find("[a-z0-9][a-z0-9._-]{0,62}"), std::string::npos);
}

TEST(NamesTest, ZoneNames) {
  for (const char* good : {"lab.example.", "example.", "a-b.c0."}) {
    EXPECT_TRUE(IsValidZoneName(good)) << good;
  }
  for (const char* bad : {"", ".", "lab.example", "Lab.example.", "-a.lab.", "a..b.", "a_b."}) {
    EXPECT_FALSE(IsValidZoneName(bad)) << bad;
  }
}

TEST(NamesTest, SplitHostPort) {
  std::string host = "unchanged";
  uint16_t port = 7;
  bool bracketed = true;
  ASSERT_TRUE(SplitHostPort("ns.lab:53", &host, &port, &bracketed));
  EXPECT_EQ(host, "ns.lab");
  EXPECT_EQ(port, 53);
  EXPECT_FALSE(bracketed);
  ASSERT_TRUE(SplitHostPort("[fe80::1]:65535", &host, &port, &bracketed));
  EXPECT_EQ(host, "fe80::1");
  EXPECT_EQ(port, 65535);
  EXPECT_TRUE(bracketed);
  for (const char* bad : {"", "ns.lab", "ns.lab:", ":53", "[]:53", "::1:53", "a:0", "a:65536",
                          "a:+1", "a:-1", "a:1x", "a:000053"}) {
    host = "unchanged";
    EXPECT_FALSE(SplitHostPort(bad, &host, &port)) << bad;
    EXPECT_EQ(host, "unchanged") << bad;
  }
}

}  // namespace
}  // namespace regen
