// StandbyReads (controller/standby_reads.h) on a real etcd (tests/integration/etcd/etcd_harness.h):
// its answers are those of the controller that wrote the state, a burst of reads loads the state
// once, a change is seen within max_age, reading never writes to etcd, and an unreachable etcd is
// UNAVAILABLE. Figures printed: a burst of cached reads, a reload.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "common/clock.h"
#include "controller/controller.h"
#include "controller/etcd_store.h"
#include "controller/standby_reads.h"
#include "tests/fakes/test_util.h"
#include "tests/integration/etcd/etcd_harness.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

v1::ApplyServiceRequest Apply(const std::string& name) {
  v1::ApplyServiceRequest request;
  request.set_operation_id("apply-" + name);
  request.set_spec_yaml("name: " + name +
                        "\ninstances: 2\nupdate_domains: 2\nflavor: {vcpus: 1, memory_mib: 64, "
                        "disk_gib: 0, bandwidth_mbps: 10}\nnetwork:\n  subnet: 10.20.0.0/24\n"
                        "versions:\n  v1:\n    metadata: {release: \"1\"}\nversion: v1\n"
                        "health_check:\n  type: none\n");
  return request;
}

// Every read of `c`, as text.
std::string ReadAll(const Controller& c) {
  std::string out = c.ListServices().DebugString();
  auto web = c.GetService("web");
  out += web.ok() ? web->DebugString() : web.status().ToString();
  auto instances = c.ListInstances("");
  out += instances.ok() ? instances->DebugString() : instances.status().ToString();
  out += c.ListHosts().DebugString();
  auto upgrade = c.UpgradeGet("web");
  out += upgrade.ok() ? upgrade->DebugString() : upgrade.status().ToString();
  out += c.MaintenanceStatusGet().DebugString();
  return out;
}

TEST(StandbyReadsTest, AnswersAsTheWriterLoadsOnceAndNeverWrites) {
  REGEN_START_ETCD(etcd, 1);
  auto client = etcd::EtcdClient::Connect(etcd->Options());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto store = EtcdStore::Open(*client);  // the writer's, unguarded
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ControllerConfig config;
  RealClock clock;
  Controller writer(config, **store, clock);
  ASSERT_TRUE(writer.Load().ok());
  ASSERT_TRUE(writer.ApplyService(Apply("web")).ok());

  StandbyReads reads(config, milliseconds(250));
  Status before = reads.Read([](const Controller&, int64_t) {});
  EXPECT_EQ(before.code(), Code::kFailedPrecondition) << before.ToString();
  reads.SetClient(*client);
  auto head = (*client)->Get("/regen/counter");
  ASSERT_TRUE(head.ok());

  std::string got;
  int64_t at = 0;
  Steady::time_point t0 = Steady::now();
  ASSERT_TRUE(reads
                  .Read([&](const Controller& c, int64_t revision) {
                    got = ReadAll(c);
                    at = revision;
                  })
                  .ok());
  const double load_ms = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
  EXPECT_EQ(got, ReadAll(writer));
  EXPECT_GE(at, head->revision);
  const int kBurst = 1000;
  t0 = Steady::now();
  for (int i = 0; i < kBurst; ++i) {
    ASSERT_TRUE(reads.Read([&](const Controller& c, int64_t) { got = ReadAll(c); }).ok());
  }
  const double burst_ms = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
  EXPECT_EQ(got, ReadAll(writer));
  EXPECT_EQ(reads.loads(), 1) << "the state was loaded again while it did not change";
  auto after = (*client)->Get("/regen/counter");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->revision, head->revision) << "reading wrote to etcd";
  std::printf(
      "FIGURE standby reads: first read (loads the state from etcd) %.1f ms; %d reads of all six "
      "answers after it %.1f ms (%.3f ms each)\n",
      load_ms, kBurst, burst_ms, burst_ms / kBurst);

  // A change is seen within max_age (the counter moved: one more load).
  ASSERT_TRUE(writer.ApplyService(Apply("db")).ok());
  bool seen = testing::WaitFor(
      [&] {
        EXPECT_TRUE(reads.Read([&](const Controller& c, int64_t) { got = ReadAll(c); }).ok());
        return got == ReadAll(writer);
      },
      milliseconds(2000), milliseconds(20));
  EXPECT_TRUE(seen) << got;
  EXPECT_EQ(reads.loads(), 2);

  etcd->Stop(0);
  Status down;
  bool refused = testing::WaitFor(
      [&] {
        down = reads.Read([](const Controller&, int64_t) {});
        return !down.ok();
      },
      milliseconds(10000), milliseconds(50));
  ASSERT_TRUE(refused);
  EXPECT_EQ(down.code(), Code::kUnavailable) << down.ToString();
  EXPECT_NE(down.message().find("cannot read the cluster state from etcd: "), std::string::npos)
      << down.ToString();
}

}  // namespace
}  // namespace regen
