#include "dns/dns_poller.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/fakes/fake_dns.h"
#include "tests/fakes/test_util.h"

namespace regen::dns {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

LookupResult Found(std::vector<std::string> addresses) { return {Status::Ok(), addresses}; }
LookupResult Failed() { return {Unavailable("timeout"), {}}; }

TEST(DetectAddressChangesTest, FirstAnswerIsTheBaseline) {
  KnownAddresses known;
  auto changes =
      DetectAddressChanges({{"web.lab.example.", Found({"10.0.0.3", "10.0.0.2"})}}, &known);
  EXPECT_THAT(changes, IsEmpty());
  EXPECT_THAT(known["web.lab.example."], ElementsAre("10.0.0.2", "10.0.0.3"));
}

TEST(DetectAddressChangesTest, ReportsChangedAddedAndRemovedAddresses) {
  KnownAddresses known = {{"web.", {"10.0.0.2", "10.0.0.3"}}, {"db.", {"10.0.1.2"}}};
  auto changes = DetectAddressChanges(
      {{"web.", Found({"10.0.0.2", "10.0.0.7"})}, {"db.", Found({"10.0.1.2"})}}, &known);
  EXPECT_THAT(changes, ElementsAre(AddressChange{
                           "web.", {"10.0.0.2", "10.0.0.3"}, {"10.0.0.2", "10.0.0.7"}}));

  changes =
      DetectAddressChanges({{"web.", Found({})}, {"db.", Found({"10.0.1.2", "10.0.1.3"})}}, &known);
  EXPECT_THAT(changes, ElementsAre(AddressChange{"db.", {"10.0.1.2"}, {"10.0.1.2", "10.0.1.3"}},
                                   AddressChange{"web.", {"10.0.0.2", "10.0.0.7"}, {}}));
  EXPECT_THAT(known["web."], IsEmpty());
}

TEST(DetectAddressChangesTest, OrderAndDuplicatesDoNotCount) {
  KnownAddresses known = {{"web.", {"10.0.0.2", "10.0.0.3"}}};
  auto changes =
      DetectAddressChanges({{"web.", Found({"10.0.0.3", "10.0.0.2", "10.0.0.3"})}}, &known);
  EXPECT_THAT(changes, IsEmpty());
}

TEST(DetectAddressChangesTest, FailedLookupsChangeNothing) {
  KnownAddresses known = {{"web.", {"10.0.0.2"}}};
  EXPECT_THAT(DetectAddressChanges({{"web.", Failed()}}, &known), IsEmpty());
  EXPECT_THAT(known["web."], ElementsAre("10.0.0.2"));
  // The server is back with the same addresses: still no change.
  EXPECT_THAT(DetectAddressChanges({{"web.", Found({"10.0.0.2"})}}, &known), IsEmpty());
  // A name that never answered has no baseline yet.
  KnownAddresses fresh;
  EXPECT_THAT(DetectAddressChanges({{"new.", Failed()}}, &fresh), IsEmpty());
  EXPECT_FALSE(fresh.contains("new."));
}

TEST(DetectAddressChangesTest, UnwatchedNamesAreForgotten) {
  KnownAddresses known = {{"web.", {"10.0.0.2"}}, {"old.", {"10.0.9.9"}}};
  EXPECT_THAT(DetectAddressChanges({{"web.", Found({"10.0.0.2"})}}, &known), IsEmpty());
  EXPECT_FALSE(known.contains("old."));
}

TEST(DnsPollerTest, PollOnceReportsChangesToTheCallback) {
  testing::FakeResolver resolver;
  std::vector<AddressChange> seen;
  DnsPoller poller(resolver, {}, [&](const AddressChange& c) { seen.push_back(c); });
  poller.SetNames({"web.lab.example.", "db.lab.example."});
  resolver.Set("web.lab.example.", {"10.0.0.2", "10.0.0.3"});
  EXPECT_THAT(poller.PollOnce(), IsEmpty());
  EXPECT_THAT(poller.Known()["db.lab.example."], IsEmpty());  // NXDOMAIN: no address yet

  resolver.Set("web.lab.example.", {"10.0.0.2", "10.0.0.9"});  // healed with ip_policy: new
  resolver.Set("db.lab.example.", {"10.0.1.2"});
  auto changes = poller.PollOnce();
  EXPECT_THAT(changes, ElementsAre(AddressChange{"db.lab.example.", {}, {"10.0.1.2"}},
                                   AddressChange{"web.lab.example.",
                                                 {"10.0.0.2", "10.0.0.3"},
                                                 {"10.0.0.2", "10.0.0.9"}}));
  EXPECT_EQ(seen, changes);

  resolver.Fail("web.lab.example.", Unavailable("SERVFAIL"));
  EXPECT_THAT(poller.PollOnce(), IsEmpty());
  EXPECT_EQ(poller.polls(), 3);
}

TEST(DnsPollerTest, NoNamesNoLookups) {
  testing::FakeResolver resolver;
  DnsPoller poller(resolver, {}, nullptr);
  EXPECT_THAT(poller.PollOnce(), IsEmpty());
  EXPECT_EQ(resolver.rounds(), 0);
}

TEST(DnsPollerTest, ThreadPollsEveryInterval) {
  testing::FakeResolver resolver;
  std::mutex mu;
  std::vector<AddressChange> seen;
  DnsPoller poller(resolver, {milliseconds(5)}, [&](const AddressChange& c) {
    std::lock_guard lock(mu);
    seen.push_back(c);
  });
  resolver.Set("web.", {"10.0.0.2"});
  poller.SetNames({"web."});
  poller.Start();
  ASSERT_TRUE(
      testing::WaitFor([&] { return poller.Known().contains("web."); }, milliseconds(5000)));
  resolver.Set("web.", {"10.0.0.8"});
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        std::lock_guard lock(mu);
        return !seen.empty();
      },
      milliseconds(5000)));
  poller.Stop();
  std::lock_guard lock(mu);
  EXPECT_EQ(seen[0], (AddressChange{"web.", {"10.0.0.2"}, {"10.0.0.8"}}));
}

// A name added to a running poller is resolved at once, not an interval later: its baseline is
// taken before whatever changes next (a heal right after a deploy).
TEST(DnsPollerTest, NewNameIsPolledAtOnce) {
  testing::FakeResolver resolver;
  DnsPoller poller(resolver, {std::chrono::hours(1)}, nullptr);
  resolver.Set("web.", {"10.0.0.2"});
  resolver.Set("api.", {"10.0.1.2"});
  poller.SetNames({"web."});
  poller.Start();
  ASSERT_TRUE(
      testing::WaitFor([&] { return poller.Known().contains("web."); }, milliseconds(5000)));
  poller.SetNames({"web."});  // nothing new: no extra poll
  poller.SetNames({"web.", "api."});
  EXPECT_TRUE(testing::WaitFor([&] { return poller.Known().contains("api."); }, milliseconds(5000)))
      << "still waiting for the hour-long interval";
  poller.Stop();
  EXPECT_EQ(poller.polls(), 2);
}

}  // namespace
}  // namespace regen::dns
