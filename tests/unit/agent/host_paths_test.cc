// ImageDirs and the name checks on a real temp directory: a file is accepted only under an image
// directory, as written and once symlinks are resolved; every refusal names the field and value.
#include "agent/host_paths.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/fakes/test_util.h"

namespace regen {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::WriteFileOrDie;

class HostPathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.File("images/sub"));
    fs::create_directories(dir_.File("imagesX"));
    WriteFileOrDie(dir_.File("images/a.qcow2"), "a");
    WriteFileOrDie(dir_.File("images/sub/b.qcow2"), "b");
    WriteFileOrDie(dir_.File("imagesX/c.qcow2"), "c");
    fs::create_symlink(dir_.File("imagesX/c.qcow2"), dir_.File("images/out.qcow2"));
    fs::create_symlink(dir_.File("images/a.qcow2"), dir_.File("images/in.qcow2"));
    fs::create_symlink(dir_.File("imagesX"), dir_.File("images/dirlink"));
  }
  std::string Error(const std::string& path) {
    auto r = dirs_.Confine("image", path);
    return r.ok() ? "" : r.status().message();
  }
  TempDir dir_{"regen-host-paths-test"};
  ImageDirs dirs_{{dir_.File("images")}};
};

TEST_F(HostPathsTest, FilesUnderTheDirectoriesAreAcceptedCanonical) {
  auto a = dirs_.Confine("image", dir_.File("images/a.qcow2"));
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(*a, fs::canonical(dir_.File("images/a.qcow2")).string());
  auto b = dirs_.Confine("image", dir_.File("images/sub/b.qcow2"));
  ASSERT_TRUE(b.ok()) << b.status().message();
  auto in = dirs_.Confine("image", dir_.File("images/in.qcow2"));
  ASSERT_TRUE(in.ok()) << in.status().message();
  EXPECT_EQ(*in, *a);
}

TEST_F(HostPathsTest, EverythingElseIsRefusedNamingFieldAndValue) {
  const std::string outside = dir_.File("imagesX/c.qcow2");
  EXPECT_NE(Error(outside).find("image: \"" + outside + "\" is not under"), std::string::npos)
      << "a sibling directory sharing the prefix: " << Error(outside);
  EXPECT_NE(Error(dir_.File("images/../imagesX/c.qcow2")).find("contains \"..\""),
            std::string::npos);
  EXPECT_NE(Error("images/a.qcow2").find("is not an absolute path"), std::string::npos);
  EXPECT_NE(Error(dir_.File("images/out.qcow2")).find("resolves to \"" + outside + "\""),
            std::string::npos)
      << Error(dir_.File("images/out.qcow2"));
  EXPECT_NE(Error(dir_.File("images/dirlink/c.qcow2")).find("resolves to"), std::string::npos);
  EXPECT_NE(Error(dir_.File("images/sub")).find("is not a regular file"), std::string::npos);
  EXPECT_NE(Error("/etc/passwd").find("image: \"/etc/passwd\" is not under"), std::string::npos);
  auto missing = dirs_.Confine("image", dir_.File("images/none.qcow2"));
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("does not exist on this host"), std::string::npos);
  // Outside and missing: refused as outside, not "missing".
  EXPECT_EQ(dirs_.Confine("image", "/nonexistent/x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ImageDirs({}).Confine("image", dir_.File("images/a.qcow2")).status().code(),
            Code::kInvalidArgument);
}

TEST(InstanceNamesTest, NameServiceAndVersionAreChecked) {
  InstanceSpec s;
  s.name = "web-0";
  s.service = "web";
  s.version = "v1.2";
  EXPECT_TRUE(ValidateInstanceNames(s).ok());
  s.version = "../v1";
  EXPECT_NE(ValidateInstanceNames(s).message().find("version: \"../v1\""), std::string::npos);
  s.version = "v1";
  s.service = "../web";
  EXPECT_NE(ValidateInstanceNames(s).message().find("service"), std::string::npos);
  s.service = "web";
  s.name = "web/0";
  EXPECT_NE(ValidateInstanceNames(s).message().find("name: invalid name \"web/0\""),
            std::string::npos);
  EXPECT_FALSE(ValidateServiceVersion("web", "..").ok());
  EXPECT_FALSE(ValidateServiceVersion("..", "v1").ok());
}

}  // namespace
}  // namespace regen
