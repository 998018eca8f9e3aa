// agent/dns_watch with a fake resolver: the names of the hosted services are watched, the first
// answer is the baseline, a change sends one dns_change event to the local instances of that
// service only, failed lookups change nothing, and services no longer hosted are dropped.
#include "agent/dns_watch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_dns.h"

namespace regen {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using testing::FakeClock;
using testing::FakeResolver;
using ::testing::IsEmpty;
using ::testing::SizeIs;

struct Delivered {
  std::vector<std::string> instances;
  json event;
};

class DnsWatchTest : public ::testing::Test {
 protected:
  DnsWatchTest()
      : watch_(resolver_, clock_, "lab.example.", std::chrono::milliseconds(100),
               [this](const std::vector<std::string>& instances, const std::string& j) {
                 delivered_.push_back({instances, json::parse(j)});
               }) {}

  FakeClock clock_;
  FakeResolver resolver_;
  std::vector<Delivered> delivered_;
  DnsWatch watch_;
};

TEST_F(DnsWatchTest, AChangeReachesTheLocalInstancesOfThatService) {
  resolver_.Set("web.lab.example.", {"10.0.0.2", "10.0.0.3"});
  resolver_.Set("db.lab.example.", {"10.1.0.2"});
  watch_.SetLocalInstances({{"web", {"web-0", "web-2"}}, {"db", {"db-1"}}});
  EXPECT_THAT(watch_.PollOnce(), IsEmpty()) << "the first answer is the baseline";
  EXPECT_THAT(delivered_, IsEmpty());

  resolver_.Set("web.lab.example.", {"10.0.0.9", "10.0.0.2"});  // healed with ip_policy new
  auto changes = watch_.PollOnce();
  ASSERT_THAT(changes, SizeIs(1));
  ASSERT_THAT(delivered_, SizeIs(1));
  EXPECT_THAT(delivered_[0].instances, ElementsAre("web-0", "web-2"));
  const json& e = delivered_[0].event;
  EXPECT_EQ(e["event"], "dns_change");
  EXPECT_EQ(e["service"], "web");
  EXPECT_EQ(e["name"], "web.lab.example.");
  EXPECT_EQ(e["old_addresses"], json({"10.0.0.2", "10.0.0.3"}));
  EXPECT_EQ(e["new_addresses"], json({"10.0.0.2", "10.0.0.9"}));
  EXPECT_EQ(e["unix_ms"], clock_.WallMillis());

  EXPECT_THAT(watch_.PollOnce(), IsEmpty()) << "no change, no event";
  EXPECT_THAT(delivered_, SizeIs(1));
}

TEST_F(DnsWatchTest, FailedLookupsChangeNothing) {
  resolver_.Set("web.lab.example.", {"10.0.0.2"});
  watch_.SetLocalInstances({{"web", {"web-0"}}});
  watch_.PollOnce();
  resolver_.Fail("web.lab.example.", Unavailable("timeout"));
  EXPECT_THAT(watch_.PollOnce(), IsEmpty());
  resolver_.Set("web.lab.example.", {"10.0.0.2"});
  EXPECT_THAT(watch_.PollOnce(), IsEmpty());
  EXPECT_THAT(delivered_, IsEmpty());
  // The name disappears (NXDOMAIN): a change to no addresses.
  resolver_.Remove("web.lab.example.");
  ASSERT_THAT(watch_.PollOnce(), SizeIs(1));
  ASSERT_THAT(delivered_, SizeIs(1));
  EXPECT_EQ(delivered_[0].event["new_addresses"], json::array());
}

TEST_F(DnsWatchTest, OnlyHostedServicesAreWatched) {
  resolver_.Set("web.lab.example.", {"10.0.0.2"});
  resolver_.Set("db.lab.example.", {"10.1.0.2"});
  watch_.SetLocalInstances({{"web", {"web-0"}}});
  watch_.PollOnce();
  resolver_.Set("db.lab.example.", {"10.1.0.9"});
  EXPECT_THAT(watch_.PollOnce(), IsEmpty()) << "db has no instance here";

  // web leaves this host: no more events for it.
  watch_.SetLocalInstances({{"web", {}}, {"db", {"db-0"}}});
  resolver_.Set("web.lab.example.", {"10.0.0.7"});
  EXPECT_THAT(watch_.PollOnce(), IsEmpty()) << "db's first answer here is its baseline";
  EXPECT_THAT(delivered_, IsEmpty());
  EXPECT_EQ(watch_.NameOf("db"), "db.lab.example.");
}

TEST_F(DnsWatchTest, AServiceWithADnsNameIsWatchedUnderThatName) {
  resolver_.Set("frontend.lab.example.", {"10.0.0.2"});
  resolver_.Set("web.lab.example.", {"10.9.9.9"});  // not the service's name: never looked at
  watch_.SetLocalInstances({{"web", {"web-0"}}}, {{"web", "frontend.lab.example"}});
  EXPECT_EQ(watch_.NameOf("web"), "frontend.lab.example.");
  EXPECT_EQ(watch_.NameOf("db"), "db.lab.example.") << "no dns_name: <service>.<zone>";
  watch_.PollOnce();
  resolver_.Set("web.lab.example.", {"10.9.9.8"});
  EXPECT_THAT(watch_.PollOnce(), IsEmpty());
  resolver_.Set("frontend.lab.example.", {"10.0.0.5"});
  ASSERT_THAT(watch_.PollOnce(), SizeIs(1));
  ASSERT_THAT(delivered_, SizeIs(1));
  EXPECT_EQ(delivered_[0].event["service"], "web");
  EXPECT_EQ(delivered_[0].event["name"], "frontend.lab.example.");
  EXPECT_THAT(delivered_[0].instances, ElementsAre("web-0"));
}

}  // namespace
}  // namespace regen
