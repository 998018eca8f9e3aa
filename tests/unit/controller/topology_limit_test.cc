// The topology every agent receives is estimated when a service spec is applied, and a spec that
// would push it past what an agent can receive is refused naming the service and the figures
// (controller/topology_limit.h; issue 15, finding 4).
#include "controller/topology_limit.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "controller/topology.h"
#include "tests/fakes/controller_harness.h"

namespace regen::testing {
namespace {

ServiceSpec Spec(const std::string& name, int64_t instances) {
  ServiceSpec spec;
  spec.name = name;
  spec.instances = instances;
  return spec;
}

HostRecord Host(const std::string& name, const std::string& address) {
  HostRecord h;
  h.name = name;
  h.address = address;
  return h;
}

std::string ApiSpecYaml(int instances) {
  std::string yaml = WebSpecYaml(instances);
  yaml.replace(yaml.find("name: web"), 9, "name: api");
  yaml.replace(yaml.find("10.10.0.0/24"), 12, "10.11.0.0/24");
  return yaml;
}

// The last topology `sink` got.
v1::TopologyRevision LastTopology(const MessageSink& sink) {
  v1::TopologyRevision last;
  for (const auto& m : sink.messages) {
    if (m.has_topology()) last = m.topology();
  }
  return last;
}

TEST(TopologyLimitTest, TheEstimateIsAnUpperBoundOfWhatIsSent) {
  ControllerHarness h;
  h.Hosts(3);
  ASSERT_TRUE(h.Apply(WebSpecYaml(40)).ok());
  for (int k = 1; k <= 3; ++k) {
    const std::string host = "host-" + std::to_string(k);
    h.controller().OnDomainsReport(host, RunningReport(host, h.Sink(host)));
  }
  std::map<std::string, HostRecord> hosts;
  for (int k = 1; k <= 3; ++k) {
    const std::string host = "host-" + std::to_string(k);
    hosts[host] = Host(host, TestAddress(host));
  }
  v1::TopologyRevision sent = LastTopology(h.Sink("host-1"));
  ASSERT_EQ(sent.instances_size(), 40);
  size_t actual = sent.ByteSizeLong();
  size_t estimate = EstimateTopologyBytes(Spec("web", 40), h.controller().instances(), hosts);
  EXPECT_GE(estimate, actual);
  EXPECT_LE(estimate, actual * 2) << "an estimate this loose refuses specs that fit";
  std::printf("[ figures ] 40 instances on 3 hosts: topology %zu bytes, estimated %zu\n", actual,
              estimate);
}

TEST(TopologyLimitTest, TheRealLimitHoldsAboutThreeHundredThousandInstancesWithLongNames) {
  std::map<std::string, HostRecord> hosts;
  for (int k = 0; k < 100; ++k) {
    std::string name = std::string(40, 'h') + "-" + std::to_string(k);
    hosts[name] = Host(name, "10.0." + std::to_string(k) + ".1");
  }
  // A 10000-instance service with a 40-character name: the bytes per instance.
  const std::string service(40, 's');
  size_t empty = EstimateTopologyBytes(Spec(service, 0), {}, hosts);
  size_t per_instance = (EstimateTopologyBytes(Spec(service, 10000), {}, hosts) - empty) / 10000;
  std::printf(
      "[ figures ] %zu bytes per instance (40-character names): %zu instances fit in %zu "
      "bytes\n",
      per_instance, (kMaxTopologyBytes - empty) / per_instance, kMaxTopologyBytes);
  EXPECT_TRUE(CheckTopologyFits(Spec(service, 10000), {}, hosts).ok());
  // 30 services of 10000 with 63-character names already placed: one more does not fit.
  std::map<std::string, InstanceRecord> instances;
  for (int s = 0; s < 30; ++s) {
    std::string svc = std::string(61, 's') + std::to_string(10 + s);
    for (int i = 0; i < 10000; ++i) {
      InstanceRecord r;
      r.name = svc + "-" + std::to_string(i);
      r.service = svc;
      r.allocation.host = hosts.begin()->first;
      r.allocation.ip = "10.1.2.3";
      instances.emplace(r.name, std::move(r));
    }
  }
  Status s = CheckTopologyFits(Spec(service, 10000), instances, hosts);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("service " + service +
                             ": instances: 10000 would make the network "
                             "topology"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("over the limit of 63.0 MiB"), std::string::npos) << s.message();
}

// Through the controller, with the limit lowered: the spec is refused and nothing changes (no
// service, no instance, no event); a scale-up past the limit is refused the same way.
TEST(TopologyLimitTest, ASpecPastTheLimitIsRefusedAndChangesNothing) {
  ControllerHarness h;
  h.config().max_topology_bytes = 8 << 10;
  h.Restart();
  h.Hosts(3);
  ASSERT_TRUE(h.Apply(WebSpecYaml(20)).ok());
  const auto instances_before = h.controller().instances();
  const int64_t revision_before = h.controller().topology_revision();
  auto refused = h.Apply(ApiSpecYaml(200));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("service api: instances: 200 would make"),
            std::string::npos)
      << refused.status().message();
  EXPECT_NE(refused.status().message().find("over the limit of 0.0 MiB (8192 bytes)"),
            std::string::npos)
      << refused.status().message();
  EXPECT_EQ(h.controller().instances(), instances_before);
  EXPECT_EQ(h.controller().topology_revision(), revision_before);
  EXPECT_EQ(h.controller().ListServices().services_size(), 1);
  auto scaled = h.Apply(WebSpecYaml(200));
  ASSERT_FALSE(scaled.ok());
  EXPECT_NE(scaled.status().message().find("service web: instances: 200"), std::string::npos)
      << scaled.status().message();
  EXPECT_EQ(h.controller().instances(), instances_before);
  // Under the limit, both are fine.
  EXPECT_TRUE(h.Apply(ApiSpecYaml(10)).ok());
  // What was refused stays refused after a restart (nothing of it was stored).
  h.Restart();
  EXPECT_EQ(h.controller().ListServices().services_size(), 2);
}

}  // namespace
}  // namespace regen::testing
