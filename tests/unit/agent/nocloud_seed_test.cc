// The cloud-init NoCloud seed (issue 16, agent/nocloud_seed.h): its three files for an instance
// with and without an address; the ISO genisoimage really writes (volume "cidata", the files
// read back with isoinfo); a genisoimage that fails leaves nothing behind and says why; and an
// agent whose domain template names {{seed}} attaches a fresh seed per generation and removes
// it with the domain.
#include "agent/nocloud_seed.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "agent/agent.h"
#include "tests/fakes/agent_test_config.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_command_runner.h"
#include "tests/fakes/fake_hypervisor.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using testing::FakeClock;
using testing::FakeCommandRunner;
using testing::FakeHypervisor;
using ::testing::HasSubstr;
using testing::TempDir;
using testing::WaitFor;
using testing::WriteFileOrDie;

InstanceSpec Spec() {
  InstanceSpec s;
  s.name = "web-3";
  s.service = "web";
  s.version = "v1";
  s.generation = 4;
  s.allocation.host = "host-a";
  s.allocation.resources = {1, 64, 0, 0};
  s.allocation.ip = "10.10.0.5";
  s.allocation.mac = "52:54:00:aa:bb:05";
  s.prefix_len = 24;
  s.gateway = "10.10.0.1";
  return s;
}

// isoinfo (genisoimage's package) prints an ISO's header or one file (Joliet names).
std::string IsoInfo(const std::vector<std::string>& args) {
  RealCommandRunner runner;
  std::vector<std::string> argv = {"isoinfo"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto out = CheckedRun(runner, argv, std::chrono::seconds(10));
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? out->stdout_text : "";
}

TEST(NoCloudSeedTest, FilesNameTheGenerationAndTheAddress) {
  NoCloudSeed seed = BuildNoCloudSeed(Spec());
  EXPECT_EQ(seed.meta_data, "instance-id: web-3-g4\nlocal-hostname: web-3\n");
  EXPECT_EQ(seed.user_data.rfind("#cloud-config\n", 0), 0u);
  EXPECT_THAT(seed.network_config, HasSubstr("version: 2\n"));
  EXPECT_THAT(seed.network_config, HasSubstr("macaddress: \"52:54:00:aa:bb:05\""));
  EXPECT_THAT(seed.network_config, HasSubstr("- 10.10.0.5/24\n"));
  EXPECT_THAT(seed.network_config, HasSubstr("via: 10.10.0.1\n"));

  InstanceSpec none = Spec();
  none.allocation.ip = "";
  EXPECT_EQ(BuildNoCloudSeed(none).network_config, "") << "no address, no network-config";
  InstanceSpec no_gateway = Spec();
  no_gateway.gateway = "";
  no_gateway.prefix_len = 0;
  seed = BuildNoCloudSeed(no_gateway);
  EXPECT_THAT(seed.network_config, HasSubstr("- 10.10.0.5/32\n"));
  EXPECT_THAT(seed.network_config, ::testing::Not(HasSubstr("routes")));
}

TEST(NoCloudSeedTest, GenisoimageWritesACidataVolumeWithTheThreeFiles) {
  ASSERT_TRUE(testing::HaveProgram("genisoimage")) << "apt-get install genisoimage";
  TempDir dir("regen-seed");
  RealCommandRunner runner;
  auto iso = WriteNoCloudSeed(runner, dir.path(), Spec());
  ASSERT_TRUE(iso.ok()) << iso.status().ToString();
  EXPECT_EQ(*iso, dir.File("seeds/web-3-g4.iso"));
  EXPECT_THAT(IsoInfo({"-d", "-i", *iso}), HasSubstr("Volume id: cidata"));
  const NoCloudSeed want = BuildNoCloudSeed(Spec());
  EXPECT_EQ(IsoInfo({"-J", "-x", "/meta-data", "-i", *iso}), want.meta_data);
  EXPECT_EQ(IsoInfo({"-J", "-x", "/user-data", "-i", *iso}), want.user_data);
  EXPECT_EQ(IsoInfo({"-J", "-x", "/network-config", "-i", *iso}), want.network_config);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir.File("seeds"))) {
    left.push_back(e.path().filename().string());
  }
  EXPECT_EQ(left, std::vector<std::string>{"web-3-g4.iso"}) << "work files were left";

  RemoveNoCloudSeeds(dir.path(), "web-3");
  EXPECT_FALSE(fs::exists(*iso));
}

TEST(NoCloudSeedTest, AFailingGenisoimageLeavesNothingAndSaysWhy) {
  TempDir dir("regen-seed");
  FakeCommandRunner runner;
  runner.SetHandler([](const FakeCommandRunner::Call& call) -> Result<CommandOutput> {
    WriteFileOrDie(call.argv[3], "half");  // -output <tmp>
    return CommandOutput{1, "", "genisoimage: No space left on device"};
  });
  auto iso = WriteNoCloudSeed(runner, dir.path(), Spec());
  ASSERT_FALSE(iso.ok());
  EXPECT_THAT(iso.status().message(), HasSubstr("instance web-3: cloud-init seed"));
  EXPECT_THAT(iso.status().message(), HasSubstr("No space left on device"));
  EXPECT_TRUE(fs::is_empty(dir.File("seeds"))) << "a half-written seed was left";
}

// An agent whose template names {{seed}}: the domain gets this generation's seed as its cdrom;
// the seed goes with the domain.
TEST(NoCloudSeedTest, TheAgentAttachesTheSeedAndRemovesItWithTheDomain) {
  ASSERT_TRUE(testing::HaveProgram("genisoimage")) << "apt-get install genisoimage";
  TempDir dir("regen-seed-agent");
  fs::create_directories(dir.File("images"));
  WriteFileOrDie(dir.File("images/cloud.xml"),
                 "<domain type='test'><name>{{name}}</name>{{metadata}}<memory unit='KiB'>"
                 "{{memory_kib}}</memory><vcpu>{{vcpus}}</vcpu><devices><disk type='file' "
                 "device='cdrom'><source file='{{seed}}'/></disk></devices></domain>\n");
  const AgentConfig c = testing::StandaloneConfig(dir);
  FakeHypervisor hv;
  FakeClock clock;
  RealCommandRunner runner;
  Agent agent(c, hv, clock, runner);
  agent.Start();
  InstanceSpec spec = Spec();
  spec.domain_template = dir.File("images/cloud.xml");
  agent.SetDesired({spec});
  const std::string iso = dir.File("seeds/web-3-g4.iso");
  ASSERT_TRUE(WaitFor(
      [&] {
        agent.RequestReconcile("test");
        return hv.XmlOf("web-3").find(iso) != std::string::npos;
      },
      milliseconds(10000)))
      << "changes: " << (agent.Changes().empty() ? "" : agent.Changes().back().detail);
  EXPECT_TRUE(fs::exists(iso));
  EXPECT_THAT(IsoInfo({"-J", "-x", "/network-config", "-i", iso}), HasSubstr("10.10.0.5/24"));

  agent.SetDesired({});
  ASSERT_TRUE(WaitFor(
      [&] {
        agent.RequestReconcile("test");
        return hv.XmlOf("web-3").empty() && !fs::exists(iso);
      },
      milliseconds(10000)))
      << "the seed outlived its domain";
  agent.Stop();
}

}  // namespace
}  // namespace regen
