// Every file in config/examples/ loads with its loader, and the examples agree with each other.
// A file this test does not know how to load fails it, so every new example gets covered.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>

#include "config/agent_config.h"
#include "config/controller_config.h"
#include "config/fields.h"
#include "config/service_spec.h"
#include "tests/unit/config/config_test_util.h"

namespace regen {
namespace {

std::string ExamplesDir() { return testing::ConfigSourceDir() + "/config/examples"; }

bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// The examples name /etc/regen/tls/... files this machine does not have: parse them (what Load
// does before it checks that the tls and token files can be read).
template <typename Parse>
auto ParseExampleResult(const std::string& path, Parse parse) {
  Result<std::string> text = ReadConfigFile(path);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return parse(text.ok() ? *text : std::string(), path);
}
template <typename Parse>
Status ParseExample(const std::string& path, Parse parse) {
  return ParseExampleResult(path, parse).status();
}

TEST(ExamplesTest, EveryExampleLoads) {
  std::set<std::string> seen;
  for (const auto& entry : std::filesystem::directory_iterator(ExamplesDir())) {
    std::string name = entry.path().filename().string();
    std::string path = entry.path().string();
    seen.insert(name);
    Status status;
    if (StartsWith(name, "agent") && entry.path().extension() == ".yaml") {
      status = ParseExample(path, ParseAgentConfig);
    } else if (StartsWith(name, "controller") && entry.path().extension() == ".yaml") {
      status = ParseExample(path, ParseControllerConfig);
    } else if (StartsWith(name, "service") && entry.path().extension() == ".yaml") {
      status = LoadServiceSpec(path).status();
    } else if (StartsWith(name, "desired") && entry.path().extension() == ".yaml") {
      status = LoadDesiredInstances(path).status();
    } else if (entry.path().extension() == ".xml") {
      // A domain template: filled for real in domain_xml_test (ExampleCloudImageTemplate).
      auto text = ReadConfigFile(path);
      status = text.status();
      if (text.ok() && (text->find("{{name}}") == std::string::npos ||
                        text->find("{{metadata}}") == std::string::npos)) {
        status = InvalidArgument(path + ": a domain template needs {{name}} and {{metadata}}");
      }
    } else {
      ADD_FAILURE() << path
                    << ": no loader for this example; name it agent*.yaml, controller*.yaml, "
                       "service*.yaml or desired*.yaml, or teach examples_test.cc about it";
      continue;
    }
    EXPECT_TRUE(status.ok()) << status.ToString();
  }
  for (const char* expected :
       {"agent.yaml", "agent-lab.yaml", "controller.yaml", "service.yaml", "desired.yaml"}) {
    EXPECT_TRUE(seen.count(expected)) << expected << " is missing from " << ExamplesDir();
  }
}

TEST(ExamplesTest, ProductionAgentIsNotALab) {
  Result<AgentConfig> c = ParseExampleResult(ExamplesDir() + "/agent.yaml", ParseAgentConfig);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->libvirt_uri, "qemu:///system");
  EXPECT_TRUE(c->tls.enabled()) << "a production agent talks TLS";
  EXPECT_FALSE(c->insecure);
  EXPECT_FALSE(c->fault_injection);
  EXPECT_FALSE(c->controller_address.empty());
  EXPECT_EQ(c->domain_type, "auto");
}

TEST(ExamplesTest, LabAgentInjectsFaultsOnTheTestDriver) {
  Result<AgentConfig> c = LoadAgentConfig(ExamplesDir() + "/agent-lab.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(StartsWith(c->libvirt_uri, "test:"));
  EXPECT_TRUE(c->fault_injection);
  EXPECT_EQ(c->domain_type, "test");
}

TEST(ExamplesTest, ControllerLeaseMatchesTheAgents) {
  Result<ControllerConfig> ctl =
      ParseExampleResult(ExamplesDir() + "/controller.yaml", ParseControllerConfig);
  Result<AgentConfig> agent = ParseExampleResult(ExamplesDir() + "/agent.yaml", ParseAgentConfig);
  ASSERT_TRUE(ctl.ok()) << ctl.status().ToString();
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  EXPECT_EQ(ctl->fencing_lease, agent->fencing_lease);
  EXPECT_GT(ctl->host_down_after, ctl->fencing_lease + ctl->heartbeat_interval);
  // The agent dials the port the controller listens on.
  std::string port = ctl->listen_address.substr(ctl->listen_address.rfind(':'));
  EXPECT_TRUE(agent->controller_address.ends_with(port)) << agent->controller_address;
  EXPECT_TRUE(ctl->tls.enabled());
  EXPECT_EQ(ctl->tls.ca, agent->tls.ca) << "one CA for the cluster";
  EXPECT_TRUE(ctl->auth.configured);
}

TEST(ExamplesTest, ServiceIsTheDocumentedWebService) {
  Result<ServiceSpec> s = LoadServiceSpec(ExamplesDir() + "/service.yaml");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->name, "web");
  EXPECT_EQ(s->instances, 6);
  EXPECT_EQ(s->update_domains, 3);
  EXPECT_EQ(s->flavor, (Resources{1, 64, 1, 100}));
  EXPECT_EQ(s->subnet, "10.10.0.0/24");
  EXPECT_EQ(s->dns_name, "web.lab.example");
  EXPECT_EQ(s->versions.size(), 2u);
  EXPECT_TRUE(s->versions.count("v1"));
  EXPECT_TRUE(s->versions.count("v2"));
  EXPECT_EQ(s->version, "v1");
  EXPECT_EQ(s->health_check.type, "none");
}

TEST(ExamplesTest, DesiredInstancesMatchTheService) {
  Result<ServiceSpec> s = LoadServiceSpec(ExamplesDir() + "/service.yaml");
  Result<std::vector<InstanceSpec>> d = LoadDesiredInstances(ExamplesDir() + "/desired.yaml");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(static_cast<int64_t>(d->size()), s->instances);
  for (size_t i = 0; i < d->size(); ++i) {
    const InstanceSpec& inst = (*d)[i];
    EXPECT_EQ(inst.name, s->name + "-" + std::to_string(i));
    EXPECT_EQ(inst.service, s->name);
    EXPECT_EQ(inst.update_domain, static_cast<int64_t>(i) % s->update_domains);
    EXPECT_TRUE(s->versions.count(inst.version)) << inst.version;
    EXPECT_EQ(inst.image, s->versions.at(inst.version).image);
    EXPECT_EQ(inst.allocation.resources, s->flavor);
    EXPECT_TRUE(StartsWith(inst.allocation.ip, "10.10.0.")) << inst.allocation.ip;
  }
}

}  // namespace
}  // namespace regen
