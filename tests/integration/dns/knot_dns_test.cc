// The DNS library against a real knotd on loopback: RFC 2136 updates with TSIG through libldns,
// the retrying sync across a knotd restart, and the c-ares poller. knotd missing is a failure.
#include <iostream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/clock.h"
#include "dns/cares_resolver.h"
#include "dns/dns_poller.h"
#include "dns/dns_sync.h"
#include "dns/dns_updater.h"
#include "dns/ldns_updater.h"
#include "tests/fakes/fake_dns.h"  // PrintTo
#include "tests/fakes/test_util.h"
#include "tests/integration/dns/knot_server.h"

namespace regen::dns {
namespace {

using regen::testing::KnotServer;
using regen::testing::WaitFor;
using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

std::unique_ptr<KnotServer> StartKnot() {
  auto knot = KnotServer::Start();
  // Never a skip: a machine without knotd cannot run Regen's DNS tests, and must say so.
  EXPECT_TRUE(knot.ok()) << knot.status().ToString();
  return knot.ok() ? std::move(knot).value() : nullptr;
}

std::unique_ptr<DnsUpdater> UpdaterFor(const KnotServer& knot, std::optional<TsigKey> key,
                                       milliseconds timeout = milliseconds(1000)) {
  LdnsUpdaterOptions o;
  o.server_address = knot.address();
  o.port = knot.port();
  o.tsig = std::move(key);
  o.timeout = timeout;
  auto updater = NewLdnsUpdater(o);
  EXPECT_TRUE(updater.ok()) << updater.status().ToString();
  return updater.ok() ? std::move(updater).value() : nullptr;
}

std::unique_ptr<Resolver> ResolverFor(const KnotServer& knot) {
  auto resolver = NewCaresResolver({knot.address(), knot.port(), milliseconds(500), 1});
  EXPECT_TRUE(resolver.ok()) << resolver.status().ToString();
  return resolver.ok() ? std::move(resolver).value() : nullptr;
}

std::vector<std::string> Dig(const KnotServer& knot, const std::string& name) {
  auto out = knot.Dig(name);
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? *out : std::vector<std::string>{"<kdig failed>"};
}

ZoneRecords Web(const std::vector<InstanceAddress>& instances) {
  auto records = DesiredZoneRecords("lab.example.", {{"web", "", instances}});
  EXPECT_TRUE(records.ok()) << records.status().ToString();
  return records.ok() ? *records : ZoneRecords{};
}

DnsSyncOptions SyncOptions() {
  DnsSyncOptions o;
  o.zone = "lab.example.";
  o.ttl = 30;
  o.initial_backoff = milliseconds(50);
  o.max_backoff = milliseconds(200);
  return o;
}

TEST(KnotDnsTest, RecordsAppearChangeAndDisappear) {
  auto knot = StartKnot();
  ASSERT_NE(knot, nullptr);
  auto updater = UpdaterFor(*knot, knot->key());
  auto resolver = ResolverFor(*knot);
  ASSERT_NE(updater, nullptr);
  ASSERT_NE(resolver, nullptr);
  RealClock clock;
  DnsSync sync(*updater, clock, SyncOptions(), ZoneRecords{});
  std::vector<AddressChange> changes;
  DnsPoller poller(*resolver, {}, [&](const AddressChange& c) { changes.push_back(c); });
  poller.SetNames({"web.lab.example.", "web-1.lab.example.", "web-2.lab.example."});
  EXPECT_THAT(poller.PollOnce(), IsEmpty());  // baseline: nothing there yet
  EXPECT_THAT(poller.Known()["web.lab.example."], IsEmpty());

  // Deploy.
  ASSERT_TRUE(
      sync.SetDesired(Web({{"web-0", "10.0.0.2"}, {"web-1", "10.0.0.3"}, {"web-2", "10.0.0.4"}}))
          .ok());
  Status s = sync.Flush();
  ASSERT_TRUE(s.ok()) << s.ToString() << "\nknotd log:\n" << knot->Log();
  EXPECT_THAT(Dig(*knot, "web.lab.example."), ElementsAre("10.0.0.2", "10.0.0.3", "10.0.0.4"));
  EXPECT_THAT(Dig(*knot, "web-1.lab.example."), ElementsAre("10.0.0.3"));
  auto deployed = poller.PollOnce();
  EXPECT_THAT(deployed,
              UnorderedElementsAre(
                  AddressChange{"web.lab.example.", {}, {"10.0.0.2", "10.0.0.3", "10.0.0.4"}},
                  AddressChange{"web-1.lab.example.", {}, {"10.0.0.3"}},
                  AddressChange{"web-2.lab.example.", {}, {"10.0.0.4"}}));

  // Heal web-1 with ip_policy: new.
  ASSERT_TRUE(
      sync.SetDesired(Web({{"web-0", "10.0.0.2"}, {"web-1", "10.0.0.9"}, {"web-2", "10.0.0.4"}}))
          .ok());
  s = sync.Flush();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_THAT(Dig(*knot, "web-1.lab.example."), ElementsAre("10.0.0.9"));
  EXPECT_THAT(Dig(*knot, "web.lab.example."), ElementsAre("10.0.0.2", "10.0.0.4", "10.0.0.9"));
  EXPECT_THAT(
      poller.PollOnce(),
      UnorderedElementsAre(AddressChange{"web.lab.example.",
                                         {"10.0.0.2", "10.0.0.3", "10.0.0.4"},
                                         {"10.0.0.2", "10.0.0.4", "10.0.0.9"}},
                           AddressChange{"web-1.lab.example.", {"10.0.0.3"}, {"10.0.0.9"}}));

  // Remove web-2, then the whole service.
  ASSERT_TRUE(sync.SetDesired(Web({{"web-0", "10.0.0.2"}, {"web-1", "10.0.0.9"}})).ok());
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(Dig(*knot, "web-2.lab.example."), IsEmpty());
  EXPECT_THAT(Dig(*knot, "web.lab.example."), ElementsAre("10.0.0.2", "10.0.0.9"));
  EXPECT_THAT(poller.PollOnce(),
              UnorderedElementsAre(AddressChange{"web.lab.example.",
                                                 {"10.0.0.2", "10.0.0.4", "10.0.0.9"},
                                                 {"10.0.0.2", "10.0.0.9"}},
                                   AddressChange{"web-2.lab.example.", {"10.0.0.4"}, {}}));
  ASSERT_TRUE(sync.SetDesired({}).ok());
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(Dig(*knot, "web.lab.example."), IsEmpty());
  EXPECT_THAT(Dig(*knot, "web-0.lab.example."), IsEmpty());
  // Records Regen does not own are untouched.
  EXPECT_THAT(Dig(*knot, "ns.lab.example."), ElementsAre("127.0.0.1"));
  EXPECT_EQ(sync.Report().failures, 0);
  EXPECT_EQ(changes.size(), 3u + 2u + 2u);  // every PollOnce change reached the callback
}

TEST(KnotDnsTest, WrongKeyIsRefusedAndReported) {
  auto knot = StartKnot();
  ASSERT_NE(knot, nullptr);
  ZoneUpdate update{"lab.example.", 30, {}, {{"web.lab.example.", {"10.0.0.2"}}}};
  std::string server = "127.0.0.1:" + std::to_string(knot->port());

  TsigKey wrong_secret = knot->key();
  wrong_secret.secret = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=";
  Status bad_sig = UpdaterFor(*knot, wrong_secret)->Apply(update);
  EXPECT_EQ(bad_sig.code(), Code::kFailedPrecondition);
  EXPECT_THAT(bad_sig.message(), HasSubstr("zone lab.example."));
  EXPECT_THAT(bad_sig.message(), HasSubstr(server));
  EXPECT_THAT(bad_sig.message(), HasSubstr("rcode NOTAUTH"));
  EXPECT_THAT(bad_sig.message(), HasSubstr("BADSIG"));
  EXPECT_THAT(bad_sig.message(), HasSubstr("secret"));

  TsigKey unknown = knot->key();
  unknown.name = "intruder.";
  Status bad_key = UpdaterFor(*knot, unknown)->Apply(update);
  EXPECT_EQ(bad_key.code(), Code::kFailedPrecondition);
  EXPECT_THAT(bad_key.message(), HasSubstr("rcode NOTAUTH"));
  EXPECT_THAT(bad_key.message(), HasSubstr("BADKEY"));
  EXPECT_THAT(bad_key.message(), HasSubstr("intruder."));

  Status unsigned_update = UpdaterFor(*knot, std::nullopt)->Apply(update);
  EXPECT_EQ(unsigned_update.code(), Code::kFailedPrecondition);
  EXPECT_THAT(unsigned_update.message(),
              ::testing::AnyOf(HasSubstr("REFUSED"), HasSubstr("NOTAUTH")));

  EXPECT_THAT(Dig(*knot, "web.lab.example."), IsEmpty());  // nothing got through
  // What an operator reads in the controller's log.
  std::cout << "wrong secret: " << bad_sig.ToString() << "\nunknown key: " << bad_key.ToString()
            << "\nunsigned: " << unsigned_update.ToString() << "\n";

  // Through the sync the refusal is retried with backoff and visible in the report.
  auto updater = UpdaterFor(*knot, wrong_secret);
  RealClock clock;
  DnsSync sync(*updater, clock, SyncOptions(), ZoneRecords{});
  ASSERT_TRUE(sync.SetDesired({{"web.lab.example.", {"10.0.0.2"}}}).ok());
  EXPECT_FALSE(sync.Flush().ok());
  DnsSyncReport report = sync.Report();
  EXPECT_FALSE(report.in_sync);
  EXPECT_EQ(report.consecutive_failures, 1);
  EXPECT_THAT(report.last_error.message(), HasSubstr("BADSIG"));

  // The right key works on the same server.
  Status good = UpdaterFor(*knot, knot->key())->Apply(update);
  EXPECT_TRUE(good.ok()) << good.ToString();
  EXPECT_THAT(Dig(*knot, "web.lab.example."), ElementsAre("10.0.0.2"));
}

TEST(KnotDnsTest, KnotRestartedQueuedUpdatesCatchUp) {
  auto knot = StartKnot();
  ASSERT_NE(knot, nullptr);
  auto updater = UpdaterFor(*knot, knot->key(), milliseconds(300));
  auto resolver = ResolverFor(*knot);
  ASSERT_NE(updater, nullptr);
  ASSERT_NE(resolver, nullptr);
  RealClock clock;
  std::mutex mu;
  std::vector<std::string> errors;
  DnsSync sync(*updater, clock, SyncOptions(), ZoneRecords{},
               [&](const ZoneUpdate&, const Status& s, const DnsSyncReport&) {
                 std::lock_guard lock(mu);
                 if (!s.ok()) errors.push_back(s.message());
               });
  sync.Start();
  ASSERT_TRUE(sync.SetDesired(Web({{"web-0", "10.0.0.2"}, {"web-1", "10.0.0.3"}})).ok());
  ASSERT_TRUE(WaitFor([&] { return sync.Report().in_sync; }, milliseconds(5000)));
  EXPECT_THAT(Dig(*knot, "web.lab.example."), ElementsAre("10.0.0.2", "10.0.0.3"));

  knot->Stop();
  // Healing goes on while DNS is down: none of this waits for DNS.
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(sync.SetDesired(Web({{"web-0", "10.0.0.2"}, {"web-1", "10.0.0.7"}})).ok());
  ASSERT_TRUE(sync.SetDesired(Web({{"web-0", "10.0.0.8"}, {"web-1", "10.0.0.7"}})).ok());
  ASSERT_TRUE(
      sync.SetDesired(Web({{"web-0", "10.0.0.8"}, {"web-1", "10.0.0.7"}, {"web-2", "10.0.0.4"}}))
          .ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(50));
  ASSERT_TRUE(WaitFor([&] { return sync.Report().failures >= 3; }, milliseconds(10000)));
  {
    std::lock_guard lock(mu);
    ASSERT_FALSE(errors.empty());
    EXPECT_THAT(errors.back(), HasSubstr(knot->server()));
    EXPECT_THAT(errors.back(), HasSubstr("is the DNS server running"));
  }
  EXPECT_FALSE(sync.Report().in_sync);

  Status restarted = knot->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  ASSERT_TRUE(WaitFor([&] { return sync.Report().in_sync; }, milliseconds(10000)))
      << sync.Report().last_error.ToString() << "\nknotd log:\n"
      << knot->Log();
  auto results = resolver->ResolveAll(
      {"web.lab.example.", "web-0.lab.example.", "web-1.lab.example.", "web-2.lab.example."});
  EXPECT_THAT(results["web.lab.example."].addresses,
              ElementsAre("10.0.0.4", "10.0.0.7", "10.0.0.8"));
  EXPECT_THAT(results["web-0.lab.example."].addresses, ElementsAre("10.0.0.8"));
  EXPECT_THAT(results["web-1.lab.example."].addresses, ElementsAre("10.0.0.7"));
  EXPECT_THAT(results["web-2.lab.example."].addresses, ElementsAre("10.0.0.4"));
  sync.Stop();
}

TEST(KnotDnsTest, UpdatesSurviveARestartOfKnot) {
  auto knot = StartKnot();
  ASSERT_NE(knot, nullptr);
  auto updater = UpdaterFor(*knot, knot->key());
  ASSERT_TRUE(updater->Apply({"lab.example.", 30, {}, {{"web.lab.example.", {"10.0.0.2"}}}}).ok());
  ASSERT_TRUE(knot->Restart().ok());
  // The journal keeps dynamic updates: the sync's "applied" state stays true after a restart.
  EXPECT_THAT(Dig(*knot, "web.lab.example."), ElementsAre("10.0.0.2"));
}

TEST(KnotDnsTest, OneMessageCarriesAHundredInstanceService) {
  auto knot = StartKnot();
  ASSERT_NE(knot, nullptr);
  auto updater = UpdaterFor(*knot, knot->key());
  auto resolver = ResolverFor(*knot);
  std::vector<InstanceAddress> instances;
  for (int i = 0; i < 100; ++i) {
    instances.push_back({"web-" + std::to_string(i),
                         "10.0." + std::to_string(i / 200) + "." + std::to_string(2 + i % 200)});
  }
  ZoneRecords records = Web(instances);
  auto update = BuildZoneUpdate("lab.example.", 30, ZoneRecords{}, records);
  ASSERT_TRUE(update.ok());
  EXPECT_EQ(update->RecordCount(), 101u + 200u);
  Status s = updater->Apply(*update);  // over TCP: far above 512 bytes
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto results = resolver->ResolveAll({"web.lab.example.", "web-99.lab.example."});
  ASSERT_TRUE(results["web.lab.example."].status.ok())
      << results["web.lab.example."].status.ToString();
  EXPECT_EQ(results["web.lab.example."].addresses.size(), 100u);
  EXPECT_THAT(results["web-99.lab.example."].addresses, ElementsAre("10.0.0.101"));
}

TEST(KnotDnsTest, ResolverReportsADeadServerAsAFailureNotAsNoAddresses) {
  auto knot = StartKnot();
  ASSERT_NE(knot, nullptr);
  auto resolver = ResolverFor(*knot);
  auto answered = resolver->ResolveAll({"ns.lab.example.", "nothing.lab.example."});
  EXPECT_TRUE(answered["nothing.lab.example."].status.ok());  // NXDOMAIN is an answer
  EXPECT_THAT(answered["nothing.lab.example."].addresses, IsEmpty());
  EXPECT_THAT(answered["ns.lab.example."].addresses, ElementsAre("127.0.0.1"));
  knot->Stop();
  auto dead = resolver->ResolveAll({"ns.lab.example."});
  EXPECT_EQ(dead["ns.lab.example."].status.code(), Code::kUnavailable);
  EXPECT_THAT(dead["ns.lab.example."].status.message(), HasSubstr(knot->server()));
}

}  // namespace
}  // namespace regen::dns
