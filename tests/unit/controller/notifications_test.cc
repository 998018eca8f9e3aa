// controller/notifications: the JSON of failure, reallocation and topology events, and who gets
// them: after a heal every agent hosting an instance of the service (the healed instance's new
// host included) is sent all three in the same step, naming its own instances of the service;
// hosts without one and other services hear nothing.
#include "controller/notifications.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/fakes/controller_harness.h"

namespace regen {
namespace {

using nlohmann::json;
using testing::ControllerHarness;
using ::testing::ElementsAre;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAreArray;
using testing::WebSpecYaml;

TEST(NotificationJsonTest, FailureCarriesInstanceHostAndReason) {
  EventRecord e;
  e.sequence = 7;
  e.unix_ms = 1714564800000;
  e.kind = EventKind::kFailure;
  e.service = "web";
  e.instance = "web-1";
  e.host = "host-2";
  e.message = "domain crashed (crashed) on host-2, detected by event";
  json j = FailureNotification(e);
  EXPECT_EQ(j["event"], "failure");
  EXPECT_EQ(j["service"], "web");
  EXPECT_EQ(j["instance"], "web-1");
  EXPECT_EQ(j["host"], "host-2");
  EXPECT_EQ(j["reason"], e.message);
  EXPECT_EQ(j["sequence"], 7);
  EXPECT_EQ(j["unix_ms"], 1714564800000);
  EXPECT_EQ(JsonLine(j).find('\n'), JsonLine(j).size() - 1) << "one line";
  EXPECT_EQ(NotificationFor(e), j);
}

TEST(NotificationJsonTest, ReallocationCarriesHostsResourcesAndVersion) {
  EventRecord e;
  e.kind = EventKind::kReallocation;
  e.service = "web";
  e.instance = "web-1";
  e.host = "host-3";
  e.message = "from host-2 to host-3";
  e.json = json{{"kind", "reallocation"},
                {"old_host", "host-2"},
                {"new_host", "host-3"},
                {"generation", 2},
                {"version", "v1"},
                {"resources",
                 {{"vcpus", 1}, {"memory_mib", 256}, {"disk_gib", 0}, {"bandwidth_mbps", 0}}},
                {"ip", "10.10.0.9"},
                {"mac", "52:54:00:00:00:09"}}
               .dump();
  json j = ReallocationNotification(e);
  EXPECT_EQ(j["event"], "reallocation");
  EXPECT_EQ(j["instance"], "web-1");
  EXPECT_EQ(j["old_host"], "host-2");
  EXPECT_EQ(j["new_host"], "host-3");
  EXPECT_EQ(j["resources"]["vcpus"], 1);
  EXPECT_EQ(j["resources"]["memory_mib"], 256);
  EXPECT_EQ(j["version"], "v1");
  EXPECT_EQ(j["generation"], 2);
  EXPECT_EQ(j["ip"], "10.10.0.9");

  e.kind = EventKind::kHostState;
  EXPECT_EQ(NotificationFor(e), std::nullopt) << "only failures and reallocations";
}

class NotifierTest : public ::testing::Test {
 protected:
  NotifierTest() {
    h_.controller().AddChangeListener(
        [this](const Controller& c, const ControllerChanges& ch) { notifier_.OnChanges(c, ch); });
  }
  // The events (parsed) host `host` was notified of, after message index `from`.
  std::vector<std::pair<json, std::vector<std::string>>> Notified(const std::string& host,
                                                                  size_t from = 0) {
    std::vector<std::pair<json, std::vector<std::string>>> out;
    auto all = h_.Sink(host).Notifications();
    for (size_t i = from; i < all.size(); ++i) {
      out.push_back(
          {json::parse(all[i].json()), {all[i].instances().begin(), all[i].instances().end()}});
    }
    return out;
  }

  ControllerHarness h_;
  InstanceNotifier notifier_;
};

TEST_F(NotifierTest, HealNotifiesEveryHostOfTheServiceWithAllThreeEvents) {
  h_.Hosts(4);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(3)).ok());
  h_.AllRunning();
  std::map<std::string, size_t> before;
  for (const auto& [host, sink] : h_.sinks()) before[host] = sink->Notifications().size();

  const std::string failed_host = h_.Inst("web-1").allocation.host;
  h_.Crash("web-1");
  const std::string new_host = h_.Inst("web-1").allocation.host;
  ASSERT_NE(new_host, failed_host);

  std::set<std::string> hosting;
  for (const auto& [name, inst] : h_.controller().instances()) hosting.insert(inst.allocation.host);
  ASSERT_TRUE(hosting.count(new_host));
  for (const auto& [host, sink] : h_.sinks()) {
    auto got = Notified(host, before[host]);
    if (!hosting.count(host)) {
      EXPECT_THAT(got, SizeIs(0)) << host << " hosts no instance of web";
      continue;
    }
    std::vector<std::string> kinds;
    for (const auto& [event, instances] : got) {
      kinds.push_back(event["event"]);
      std::vector<std::string> local;
      for (const auto& [name, inst] : h_.controller().instances())
        if (inst.allocation.host == host) local.push_back(name);
      EXPECT_THAT(instances, UnorderedElementsAreArray(local)) << host;
    }
    EXPECT_THAT(kinds, ElementsAre("failure", "reallocation", "topology")) << host;
    if (got.size() != 3) continue;
    EXPECT_EQ(got[0].first["instance"], "web-1");
    EXPECT_EQ(got[0].first["host"], failed_host);
    EXPECT_EQ(got[1].first["old_host"], failed_host);
    EXPECT_EQ(got[1].first["new_host"], new_host);
    EXPECT_EQ(got[1].first["version"], "v1");
    EXPECT_EQ(got[1].first["resources"]["vcpus"], 1);
    EXPECT_EQ(got[2].first["revision"], h_.controller().topology_revision());
    ASSERT_THAT(got[2].first["instances"], SizeIs(3));
    EXPECT_EQ(got[2].first["instances"][1]["name"], "web-1");
    EXPECT_EQ(got[2].first["instances"][1]["host"], new_host);
    EXPECT_EQ(got[2].first["instances"][1]["ip"], h_.Inst("web-1").allocation.ip);
  }
}

TEST_F(NotifierTest, TopologyRevisionGrowsOnlyWithLocationChanges) {
  h_.Hosts(2);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(2)).ok());
  int64_t deployed = h_.controller().topology_revision();
  EXPECT_GT(deployed, 0);
  h_.AllRunning();  // running: same locations
  EXPECT_EQ(h_.controller().topology_revision(), deployed);
  h_.Crash("web-0");
  EXPECT_EQ(h_.controller().topology_revision(), deployed + 1) << "one revision per heal";
}

TEST_F(NotifierTest, OtherServicesHearNothing) {
  h_.Hosts(2);
  ASSERT_TRUE(h_.Apply(WebSpecYaml(2)).ok());
  ASSERT_TRUE(h_.Apply("name: db\ninstances: 2\nupdate_domains: 1\nflavor:\n  vcpus: 1\n"
                       "  memory_mib: 256\nnetwork:\n  subnet: 10.30.0.0/24\nversions:\n  v1: {}\n"
                       "version: v1\n")
                  .ok());
  h_.AllRunning();
  std::map<std::string, size_t> before;
  for (const auto& [host, sink] : h_.sinks()) before[host] = sink->Notifications().size();
  h_.Crash("web-0");
  for (const auto& [host, sink] : h_.sinks()) {
    for (const auto& [event, instances] : Notified(host, before[host])) {
      EXPECT_EQ(event["service"], "web");
      for (const auto& i : instances) EXPECT_EQ(i.rfind("web-", 0), 0u) << i;
    }
  }
}

}  // namespace
}  // namespace regen
