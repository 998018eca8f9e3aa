// Issue 15 finding 7: the agent checks every name and path the controller sends before anything
// on disk changes. A bad instance name once had its overlay written (qemu-img) and a socket
// removed outside state_dir before BuildDomainXml refused it; an image or domain_template could
// be any file of the host. Standalone agent (SetDesired), fake hypervisor and qemu-img.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

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
using testing::ReadFileOrDie;
using testing::TempDir;
using testing::WaitFor;
using testing::WriteFileOrDie;

constexpr milliseconds kWait(5000);

class AgentPathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.File("images"));
    WriteFileOrDie(dir_.File("images/web-v1.qcow2"), "base");
    WriteFileOrDie(dir_.File("secret"), "not for domains");
    // qemu-img create ... <tmp>: the fake writes the overlay it was asked for.
    runner_.SetHandler([](const FakeCommandRunner::Call& call) -> Result<CommandOutput> {
      WriteFileOrDie(call.argv.back(), "overlay");
      return CommandOutput{0, "", ""};
    });
  }
  // image_dirs: the default, <state_dir>/images (and templates)
  AgentConfig Config() { return testing::StandaloneConfig(dir_); }
  InstanceSpec Spec(const std::string& name) {
    InstanceSpec s;
    s.name = name;
    s.service = "web";
    s.version = "v1";
    s.generation = 1;
    s.allocation.host = "host-a";
    s.allocation.resources = {1, 64, 0, 0};
    s.image = dir_.File("images/web-v1.qcow2");
    return s;
  }
  // Starts an agent with `spec` desired and waits for its first try to create it; returns the
  // detail of its "create-failed" change, or "" if it was created.
  std::string CreateOnce(const InstanceSpec& spec) {
    Agent agent(Config(), hv_, clock_, runner_);
    agent.Start();
    agent.SetDesired({spec});
    std::string detail;
    EXPECT_TRUE(WaitFor(
        [&] {
          agent.RequestReconcile("test");
          for (const auto& c : agent.Changes()) {
            if (c.instance != spec.name) continue;
            if (c.what == "create-failed") detail = c.detail;
            if (c.what == "create-failed" || c.what == "created") return true;
          }
          return false;
        },
        kWait));
    agent.Stop();
    return detail;
  }
  // Every file under the temp dir, but the agent's own bookkeeping.
  std::vector<std::string> Files() {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_.path())) {
      std::string rel = fs::relative(e.path(), dir_.path()).string();
      if (rel.rfind("lease.json", 0) == 0 || rel.rfind("fenced.json", 0) == 0) continue;
      out.push_back(rel);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  TempDir dir_{"regen-agent-paths-test"};
  FakeHypervisor hv_;
  FakeClock clock_;
  FakeCommandRunner runner_;
};

TEST_F(AgentPathsTest, AGoodSpecIsCreatedOnItsCanonicalImage) {
  fs::create_symlink(dir_.File("images/web-v1.qcow2"), dir_.File("images/current.qcow2"));
  InstanceSpec spec = Spec("web-0");
  spec.image = dir_.File("images/current.qcow2");  // a symlink inside the directory: fine
  EXPECT_EQ(CreateOnce(spec), "");
  EXPECT_EQ(hv_.defines(), 1);
  ASSERT_EQ(runner_.calls().size(), 1u);
  const std::vector<std::string> argv = runner_.calls()[0].argv;
  auto b = std::find(argv.begin(), argv.end(), "-b");
  ASSERT_NE(b, argv.end());
  EXPECT_EQ(*(b + 1), fs::canonical(dir_.File("images/web-v1.qcow2")).string());
}

TEST_F(AgentPathsTest, ABadNameChangesNothingOnDisk) {
  // Where the old code removed the events socket of instance "../victim".
  WriteFileOrDie(dir_.File("victim.events.sock"), "keep");
  fs::create_directories(dir_.File("channels"));
  const auto before = Files();
  for (const std::string name : {"../victim", "../../x", "Web-0", "web_0", ""}) {
    SCOPED_TRACE(name);
    std::string detail = CreateOnce(Spec(name));
    EXPECT_NE(detail.find("name: invalid name \"" + name + "\""), std::string::npos) << detail;
  }
  EXPECT_EQ(Files(), before);
  EXPECT_TRUE(runner_.calls().empty()) << "qemu-img ran for a bad name";
  EXPECT_EQ(hv_.defines(), 0);
}

TEST_F(AgentPathsTest, AnImageOrTemplateOutsideImageDirsIsRefused) {
  fs::create_symlink(dir_.File("secret"), dir_.File("images/escape.qcow2"));
  struct Case {
    std::string image, domain_template, expect;
  };
  const std::vector<Case> cases = {
      {dir_.File("secret"), "", "image: \"" + dir_.File("secret") + "\""},
      {dir_.File("images/../secret"), "",
       "image: \"" + dir_.File("images/../secret") + "\" contains \"..\""},
      {"images/web-v1.qcow2", "", "image: \"images/web-v1.qcow2\" is not an absolute path"},
      {dir_.File("images/escape.qcow2"), "",
       "image: \"" + dir_.File("images/escape.qcow2") + "\" resolves to \"" + dir_.File("secret") +
           "\""},
      {dir_.File("images/web-v1.qcow2"), dir_.File("secret"),
       "domain_template: \"" + dir_.File("secret") + "\""},
      {dir_.File("images/web-v1.qcow2"), "/etc/passwd", "domain_template: \"/etc/passwd\""},
  };
  const auto before = Files();
  for (const auto& c : cases) {
    SCOPED_TRACE(c.image + " " + c.domain_template);
    InstanceSpec spec = Spec("web-0");
    spec.image = c.image;
    spec.domain_template = c.domain_template;
    std::string detail = CreateOnce(spec);
    EXPECT_NE(detail.find("instance web-0: " + c.expect), std::string::npos) << detail;
  }
  EXPECT_EQ(Files(), before);
  EXPECT_TRUE(runner_.calls().empty());
  EXPECT_EQ(hv_.defines(), 0);
  EXPECT_EQ(ReadFileOrDie(dir_.File("secret")), "not for domains");
}

TEST_F(AgentPathsTest, AMissingImageUnderImageDirsSaysSo) {
  InstanceSpec spec = Spec("web-0");
  spec.image = dir_.File("images/web-v9.qcow2");
  std::string detail = CreateOnce(spec);
  EXPECT_NE(detail.find("image " + spec.image + " of version v1 does not exist on this host"),
            std::string::npos)
      << detail;
  EXPECT_EQ(hv_.defines(), 0);
}

}  // namespace
}  // namespace regen
