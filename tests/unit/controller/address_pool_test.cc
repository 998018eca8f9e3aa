// Tests of the allocator's address pool (controller/address_pool.h): subnet parsing, the lowest
// free IP with its hint, MACs derived from names, formatting and parsing.
#include "controller/address_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace regen {
namespace {

using ::testing::HasSubstr;

AddressPool::Subnet MustParse(std::string_view text) {
  Result<AddressPool::Subnet> s = AddressPool::ParseSubnet("web", text);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? *s : AddressPool::Subnet{};
}

TEST(AddressPoolTest, ParseSubnetSkipsNetworkGatewayAndBroadcast) {
  AddressPool::Subnet s = MustParse("10.10.0.0/24");
  EXPECT_EQ(AddressPool::FormatIp(s.first), "10.10.0.2");
  EXPECT_EQ(AddressPool::FormatIp(s.last), "10.10.0.254");
  AddressPool::Subnet small = MustParse("192.168.1.0/30");
  EXPECT_EQ(small.first, small.last);
}

TEST(AddressPoolTest, ParseSubnetErrorsNameServiceAndValue) {
  auto message = [](std::string_view text) {
    return AddressPool::ParseSubnet("web", text).status().message();
  };
  EXPECT_THAT(message("10.10.0.0"), HasSubstr("service web: network.subnet \"10.10.0.0\""));
  EXPECT_THAT(message("10.10.0.0"), HasSubstr("write it as address/prefix"));
  EXPECT_THAT(message("10.10.0/24"), HasSubstr("dotted IPv4 address"));
  EXPECT_THAT(message("10.10.0.0/"), HasSubstr("no prefix length"));
  EXPECT_THAT(message("10.10.0.0/31"), HasSubstr("prefix length 31; use 8 to 30"));
  EXPECT_THAT(message("10.10.0.1/24"), HasSubstr("did you mean 10.10.0.0/24?"));
}

TEST(AddressPoolTest, NextFreeIpIsTheLowestFreeAddress) {
  AddressPool pool;
  AddressPool::Subnet s = MustParse("10.0.0.0/24");
  pool.MarkIpUsed(*AddressPool::ParseIp("10.0.0.2"));
  Result<uint32_t> ip = pool.NextFreeIp(s);
  ASSERT_TRUE(ip.ok());
  EXPECT_EQ(AddressPool::FormatIp(*ip), "10.0.0.3");
  pool.TakeIp(*ip, s);
  EXPECT_TRUE(pool.IpInUse(*ip));
  EXPECT_EQ(AddressPool::FormatIp(*pool.NextFreeIp(s)), "10.0.0.4");
  // A freed address below the hint is handed out again first.
  pool.FreeIp(*AddressPool::ParseIp("10.0.0.2"));
  EXPECT_EQ(AddressPool::FormatIp(*pool.NextFreeIp(s)), "10.0.0.2");
}

TEST(AddressPoolTest, FullSubnetIsUnavailableUntilAnAddressIsFreed) {
  AddressPool pool;
  AddressPool::Subnet s = MustParse("10.0.0.0/30");  // one instance address: 10.0.0.2
  pool.TakeIp(*pool.NextFreeIp(s), s);
  Result<uint32_t> none = pool.NextFreeIp(s);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::kUnavailable);
  EXPECT_THAT(none.status().message(),
              HasSubstr("subnet 10.0.0.0/30 has no free address (1 instance addresses"));
  pool.FreeIp(s.first);
  EXPECT_EQ(*pool.NextFreeIp(s), s.first);
}

TEST(AddressPoolTest, MacIsStablePerNameAndProbesPastUsedOnes) {
  AddressPool pool;
  uint64_t mac = pool.NextFreeMac("web-0");
  EXPECT_EQ(mac, pool.NextFreeMac("web-0"));
  EXPECT_EQ(AddressPool::FormatMac(mac).substr(0, 9), "52:54:00:");
  pool.MarkMacUsed(mac);
  EXPECT_TRUE(pool.MacInUse(mac));
  uint64_t next = pool.NextFreeMac("web-0");
  EXPECT_NE(next, mac);
  EXPECT_EQ(next >> 24, mac >> 24);
  pool.FreeMac(mac);
  EXPECT_EQ(pool.NextFreeMac("web-0"), mac);
}

TEST(AddressPoolTest, FormatAndParseRoundTrip) {
  EXPECT_EQ(AddressPool::FormatMac(*AddressPool::ParseMac("52:54:00:AB:cd:0f")),
            "52:54:00:ab:cd:0f");
  EXPECT_FALSE(AddressPool::ParseMac("53:54:00:ab:cd:0f").has_value());  // multicast
  EXPECT_FALSE(AddressPool::ParseMac("52:54:00:ab:cd").has_value());
  EXPECT_EQ(AddressPool::FormatIp(*AddressPool::ParseIp("192.168.7.9")), "192.168.7.9");
  EXPECT_FALSE(AddressPool::ParseIp("192.168.7").has_value());
}

}  // namespace
}  // namespace regen
