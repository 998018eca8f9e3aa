#include "dns/dns_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/fakes/test_util.h"

namespace regen::dns {
namespace {

using ::testing::HasSubstr;

TEST(SplitHostPortTest, AcceptsIpv4AndBracketedIpv6) {
  std::string address;
  uint16_t port = 0;
  ASSERT_TRUE(SplitHostPort("127.0.0.1:5353", &address, &port).ok());
  EXPECT_EQ(address, "127.0.0.1");
  EXPECT_EQ(port, 5353);
  ASSERT_TRUE(SplitHostPort("[::1]:53", &address, &port).ok());
  EXPECT_EQ(address, "::1");
  EXPECT_EQ(port, 53);
  for (const char* bad :
       {"127.0.0.1", "127.0.0.1:", "::1:53", "127.0.0.1:0", "1.2.3.4:70000", ":53", "1.2.3.4:5x"}) {
    Status s = SplitHostPort(bad, &address, &port);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr(bad));
  }
}

TEST(DnsSetupFromConfigTest, NoServerMeansNoDns) {
  auto setup = DnsSetupFromConfig(DnsConfig{});
  ASSERT_TRUE(setup.ok());
  EXPECT_FALSE(setup->has_value());
}

TEST(DnsSetupFromConfigTest, BuildsUpdaterAndSyncOptionsWithTheKey) {
  regen::testing::TempDir dir;
  regen::testing::WriteFileOrDie(dir.File("tsig.secret"), "c2VjcmV0\n");
  DnsConfig config;
  config.server = "127.0.0.1:5353";
  config.zone = "lab.example.";
  config.ttl = 45;
  config.tsig_key_name = "regen-key";
  config.tsig_secret_file = dir.File("tsig.secret");
  auto setup = DnsSetupFromConfig(config);
  ASSERT_TRUE(setup.ok()) << setup.status().ToString();
  ASSERT_TRUE(setup->has_value());
  const DnsSetup& s = **setup;
  EXPECT_EQ(s.updater.server_address, "127.0.0.1");
  EXPECT_EQ(s.updater.port, 5353);
  ASSERT_TRUE(s.updater.tsig.has_value());
  EXPECT_EQ(*s.updater.tsig, (TsigKey{"regen-key.", "hmac-sha256", "c2VjcmV0"}));
  EXPECT_EQ(s.sync.zone, "lab.example.");
  EXPECT_EQ(s.sync.ttl, 45u);

  config.tsig_secret_file = dir.File("missing");
  auto missing = DnsSetupFromConfig(config);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("missing"));
}

}  // namespace
}  // namespace regen::dns
