// The lease (renewals never shorten it; a maintenance hold extends it and ends), the backstop's
// pure decision, the FenceBackstop thread on a fake clock with a regular file as its watchdog
// device, and LoopWatchdog::Trip (WATCHDOG=trigger, and no WATCHDOG=1 after it).
#include "agent/fence_backstop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "common/notify.h"
#include "common/thread_annotations.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_notifier.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::FakeClock;
using testing::FakeNotifier;
using testing::TempDir;
using testing::WaitFor;

constexpr milliseconds kWait(5000);

TEST(LeaseTest, RenewalsNeverShortenAndAHoldExtendsUntilItEnds) {
  FakeClock clock;
  Lease lease(clock);
  EXPECT_FALSE(lease.Expired()) << "no lease (standalone): never expired";
  auto t0 = clock.Now();
  lease.Start(t0 + milliseconds(3000));
  EXPECT_TRUE(lease.Renew(t0 + milliseconds(3500)));
  EXPECT_FALSE(lease.Renew(t0 + milliseconds(3400))) << "a late, shorter renewal";
  EXPECT_EQ(lease.until(), t0 + milliseconds(3500));

  lease.SetHold(t0 + milliseconds(10000));
  EXPECT_EQ(lease.until(), t0 + milliseconds(10000));
  clock.Advance(milliseconds(4000));
  EXPECT_FALSE(lease.Expired()) << "held past the lease";
  EXPECT_EQ(lease.HoldRemaining(), milliseconds(6000));
  lease.SetHold(std::nullopt);
  EXPECT_TRUE(lease.Expired()) << "the hold ended: the lease alone counts";
  EXPECT_EQ(lease.HoldRemaining(), milliseconds(0));
  // A hold shorter than the lease changes nothing.
  lease.Renew(clock.Now() + milliseconds(3000));
  lease.SetHold(clock.Now() + milliseconds(1000));
  EXPECT_EQ(lease.until(), clock.Now() + milliseconds(3000));
}

// A renewal that comes after the lease (and hold) ran out is a lapse: the main loop fences for
// it even if it never saw the lease run out. Renewals in time, stale ones and renewals during a
// hold are not.
TEST(LeaseTest, ARenewalAfterTheLeaseRanOutCountsALapse) {
  FakeClock clock;
  Lease lease(clock);
  auto t0 = clock.Now();
  lease.Start(t0 + milliseconds(2000));
  clock.Advance(milliseconds(1000));
  EXPECT_TRUE(lease.Renew(clock.Now() + milliseconds(2000)));
  EXPECT_EQ(lease.Snapshot().lapses, 0u) << "renewed in time";
  clock.Advance(milliseconds(2000));  // exactly at the end: ran out
  EXPECT_FALSE(lease.Renew(clock.Now() - milliseconds(1))) << "stale: does not grow it";
  EXPECT_EQ(lease.Snapshot().lapses, 0u);
  EXPECT_TRUE(lease.Renew(clock.Now() + milliseconds(2000)));
  EXPECT_EQ(lease.Snapshot().lapses, 1u);
  // A hold covers the gap: no lapse.
  lease.SetHold(clock.Now() + milliseconds(10000));
  clock.Advance(milliseconds(5000));
  EXPECT_TRUE(lease.Renew(clock.Now() + milliseconds(2000)));
  EXPECT_EQ(lease.Snapshot().lapses, 1u);
  // Ended now (etcd says the host's lease is gone), renewed: a lapse.
  lease.SetHold(std::nullopt);
  EXPECT_TRUE(lease.EndNow());
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(lease.Renew(clock.Now() + milliseconds(2000)));
  EXPECT_EQ(lease.Snapshot().lapses, 2u);
}

// What the backstop would kill: the last listing's live managed domains plus those started since.
TEST(LeaseTest, ManagedAliveIsTheLastListingPlusDomainsStartedSince) {
  FakeClock clock;
  Lease lease(clock);
  EXPECT_TRUE(lease.ManagedAlive().empty());
  lease.NoteListing({"web-0", "web-1"});
  lease.NoteStarting("web-2");
  lease.NoteStarting("web-0");  // already known: once
  EXPECT_EQ(lease.ManagedAlive(), (std::vector<std::string>{"web-0", "web-1", "web-2"}));
  EXPECT_TRUE(lease.Snapshot().last_listing_alive);
  lease.NoteListing({});
  EXPECT_TRUE(lease.ManagedAlive().empty());
  EXPECT_FALSE(lease.Snapshot().last_listing_alive);
}

TEST(BackstopDecideTest, OnlyAListingAfterTheEndThatShowsNothingAliveConfirms) {
  using TP = Clock::TimePoint;
  const TP until = TP(std::chrono::seconds(100));
  const milliseconds grace(1000);
  LeaseSnapshot s;
  s.lease_until = until;

  // Before the end: all is well, whatever the listings say.
  s.last_listing_at = until - milliseconds(500);
  s.last_listing_alive = true;
  auto v = BackstopDecide(s, until - milliseconds(1), grace);
  EXPECT_FALSE(v.expired);
  EXPECT_TRUE(v.pet_device);
  EXPECT_FALSE(v.trip);

  // Ran out, last listing from before the end: not confirmed; the device pauses at once, the
  // trip waits for the grace.
  v = BackstopDecide(s, until, grace);
  EXPECT_TRUE(v.expired);
  EXPECT_FALSE(v.confirmed);
  EXPECT_FALSE(v.pet_device);
  EXPECT_FALSE(v.trip);
  EXPECT_FALSE(BackstopDecide(s, until + grace - milliseconds(1), grace).trip);
  EXPECT_TRUE(BackstopDecide(s, until + grace, grace).trip);
  // A listing from before the end that showed nothing alive proves nothing either.
  s.last_listing_alive = false;
  EXPECT_TRUE(BackstopDecide(s, until + grace, grace).trip);

  // A listing after the end that still shows a managed domain alive: not confirmed.
  s.last_listing_at = until + milliseconds(100);
  s.last_listing_alive = true;
  s.alive_since = until + milliseconds(100);
  EXPECT_TRUE(BackstopDecide(s, until + grace, grace).trip);

  // One after the end that shows none alive: confirmed, the device is petted again.
  s.last_listing_at = s.confirmed_gone_at = until + milliseconds(200);
  s.last_listing_alive = false;
  v = BackstopDecide(s, until + milliseconds(5000), grace);
  EXPECT_TRUE(v.confirmed);
  EXPECT_TRUE(v.pet_device);
  EXPECT_FALSE(v.trip);

  // A domain alive again after that confirmation: unconfirmed from then on, with a fresh grace.
  s.last_listing_at = s.alive_since = until + milliseconds(3000);
  s.last_listing_alive = true;
  v = BackstopDecide(s, until + milliseconds(3500), grace);
  EXPECT_FALSE(v.pet_device);
  EXPECT_FALSE(v.trip);
  EXPECT_TRUE(BackstopDecide(s, until + milliseconds(4000), grace).trip);

  // A maintenance hold moves the end.
  s = LeaseSnapshot{};
  s.lease_until = until;
  s.hold_until = until + milliseconds(60000);
  EXPECT_FALSE(BackstopDecide(s, until + milliseconds(30000), grace).expired);
}

TEST(BackstopGraceTest, DefaultIsHalfTheLeaseAtMostOneSecond) {
  EXPECT_EQ(BackstopGrace(milliseconds(0), milliseconds(3000)), milliseconds(1000));
  EXPECT_EQ(BackstopGrace(milliseconds(0), milliseconds(600)), milliseconds(300));
  EXPECT_EQ(BackstopGrace(milliseconds(250), milliseconds(3000)), milliseconds(250));
}

class FenceBackstopTest : public ::testing::Test {
 protected:
  int64_t DeviceBytes() {
    std::error_code ec;
    auto n = std::filesystem::file_size(device_, ec);
    return ec ? -1 : static_cast<int64_t>(n);
  }
  TempDir dir_{"regen-backstop-test"};
  std::string device_ = dir_.File("watchdog");
  FakeClock clock_;
  Lease lease_{clock_};
};

TEST_F(FenceBackstopTest, UnconfirmedFencePausesTheDeviceThenTripsAfterTheGrace) {
  testing::WriteFileOrDie(device_, "");
  lease_.Start(clock_.Now() + milliseconds(3000));
  lease_.NoteListing({"web-0"});
  std::atomic<int> trips{0};
  std::string why;
  FenceBackstopOptions o;
  o.grace = milliseconds(1000);
  o.interval = milliseconds(5);
  o.device = device_;
  FenceBackstop backstop(lease_, clock_, o, [&](const std::string& w) {
    why = w;
    ++trips;
  });
  ASSERT_TRUE(backstop.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return DeviceBytes() >= 3; }, kWait)) << "petted while healthy";

  clock_.Advance(milliseconds(3000));  // the lease ran out; the last listing is older
  // Paused at once (no grace for the device: its own timeout is one), no trip yet.
  ASSERT_TRUE(WaitFor([&] { return backstop.device_paused(); }, kWait));
  int64_t before = DeviceBytes();
  backstop.CheckOnce();
  EXPECT_EQ(DeviceBytes(), before);
  EXPECT_EQ(trips.load(), 0);
  lease_.NoteListing({"web-0"});  // a listing after the end shows a domain still alive
  clock_.Advance(milliseconds(999));
  backstop.CheckOnce();
  EXPECT_EQ(trips.load(), 0);
  EXPECT_EQ(DeviceBytes(), before);

  clock_.Advance(milliseconds(1));
  ASSERT_TRUE(WaitFor([&] { return trips.load() == 1; }, kWait));
  EXPECT_TRUE(backstop.tripped());
  EXPECT_NE(why.find("cannot confirm"), std::string::npos) << why;
  // For good: a later confirmation neither pets nor trips again.
  lease_.NoteListing({});
  backstop.CheckOnce();
  backstop.CheckOnce();
  EXPECT_EQ(trips.load(), 1);
  EXPECT_EQ(DeviceBytes(), before);
  backstop.Stop();
  // Closed without the magic 'V'.
  EXPECT_EQ(testing::ReadFileOrDie(device_).find('V'), std::string::npos);
}

TEST_F(FenceBackstopTest, ConfirmedFenceKeepsPettingAndNeverTrips) {
  testing::WriteFileOrDie(device_, "");
  lease_.Start(clock_.Now() + milliseconds(3000));
  std::atomic<int> trips{0};
  FenceBackstopOptions o;
  o.grace = milliseconds(1000);
  o.interval = milliseconds(5);
  o.device = device_;
  FenceBackstop backstop(lease_, clock_, o, [&](const std::string&) { ++trips; });
  ASSERT_TRUE(backstop.Start().ok());
  clock_.Advance(milliseconds(3100));
  lease_.NoteListing({});  // the fence destroyed everything
  clock_.Advance(milliseconds(5000));
  int64_t bytes = DeviceBytes();
  ASSERT_TRUE(WaitFor([&] { return DeviceBytes() >= bytes + 3; }, kWait));
  EXPECT_EQ(trips.load(), 0);
  EXPECT_FALSE(backstop.tripped());
}

// The backstop kills the managed domains' qemus itself from its own thread once the lease ran out
// and no listing confirmed them gone (a main loop stuck in a libvirt call lists nothing): at
// every look until a listing confirms, even after it tripped; never before the end, never
// during a hold, never once confirmed.
TEST_F(FenceBackstopTest, KillsTheLastKnownManagedDomainsUntilAListingConfirms) {
  lease_.Start(clock_.Now() + milliseconds(2000));
  lease_.NoteListing({"web-0"});
  lease_.NoteStarting("web-3");  // the main loop went on to start web-3 and got stuck there
  Mutex mu;
  std::vector<std::vector<std::string>> calls;
  FenceBackstopOptions o;
  o.grace = milliseconds(1000);
  o.interval = milliseconds(5);
  std::atomic<int> trips{0};
  FenceBackstop backstop(
      lease_, clock_, o, [&](const std::string&) { ++trips; },
      [&](const std::vector<std::string>& names) {
        MutexLock lock(mu);
        calls.push_back(names);
        return 2;
      });
  auto count = [&] {
    MutexLock lock(mu);
    return calls.size();
  };
  backstop.CheckOnce();
  lease_.SetHold(clock_.Now() + milliseconds(5000));
  clock_.Advance(milliseconds(3000));  // the lease ran out, the hold runs
  backstop.CheckOnce();
  EXPECT_EQ(count(), 0u) << "before the end of the lease and hold";
  lease_.SetHold(std::nullopt);

  ASSERT_TRUE(backstop.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return count() >= 1; }, kWait));
  {
    MutexLock lock(mu);
    EXPECT_EQ(calls[0], (std::vector<std::string>{"web-0", "web-3"}));
  }
  EXPECT_GE(backstop.kills(), 2);
  clock_.Advance(milliseconds(1000));
  ASSERT_TRUE(WaitFor([&] { return trips.load() == 1; }, kWait));
  size_t after_trip = count();
  ASSERT_TRUE(WaitFor([&] { return count() > after_trip; }, kWait)) << "kills after the trip";

  lease_.NoteListing({});  // a listing after the end: all gone
  backstop.Stop();
  size_t before = count();
  backstop.CheckOnce();
  EXPECT_EQ(count(), before) << "confirmed: nothing more to kill";
}

TEST_F(FenceBackstopTest, ADeviceThatCannotBeOpenedIsAnErrorNamingIt) {
  FenceBackstopOptions o;
  o.device = dir_.File("no-such-watchdog");
  FenceBackstop backstop(lease_, clock_, o, nullptr);
  Status s = backstop.Start();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("watchdog_device " + o.device), std::string::npos) << s.message();
}

// The device's timeout for the host_down_after check: a device without the watchdog ioctls (a
// plain file here, the lab's FIFO) has the configured one, or none when none is configured.
TEST_F(FenceBackstopTest, DeviceTimeoutIsTheConfiguredOneWhenTheDeviceCannotSay) {
  testing::WriteFileOrDie(device_, "");
  lease_.Start(clock_.Now() + milliseconds(3000));
  FenceBackstopOptions o;
  o.device = device_;
  o.device_timeout = milliseconds(7000);
  FenceBackstop with(lease_, clock_, o, nullptr);
  ASSERT_TRUE(with.Start().ok());
  EXPECT_EQ(with.device_timeout(), std::optional<milliseconds>(milliseconds(7000)));
  with.Stop();
  o.device_timeout = milliseconds(0);
  FenceBackstop without(lease_, clock_, o, nullptr);
  ASSERT_TRUE(without.Start().ok());
  EXPECT_EQ(without.device_timeout(), std::nullopt);
  without.Stop();
  FenceBackstopOptions none;
  FenceBackstop no_device(lease_, clock_, none, nullptr);
  EXPECT_EQ(no_device.device_timeout(), std::nullopt);
}

TEST(LoopWatchdogTripTest, TriggerGoesOutAndPingsStop) {
  FakeNotifier notifier(std::chrono::milliseconds(20));  // pings every 10 ms
  // The "main loop": runs posted pings inline.
  LoopWatchdog watchdog(
      notifier, [](std::function<void()> fn) { fn(); }, nullptr);
  watchdog.Start();
  ASSERT_TRUE(WaitFor([&] { return notifier.Count("WATCHDOG=1") >= 2; }, kWait));
  watchdog.Trip("lease ran out");
  watchdog.Trip("again");  // once only
  EXPECT_TRUE(watchdog.tripped());
  EXPECT_EQ(notifier.Count("WATCHDOG=trigger\nSTATUS=lease ran out"), 1);
  int pings = notifier.Count("WATCHDOG=1");
  // The ticker keeps running: ten of its ping periods later, no ping went out.
  auto later = std::chrono::steady_clock::now() + milliseconds(100);
  ASSERT_TRUE(WaitFor([&] { return std::chrono::steady_clock::now() >= later; }, kWait));
  EXPECT_EQ(notifier.Count("WATCHDOG=1"), pings);
  watchdog.Stop();
}

}  // namespace
}  // namespace regen
