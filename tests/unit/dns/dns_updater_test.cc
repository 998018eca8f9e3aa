#include "dns/dns_updater.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/fakes/fake_dns.h"  // PrintTo

namespace regen::dns {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kZone = "lab.example.";

ServiceAddresses Web(std::vector<InstanceAddress> instances) {
  return {"web", "", std::move(instances)};
}

TEST(DesiredZoneRecordsTest, InstanceRecordsAndServiceRoundRobinSet) {
  auto records =
      DesiredZoneRecords(kZone, {Web({{"web-0", "10.0.0.2"}, {"web-1", "10.0.0.3"}, {"web-2", ""}}),
                                 {"db", "", {{"db-0", "10.0.1.2"}}}});
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  ZoneRecords want = {
      {"web-0.lab.example.", {"10.0.0.2"}},
      {"web-1.lab.example.", {"10.0.0.3"}},
      {"web.lab.example.", {"10.0.0.2", "10.0.0.3"}},
      {"db-0.lab.example.", {"10.0.1.2"}},
      {"db.lab.example.", {"10.0.1.2"}},
  };
  EXPECT_EQ(*records, want);
}

TEST(DesiredZoneRecordsTest, DnsNameOverridesTheServiceName) {
  auto records = DesiredZoneRecords(kZone, {{"web", "www.lab.example", {{"web-0", "10.0.0.2"}}}});
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  EXPECT_TRUE(records->contains("www.lab.example."));
  EXPECT_FALSE(records->contains("web.lab.example."));
}

TEST(DesiredZoneRecordsTest, ServiceWithoutAddressesHasNoRecord) {
  auto records = DesiredZoneRecords(kZone, {Web({{"web-0", ""}})});
  ASSERT_TRUE(records.ok());
  EXPECT_THAT(*records, IsEmpty());
}

TEST(DesiredZoneRecordsTest, RefusesBadInput) {
  auto outside = DesiredZoneRecords(kZone, {{"web", "web.other.example", {}}});
  ASSERT_FALSE(outside.ok());
  EXPECT_THAT(outside.status().message(), HasSubstr("outside zone"));
  EXPECT_THAT(outside.status().message(), HasSubstr("network.dns_name"));

  auto bad_ip = DesiredZoneRecords(kZone, {Web({{"web-0", "10.0.0.300"}})});
  ASSERT_FALSE(bad_ip.ok());
  EXPECT_THAT(bad_ip.status().message(), HasSubstr("10.0.0.300"));

  auto bad_instance = DesiredZoneRecords(kZone, {Web({{"Web_0", "10.0.0.2"}})});
  EXPECT_EQ(bad_instance.status().code(), Code::kInvalidArgument);

  auto bad_zone = DesiredZoneRecords("lab.example", {Web({})});
  ASSERT_FALSE(bad_zone.ok());
  EXPECT_THAT(bad_zone.status().message(), HasSubstr("ending with '.'"));

  // Service "web-0" would own web-0.lab.example., as does instance web-0 of service "web".
  auto clash = DesiredZoneRecords(
      kZone, {{"web-0", "", {{"x-0", "10.0.0.9"}}}, Web({{"web-0", "10.0.0.2"}})});
  ASSERT_FALSE(clash.ok());
  EXPECT_THAT(clash.status().message(), HasSubstr("claimed by both"));
}

TEST(BuildZoneUpdateTest, FirstDeployAddsEverything) {
  ZoneRecords desired = {{"web-0.lab.example.", {"10.0.0.2"}},
                         {"web.lab.example.", {"10.0.0.2", "10.0.0.3"}}};
  auto update = BuildZoneUpdate(kZone, 30, ZoneRecords{}, desired);
  ASSERT_TRUE(update.ok()) << update.status().ToString();
  EXPECT_EQ(update->zone, kZone);
  EXPECT_EQ(update->ttl, 30u);
  EXPECT_THAT(update->deletes, IsEmpty());
  EXPECT_THAT(update->replaces,
              ElementsAre(RRsetReplacement{"web-0.lab.example.", {"10.0.0.2"}},
                          RRsetReplacement{"web.lab.example.", {"10.0.0.2", "10.0.0.3"}}));
  // Two RRset deletions and three additions.
  EXPECT_EQ(update->RecordCount(), 5u);
}

TEST(BuildZoneUpdateTest, HealWithNewIpRewritesInstanceAndServiceOnly) {
  ZoneRecords before = {{"web-0.lab.example.", {"10.0.0.2"}},
                        {"web-1.lab.example.", {"10.0.0.3"}},
                        {"web.lab.example.", {"10.0.0.2", "10.0.0.3"}}};
  ZoneRecords after = before;
  after["web-1.lab.example."] = {"10.0.0.7"};
  after["web.lab.example."] = {"10.0.0.2", "10.0.0.7"};
  auto update = BuildZoneUpdate(kZone, 30, before, after);
  ASSERT_TRUE(update.ok());
  EXPECT_THAT(update->deletes, IsEmpty());
  EXPECT_THAT(update->replaces,
              ElementsAre(RRsetReplacement{"web-1.lab.example.", {"10.0.0.7"}},
                          RRsetReplacement{"web.lab.example.", {"10.0.0.2", "10.0.0.7"}}));
  EXPECT_EQ(update->ToString(),
            "zone lab.example. ttl 30: set web-1.lab.example. = 10.0.0.7; set web.lab.example. = "
            "10.0.0.2 10.0.0.7");
}

TEST(BuildZoneUpdateTest, RemovedNamesAreDeleted) {
  ZoneRecords before = {{"web-0.lab.example.", {"10.0.0.2"}},
                        {"web-1.lab.example.", {"10.0.0.3"}},
                        {"web.lab.example.", {"10.0.0.2", "10.0.0.3"}}};
  ZoneRecords after = {{"web-0.lab.example.", {"10.0.0.2"}},
                       {"web-1.lab.example.", {}},  // empty = absent
                       {"web.lab.example.", {"10.0.0.2"}}};
  auto update = BuildZoneUpdate(kZone, 60, before, after);
  ASSERT_TRUE(update.ok());
  EXPECT_THAT(update->deletes, ElementsAre("web-1.lab.example."));
  EXPECT_THAT(update->replaces, ElementsAre(RRsetReplacement{"web.lab.example.", {"10.0.0.2"}}));

  auto gone = BuildZoneUpdate(kZone, 60, before, {});
  ASSERT_TRUE(gone.ok());
  EXPECT_THAT(gone->deletes,
              ElementsAre("web-0.lab.example.", "web-1.lab.example.", "web.lab.example."));
  EXPECT_THAT(gone->replaces, IsEmpty());
}

TEST(BuildZoneUpdateTest, NoChangeIsAnEmptyUpdate) {
  ZoneRecords records = {{"web.lab.example.", {"10.0.0.2"}}};
  auto update = BuildZoneUpdate(kZone, 30, records, records);
  ASSERT_TRUE(update.ok());
  EXPECT_TRUE(update->empty());
  EXPECT_EQ(update->RecordCount(), 0u);
  EXPECT_EQ(update->ToString(), "zone lab.example. ttl 30: no change");
}

TEST(BuildZoneUpdateTest, UnknownAppliedStateRewritesEveryDesiredName) {
  ZoneRecords desired = {{"web.lab.example.", {"10.0.0.2"}}};
  auto update = BuildZoneUpdate(kZone, 30, std::nullopt, desired);
  ASSERT_TRUE(update.ok());
  EXPECT_THAT(update->deletes, IsEmpty());
  EXPECT_THAT(update->replaces, ElementsAre(RRsetReplacement{"web.lab.example.", {"10.0.0.2"}}));
}

// Names published before a restart (or sent without an answer) are deleted when no longer
// desired and rewritten when desired, even when `applied` says they are already right; any other
// name of the zone is left alone.
TEST(BuildZoneUpdateTest, UncertainNamesAreDeletedOrRewritten) {
  ZoneRecords desired = {{"web-0.lab.example.", {"10.0.0.2"}}, {"web.lab.example.", {"10.0.0.2"}}};
  std::set<std::string> uncertain = {"web-0.lab.example.", "web-1.lab.example.",
                                     "api.lab.example."};
  auto update = BuildZoneUpdate(kZone, 30, std::nullopt, desired, uncertain);
  ASSERT_TRUE(update.ok()) << update.status().ToString();
  EXPECT_THAT(update->deletes, ElementsAre("api.lab.example.", "web-1.lab.example."));
  EXPECT_THAT(update->replaces, ElementsAre(RRsetReplacement{"web-0.lab.example.", {"10.0.0.2"}},
                                            RRsetReplacement{"web.lab.example.", {"10.0.0.2"}}));

  // Known to be applied already, but uncertain: rewritten anyway; a deletion is not doubled.
  ZoneRecords applied = desired;
  applied["web-1.lab.example."] = {"10.0.0.3"};
  auto known =
      BuildZoneUpdate(kZone, 30, applied, desired, {"web-0.lab.example.", "web-1.lab.example."});
  ASSERT_TRUE(known.ok());
  EXPECT_THAT(known->deletes, ElementsAre("web-1.lab.example."));
  EXPECT_THAT(known->replaces, ElementsAre(RRsetReplacement{"web-0.lab.example.", {"10.0.0.2"}}));

  auto outside = BuildZoneUpdate(kZone, 30, std::nullopt, desired, {"web.example.org."});
  ASSERT_FALSE(outside.ok());
  EXPECT_THAT(outside.status().message(), HasSubstr("outside zone"));
}

TEST(BuildZoneUpdateTest, RefusesBadTtlNamesAndAddresses) {
  ZoneRecords ok = {{"web.lab.example.", {"10.0.0.2"}}};
  EXPECT_EQ(BuildZoneUpdate(kZone, 0, {}, ok).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(BuildZoneUpdate(kZone, 0x80000000u, {}, ok).status().code(), Code::kInvalidArgument);

  auto outside = BuildZoneUpdate(kZone, 30, {}, {{"web.example.org.", {"10.0.0.2"}}});
  ASSERT_FALSE(outside.ok());
  EXPECT_THAT(outside.status().message(), HasSubstr("outside zone"));
  // A name that only ends with the zone's text is not inside it.
  EXPECT_FALSE(BuildZoneUpdate(kZone, 30, {}, {{"badlab.example.", {"10.0.0.2"}}}).ok());
  EXPECT_FALSE(BuildZoneUpdate(kZone, 30, {}, {{"web.lab.example", {"10.0.0.2"}}}).ok());
  EXPECT_FALSE(BuildZoneUpdate(kZone, 30, {}, {{"WEB.lab.example.", {"10.0.0.2"}}}).ok());
  EXPECT_FALSE(BuildZoneUpdate(kZone, 30, {}, {{"web.lab.example.", {"fe80::1"}}}).ok());
  // The zone apex itself may hold records.
  EXPECT_TRUE(BuildZoneUpdate(kZone, 30, {}, {{"lab.example.", {"10.0.0.2"}}}).ok());
}

}  // namespace
}  // namespace regen::dns
