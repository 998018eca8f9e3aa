// ImageStager on a real temp directory: copies land under images/<service>/<version>/ with the
// source's content, a missing source is an error naming it (and retried when asked again), images
// neither wanted nor in use are removed, and a new stager finds finished copies and throws away
// unfinished ones.
#include "agent/image_stager.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "tests/fakes/test_util.h"

namespace regen {
namespace {

namespace fs = std::filesystem;
using testing::ReadFileOrDie;
using testing::TempDir;
using testing::WriteFileOrDie;

class ImageStagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.File("src"));
    fs::create_directories(dir_.File("state"));
    WriteFileOrDie(Source("web-v2.qcow2"), "version two image");
    WriteFileOrDie(Source("db-v5.qcow2"), "db five");
  }
  std::string Source(const std::string& name) { return dir_.File("src/" + name); }
  std::string State() { return dir_.File("state"); }
  ImageDirs Dirs() { return ImageDirs({dir_.File("src")}); }

  TempDir dir_{"regen-image-stager-test"};
};

TEST_F(ImageStagerTest, StagesACopyUnderTheStateDirAndReportsIt) {
  ImageStager stager(State(), Dirs());
  std::atomic<int> changes{0};
  stager.SetOnChange([&] { ++changes; });
  stager.SetWanted({{"web", "v2", Source("web-v2.qcow2")}}, {});
  stager.WaitIdle();
  const std::string want = State() + "/images/web/v2/web-v2.qcow2";
  EXPECT_EQ(stager.StagedPath("web", "v2", Source("web-v2.qcow2")), want);
  EXPECT_EQ(ReadFileOrDie(want), "version two image");
  EXPECT_EQ(stager.StagedPath("web", "v2", Source("other.qcow2")), "") << "another source";
  EXPECT_EQ(stager.StagedPath("web", "v3", Source("web-v2.qcow2")), "");
  auto report = stager.Report();
  ASSERT_EQ(report.size(), 1u);
  EXPECT_TRUE(report[0].ready);
  EXPECT_EQ(report[0].error, "");
  EXPECT_EQ(report[0].path, want);
  EXPECT_EQ(changes.load(), 1);
  for (const auto& e : fs::directory_iterator(State() + "/images/web/v2")) {
    EXPECT_EQ(e.path().filename().string().rfind(".copying-", 0), std::string::npos)
        << "temporary copy left behind: " << e.path();
  }
  // Asked again: nothing is copied again.
  stager.SetWanted({{"web", "v2", Source("web-v2.qcow2")}}, {});
  stager.WaitIdle();
  EXPECT_EQ(changes.load(), 1);
}

TEST_F(ImageStagerTest, AMissingSourceIsAnErrorNamingItAndIsRetried) {
  ImageStager stager(State(), Dirs());
  const std::string missing = Source("web-v9.qcow2");
  stager.SetWanted({{"web", "v9", missing}}, {});
  stager.WaitIdle();
  auto report = stager.Report();
  ASSERT_EQ(report.size(), 1u);
  EXPECT_FALSE(report[0].ready);
  EXPECT_NE(report[0].error.find(missing), std::string::npos) << report[0].error;
  EXPECT_NE(report[0].error.find("does not exist"), std::string::npos) << report[0].error;
  EXPECT_EQ(stager.StagedPath("web", "v9", missing), "");
  EXPECT_FALSE(fs::exists(State() + "/images/web/v9/web-v9.qcow2"));

  WriteFileOrDie(missing, "now here");
  stager.SetWanted({{"web", "v9", missing}}, {});
  stager.WaitIdle();
  EXPECT_EQ(ReadFileOrDie(stager.StagedPath("web", "v9", missing)), "now here");
  report = stager.Report();
  ASSERT_EQ(report.size(), 1u);
  EXPECT_EQ(report[0].error, "");
}

TEST_F(ImageStagerTest, ImagesNeitherWantedNorInUseAreRemoved) {
  ImageStager stager(State(), Dirs());
  stager.SetWanted({{"web", "v2", Source("web-v2.qcow2")}, {"db", "v5", Source("db-v5.qcow2")}},
                   {});
  stager.WaitIdle();
  ASSERT_EQ(stager.Report().size(), 2u);
  // The upgrade of web ended: its v2 image now backs running instances, so it stays; db's goes.
  stager.SetWanted({}, {{"web", "v2"}});
  EXPECT_TRUE(fs::exists(State() + "/images/web/v2/web-v2.qcow2"));
  EXPECT_FALSE(fs::exists(State() + "/images/db/v5")) << "db v5 is not wanted nor in use";
  ASSERT_EQ(stager.Report().size(), 1u);
  stager.SetWanted({}, {});
  EXPECT_FALSE(fs::exists(State() + "/images/web/v2"));
  EXPECT_TRUE(stager.Report().empty());
  EXPECT_TRUE(fs::exists(Source("web-v2.qcow2"))) << "the source is never touched";
}

TEST_F(ImageStagerTest, ANewStagerFindsFinishedCopiesAndDropsUnfinishedOnes) {
  {
    ImageStager stager(State(), Dirs());
    stager.SetWanted({{"web", "v2", Source("web-v2.qcow2")}}, {});
    stager.WaitIdle();
  }
  // An agent killed in the middle of a copy leaves the sidecar and a temporary file only.
  fs::create_directories(State() + "/images/db/v5");
  WriteFileOrDie(State() + "/images/db/v5/.source", Source("db-v5.qcow2"));
  WriteFileOrDie(State() + "/images/db/v5/.copying-db-v5.qcow2", "db f");

  ImageStager again(State(), Dirs());
  EXPECT_EQ(again.StagedPath("web", "v2", Source("web-v2.qcow2")),
            State() + "/images/web/v2/web-v2.qcow2");
  EXPECT_EQ(again.StagedPath("db", "v5", Source("db-v5.qcow2")), "");
  EXPECT_FALSE(fs::exists(State() + "/images/db/v5")) << "the unfinished copy is removed";
  auto report = again.Report();
  ASSERT_EQ(report.size(), 1u);
  EXPECT_EQ(report[0].service, "web");
}

TEST_F(ImageStagerTest, ANewSourceForAStagedVersionIsStagedAgain) {
  ImageStager stager(State(), Dirs());
  stager.SetWanted({{"web", "v2", Source("web-v2.qcow2")}}, {});
  stager.WaitIdle();
  WriteFileOrDie(Source("web-v2-fixed.qcow2"), "fixed");
  stager.SetWanted({{"web", "v2", Source("web-v2-fixed.qcow2")}}, {});
  stager.WaitIdle();
  EXPECT_EQ(stager.StagedPath("web", "v2", Source("web-v2.qcow2")), "");
  const std::string path = stager.StagedPath("web", "v2", Source("web-v2-fixed.qcow2"));
  ASSERT_NE(path, "");
  EXPECT_EQ(ReadFileOrDie(path), "fixed");
  EXPECT_FALSE(fs::exists(State() + "/images/web/v2/web-v2.qcow2")) << "the old copy is gone";
}

// Issue 15 finding 7: names and paths from the controller are checked before anything on disk
// changes. A service "..", version "victim" once made the stager remove_all <state>/victim.
TEST_F(ImageStagerTest, BadNamesAndPathsAreRefusedAndChangeNothingOnDisk) {
  fs::create_directories(State() + "/victim");
  WriteFileOrDie(State() + "/victim/keep", "precious");
  WriteFileOrDie(dir_.File("outside.qcow2"), "not an image dir");
  fs::create_symlink(dir_.File("outside.qcow2"), Source("link.qcow2"));
  ImageStager stager(State(), Dirs());
  struct Case {
    StageRequest request;
    std::string expect;  // in the error: the field and the value
  };
  const std::vector<Case> cases = {
      {{"..", "victim", Source("web-v2.qcow2")}, "service: invalid name \"..\""},
      {{"web", "../../victim", Source("web-v2.qcow2")}, "version: \"../../victim\""},
      {{"Web", "v2", Source("web-v2.qcow2")}, "service: invalid name \"Web\""},
      {{"web", "v3", "/etc/passwd"}, "image: \"/etc/passwd\" is not under"},
      {{"web", "v4", Source("../outside.qcow2")},
       "image: \"" + Source("../outside.qcow2") + "\" contains \"..\""},
      {{"web", "v5", "web-v2.qcow2"}, "image: \"web-v2.qcow2\" is not an absolute path"},
      {{"web", "v6", Source("link.qcow2")},
       "image: \"" + Source("link.qcow2") + "\" resolves to \"" + dir_.File("outside.qcow2")},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.request.service + " " + c.request.version + " " + c.request.source);
    stager.SetWanted({c.request}, {});
    stager.WaitIdle();
    auto report = stager.Report();
    ASSERT_EQ(report.size(), 1u);
    EXPECT_FALSE(report[0].ready);
    EXPECT_NE(report[0].error.find(c.expect), std::string::npos) << report[0].error;
    EXPECT_EQ(ReadFileOrDie(State() + "/victim/keep"), "precious");
    EXPECT_FALSE(fs::exists(State() + "/images")) << "nothing may be written for a bad request";
    EXPECT_EQ(ReadFileOrDie(dir_.File("outside.qcow2")), "not an image dir");
  }
  stager.SetWanted({}, {});
  EXPECT_TRUE(stager.Report().empty());
  EXPECT_EQ(ReadFileOrDie(State() + "/victim/keep"), "precious");
}

// An operator's own images may live under <state_dir>/images (the default image_dirs): a
// directory the stager did not write (no sidecar, no copy under way) is never removed.
TEST_F(ImageStagerTest, ANewStagerLeavesDirectoriesItDidNotWriteAlone) {
  fs::create_directories(State() + "/images/base/v1");
  WriteFileOrDie(State() + "/images/base/v1/disk.qcow2", "operator's");
  fs::create_directories(State() + "/images/Odd Name/v1");
  ImageStager stager(State(), Dirs());
  EXPECT_EQ(ReadFileOrDie(State() + "/images/base/v1/disk.qcow2"), "operator's");
  EXPECT_TRUE(fs::exists(State() + "/images/Odd Name/v1"));
  EXPECT_TRUE(stager.Report().empty());
}

}  // namespace
}  // namespace regen
