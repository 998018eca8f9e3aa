#include "dns/dns_sync.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_dns.h"
#include "tests/fakes/test_util.h"

namespace regen::dns {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

const std::string kZone = "lab.example.";

DnsSyncOptions Options() {
  DnsSyncOptions o;
  o.zone = kZone;
  o.ttl = 30;
  o.initial_backoff = milliseconds(100);
  o.max_backoff = milliseconds(1000);
  return o;
}

ZoneRecords Web(std::vector<std::string> ips) {
  ZoneRecords r;
  for (size_t i = 0; i < ips.size(); ++i) {
    r["web-" + std::to_string(i) + "." + kZone].insert(ips[i]);
    r["web." + kZone].insert(ips[i]);
  }
  return r;
}

TEST(DnsBackoffTest, DoublesUpToTheMaximum) {
  DnsSyncOptions o = Options();
  EXPECT_EQ(DnsBackoff(o, 1), milliseconds(100));
  EXPECT_EQ(DnsBackoff(o, 2), milliseconds(200));
  EXPECT_EQ(DnsBackoff(o, 3), milliseconds(400));
  EXPECT_EQ(DnsBackoff(o, 4), milliseconds(800));
  EXPECT_EQ(DnsBackoff(o, 5), milliseconds(1000));
  EXPECT_EQ(DnsBackoff(o, 60), milliseconds(1000));
}

TEST(DnsSyncTest, SendsOneUpdatePerFlushAndNothingWhenInSync) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  DnsSync sync(updater, clock, Options(), ZoneRecords{});
  EXPECT_TRUE(sync.Report().in_sync);
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2", "10.0.0.3"})).ok());
  EXPECT_FALSE(sync.Report().in_sync);
  ASSERT_TRUE(sync.Flush().ok());
  ASSERT_THAT(updater.calls(), SizeIs(1));
  EXPECT_THAT(updater.calls()[0].replaces, SizeIs(3));  // web-0, web-1, web
  EXPECT_EQ(updater.zone(), Web({"10.0.0.2", "10.0.0.3"}));
  EXPECT_TRUE(sync.Report().in_sync);
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls(), SizeIs(1));  // nothing pending: nothing sent
}

TEST(DnsSyncTest, BacksOffWhileDnsIsDownThenCatchesUpInOneCoalescedUpdate) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  std::vector<Status> seen;
  DnsSync sync(
      updater, clock, Options(), ZoneRecords{},
      [&](const ZoneUpdate&, const Status& s, const DnsSyncReport&) { seen.push_back(s); });
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  ASSERT_TRUE(sync.Flush().ok());

  updater.FailWith(Unavailable("DNS update of zone lab.example. at fake-dns:53 failed: timeout"));
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.5"})).ok());  // heal with a new IP
  Status first = sync.Flush();
  EXPECT_EQ(first.code(), Code::kUnavailable);
  EXPECT_THAT(first.message(), HasSubstr("fake-dns:53"));
  DnsSyncReport report = sync.Report();
  EXPECT_FALSE(report.in_sync);
  EXPECT_EQ(report.consecutive_failures, 1);
  ASSERT_TRUE(report.next_attempt.has_value());
  EXPECT_EQ(*report.next_attempt - clock.Now(), milliseconds(100));

  // Within the backoff nothing is sent, however often Flush is called or records change.
  clock.Advance(milliseconds(99));
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.5", "10.0.0.6"})).ok());
  EXPECT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls(), SizeIs(2));

  // The waits double: 100, 200, 400 ms.
  clock.Advance(milliseconds(1));
  EXPECT_FALSE(sync.Flush().ok());
  EXPECT_THAT(updater.calls(), SizeIs(3));
  EXPECT_EQ(*sync.Report().next_attempt - clock.Now(), milliseconds(200));
  clock.Advance(milliseconds(200));
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.5", "10.0.0.6", "10.0.0.7"})).ok());
  EXPECT_FALSE(sync.Flush().ok());
  EXPECT_THAT(updater.calls(), SizeIs(4));
  EXPECT_EQ(*sync.Report().next_attempt - clock.Now(), milliseconds(400));
  EXPECT_EQ(sync.Report().consecutive_failures, 3);

  // DNS is back: after the backoff one UPDATE carries all three changes.
  updater.FailWith(Status::Ok());
  clock.Advance(milliseconds(400));
  ASSERT_TRUE(sync.Flush().ok());
  ASSERT_THAT(updater.calls(), SizeIs(5));
  const ZoneUpdate catch_up = updater.calls().back();
  EXPECT_THAT(catch_up.deletes, ::testing::IsEmpty());
  EXPECT_THAT(
      catch_up.replaces,
      ElementsAre(RRsetReplacement{"web-0.lab.example.", {"10.0.0.5"}},
                  RRsetReplacement{"web-1.lab.example.", {"10.0.0.6"}},
                  RRsetReplacement{"web-2.lab.example.", {"10.0.0.7"}},
                  RRsetReplacement{"web.lab.example.", {"10.0.0.5", "10.0.0.6", "10.0.0.7"}}));
  EXPECT_EQ(updater.zone(), Web({"10.0.0.5", "10.0.0.6", "10.0.0.7"}));
  report = sync.Report();
  EXPECT_TRUE(report.in_sync);
  EXPECT_EQ(report.consecutive_failures, 0);
  EXPECT_EQ(report.failures, 3);
  EXPECT_EQ(report.attempts, 5);
  EXPECT_TRUE(report.last_error.ok());
  ASSERT_THAT(seen, SizeIs(5));
  EXPECT_FALSE(seen[1].ok());
  EXPECT_TRUE(seen[4].ok());

  // A failure after a success starts again at the initial backoff.
  updater.FailWith(Unavailable("down"));
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.5"})).ok());
  EXPECT_FALSE(sync.Flush().ok());
  EXPECT_EQ(*sync.Report().next_attempt - clock.Now(), milliseconds(100));
}

TEST(DnsSyncTest, BackoffStopsAtTheMaximum) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  DnsSync sync(updater, clock, Options(), ZoneRecords{});
  updater.FailWith(FailedPrecondition("REFUSED"));
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  for (int i = 0; i < 10; ++i) {
    clock.Advance(milliseconds(1000));
    EXPECT_FALSE(sync.Flush().ok());
  }
  EXPECT_EQ(*sync.Report().next_attempt - clock.Now(), milliseconds(1000));
  EXPECT_EQ(sync.Report().attempts, 10);
  EXPECT_THAT(sync.Report().last_error.message(), HasSubstr("REFUSED"));
}

TEST(DnsSyncTest, RecordsRemovedWhileDownAreDeletedOnCatchUp) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  DnsSync sync(updater, clock, Options(), ZoneRecords{});
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2", "10.0.0.3"})).ok());
  ASSERT_TRUE(sync.Flush().ok());
  updater.FailWith(Unavailable("down"));
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  EXPECT_FALSE(sync.Flush().ok());
  ASSERT_TRUE(sync.SetDesired({}).ok());  // the service is removed
  updater.FailWith(Status::Ok());
  clock.Advance(milliseconds(100));
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls().back().deletes,
              ElementsAre("web-0.lab.example.", "web-1.lab.example.", "web.lab.example."));
  EXPECT_TRUE(updater.zone().empty());
}

TEST(DnsSyncTest, UnknownAppliedStateRewritesEverythingOnce) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  DnsSync sync(updater, clock, Options());  // applied unknown (after a controller restart)
  ASSERT_TRUE(sync.SetDesired({}).ok());
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls(), SizeIs(0));  // nothing wanted, nothing to send
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  ASSERT_TRUE(sync.Flush().ok());
  ASSERT_THAT(updater.calls(), SizeIs(1));
  EXPECT_THAT(updater.calls()[0].replaces, SizeIs(2));
  EXPECT_EQ(sync.Applied(), Web({"10.0.0.2"}));
}

// After a restart the controller hands over the names it published before: those it no longer
// wants are deleted by the first update (the same retry path: a failure keeps them pending), the
// operator's records are never touched, and once acknowledged nothing uncertain is left.
TEST(DnsSyncTest, NamesPublishedBeforeARestartAreDeletedWhenNoLongerDesired) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  updater.SetRecords("web-0." + kZone, {"10.0.0.2"});
  updater.SetRecords("web-1." + kZone, {"10.0.0.3"});  // the instance went away while down
  updater.SetRecords("web." + kZone, {"10.0.0.2", "10.0.0.3"});
  updater.SetRecords("api-0." + kZone, {"10.0.1.2"});  // the whole service went away
  updater.SetRecords("api." + kZone, {"10.0.1.2"});
  updater.SetRecords("ops." + kZone, {"192.0.2.53"});    // the operator's
  updater.SetRecords("web-9." + kZone, {"192.0.2.99"});  // also the operator's
  std::vector<DnsSyncReport> reports;
  DnsSync sync(
      updater, clock, Options(), std::nullopt,
      [&](const ZoneUpdate&, const Status&, const DnsSyncReport& r) { reports.push_back(r); });
  Status bad = sync.AddUncertain({"web-0." + kZone, "web-1." + kZone, "web." + kZone,
                                  "api-0." + kZone, "api." + kZone, "x.other.example."});
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("x.other.example."));
  EXPECT_THAT(sync.Uncertain(), SizeIs(5)) << "the good names are taken";
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls(), SizeIs(0)) << "nothing is sent before the desired records are known";

  updater.FailWith(Unavailable("down"));
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  EXPECT_EQ(sync.desired_version(), 1u);
  EXPECT_FALSE(sync.Flush().ok());
  EXPECT_THAT(sync.Uncertain(), SizeIs(5)) << "still pending after a failure";
  updater.FailWith(Status::Ok());
  clock.Advance(milliseconds(100));
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls().back().deletes,
              ElementsAre("api-0." + kZone, "api." + kZone, "web-1." + kZone));
  ZoneRecords expected = Web({"10.0.0.2"});
  expected["ops." + kZone] = {"192.0.2.53"};
  expected["web-9." + kZone] = {"192.0.2.99"};
  EXPECT_EQ(updater.zone(), expected);
  EXPECT_THAT(sync.Uncertain(), IsEmpty());
  ASSERT_THAT(reports, SizeIs(2));
  EXPECT_EQ(reports[0].acknowledged_version, 0u);
  EXPECT_EQ(reports[1].acknowledged_version, 1u);
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls(), SizeIs(2)) << "in sync: nothing more to send";
}

// An update the server applied but whose answer was lost: a name it added and the controller no
// longer wants is deleted by the next update, although it never was acknowledged.
TEST(DnsSyncTest, NameAddedByAnUpdateWithoutAnswerIsDeletedLater) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  DnsSync sync(updater, clock, Options(), ZoneRecords{});
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  ASSERT_TRUE(sync.Flush().ok());
  updater.LoseAnswersWith(Unavailable("no answer within 2000 ms"));
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2", "10.0.0.3"})).ok());  // scale up
  EXPECT_FALSE(sync.Flush().ok());
  EXPECT_EQ(updater.zone(), Web({"10.0.0.2", "10.0.0.3"})) << "the server did apply it";
  updater.LoseAnswersWith(Status::Ok());
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());  // and down again
  clock.Advance(milliseconds(100));
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls().back().deletes, ElementsAre("web-1." + kZone));
  EXPECT_EQ(updater.zone(), Web({"10.0.0.2"}));
}

// A success clears only the uncertain names its update carried.
TEST(DnsSyncTest, UncertainNameAddedDuringASendWaitsForTheNextUpdate) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  DnsSync sync(updater, clock, Options());
  ASSERT_TRUE(sync.AddUncertain({"web-1." + kZone}).ok());
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  updater.SetBlocked(true);
  std::thread sender([&] { EXPECT_TRUE(sync.Flush().ok()); });
  ASSERT_TRUE(updater.WaitInApply(milliseconds(5000)));
  ASSERT_TRUE(sync.AddUncertain({"web-2." + kZone}).ok());
  updater.SetBlocked(false);
  sender.join();
  EXPECT_THAT(updater.calls()[0].deletes, ElementsAre("web-1." + kZone));
  EXPECT_EQ(sync.Uncertain(), std::set<std::string>{"web-2." + kZone});
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls().back().deletes, ElementsAre("web-2." + kZone));
  EXPECT_THAT(sync.Uncertain(), IsEmpty());
}

TEST(DnsSyncTest, InvalidRecordsAreRefusedAndKeepThePreviousDesiredState) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  DnsSync sync(updater, clock, Options(), ZoneRecords{});
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  Status bad = sync.SetDesired({{"web.other.example.", {"10.0.0.9"}}});
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_EQ(updater.zone(), Web({"10.0.0.2"}));
}

TEST(DnsSyncTest, PeriodicAndRequestedResyncRewriteEverything) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  DnsSyncOptions options = Options();
  options.resync_interval = std::chrono::minutes(5);
  DnsSync sync(updater, clock, options, ZoneRecords{});
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  ASSERT_TRUE(sync.Flush().ok());
  ASSERT_THAT(updater.calls(), SizeIs(1));

  clock.Advance(std::chrono::minutes(4));
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls(), SizeIs(1));  // in sync, resync not due

  clock.Advance(std::chrono::minutes(1));
  ASSERT_TRUE(sync.Flush().ok());
  ASSERT_THAT(updater.calls(), SizeIs(2));  // the safety net: same records, rewritten
  EXPECT_THAT(updater.calls()[1].replaces, SizeIs(2));

  sync.RequestResync();
  ASSERT_TRUE(sync.Flush().ok());
  ASSERT_THAT(updater.calls(), SizeIs(3));
  EXPECT_EQ(updater.calls()[2], updater.calls()[1]);
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls(), SizeIs(3));  // one request, one rewrite
}

TEST(DnsSyncTest, ResyncAlsoDeletesNamesKnownToBeGone) {
  testing::FakeDnsUpdater updater;
  testing::FakeClock clock;
  DnsSync sync(updater, clock, Options(), ZoneRecords{});
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2", "10.0.0.3"})).ok());
  ASSERT_TRUE(sync.Flush().ok());
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  sync.RequestResync();
  ASSERT_TRUE(sync.Flush().ok());
  EXPECT_THAT(updater.calls().back().deletes, ElementsAre("web-1.lab.example."));
  EXPECT_THAT(updater.calls().back().replaces, SizeIs(2));  // web-0 and web
  EXPECT_EQ(updater.zone(), Web({"10.0.0.2"}));
}

// DNS that does not answer never blocks the caller: SetDesired returns while the worker is stuck
// in Apply, and the worker sends the latest records once DNS answers again.
TEST(DnsSyncTest, WorkerKeepsTheCallerFreeWhileDnsHangs) {
  testing::FakeDnsUpdater updater;
  RealClock clock;
  DnsSyncOptions options = Options();
  options.initial_backoff = milliseconds(5);
  options.max_backoff = milliseconds(20);
  DnsSync sync(updater, clock, options, ZoneRecords{});
  updater.SetBlocked(true);
  sync.Start();
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  ASSERT_TRUE(updater.WaitInApply(milliseconds(5000)));
  auto start = std::chrono::steady_clock::now();
  for (int i = 3; i < 50; ++i) {
    ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2", "10.0.0." + std::to_string(i)})).ok());
  }
  auto took = std::chrono::steady_clock::now() - start;
  // The updater is still blocked (one call): a SetDesired that waited for it would never have
  // returned. The bound only catches a slow path, generously for ASan on a loaded machine.
  EXPECT_LT(took, std::chrono::seconds(5)) << "SetDesired waited for DNS";
  EXPECT_THAT(updater.calls(), SizeIs(1));
  updater.SetBlocked(false);
  ASSERT_TRUE(testing::WaitFor([&] { return sync.Report().in_sync; }, milliseconds(5000)));
  EXPECT_EQ(updater.zone(), Web({"10.0.0.2", "10.0.0.49"}));
  // The first (stale) update and one coalesced catch-up: not one per SetDesired.
  EXPECT_THAT(updater.calls(), SizeIs(2));
  sync.Stop();
}

TEST(DnsSyncTest, WorkerRetriesUntilDnsIsBack) {
  testing::FakeDnsUpdater updater;
  RealClock clock;
  DnsSyncOptions options = Options();
  options.initial_backoff = milliseconds(2);
  options.max_backoff = milliseconds(10);
  DnsSync sync(updater, clock, options, ZoneRecords{});
  updater.FailWith(Unavailable("down"));
  sync.Start();
  ASSERT_TRUE(sync.SetDesired(Web({"10.0.0.2"})).ok());
  ASSERT_TRUE(testing::WaitFor([&] { return sync.Report().failures >= 3; }, milliseconds(5000)));
  updater.FailWith(Status::Ok());
  ASSERT_TRUE(testing::WaitFor([&] { return sync.Report().in_sync; }, milliseconds(5000)));
  EXPECT_EQ(updater.zone(), Web({"10.0.0.2"}));
}

}  // namespace
}  // namespace regen::dns
