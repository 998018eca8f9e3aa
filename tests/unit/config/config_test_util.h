// Helpers for the tests of config/: tables of bad inputs and the checks on their error messages.
// Test-only; single-threaded.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/status.h"

namespace regen::testing {

// One bad input and what its error message must contain.
struct BadCase {
  const char* label;     // what is wrong, for the test output
  const char* yaml;      // the file's content
  const char* where;     // "line:column" of the error
  const char* path;      // the field path named by the error ("" for the whole file)
  const char* fragment;  // must appear in the message, usually the quoted value
};

inline std::ostream& operator<<(std::ostream& os, const BadCase& c) { return os << c.label; }

// The message must read "<file>:<where>: <path>: ..." and contain `fragment`.
inline void ExpectBad(const Status& status, const std::string& file, const BadCase& c) {
  ASSERT_FALSE(status.ok()) << c.label << ": accepted\n" << c.yaml;
  EXPECT_EQ(status.code(), Code::kInvalidArgument) << c.label << ": " << status.ToString();
  std::string prefix = file + ":" + c.where + ": ";
  if (c.path[0] != '\0') prefix += std::string(c.path) + ": ";
  EXPECT_EQ(status.message().rfind(prefix, 0), 0u)
      << c.label << ": message does not start with '" << prefix << "':\n  " << status.message();
  EXPECT_NE(status.message().find(c.fragment), std::string::npos)
      << c.label << ": message lacks '" << c.fragment << "':\n  " << status.message();
}

// Small stand-ins for TempDir, SourceDir, ReadFileOrDie and WriteFileOrDie of
// tests/fakes/test_util.h: that object file does not link at the moment (its ChildProcess declares
// `extern char** environ` inside namespace regen::testing, so it needs an undefined
// regen::testing::environ). Switch back to test_util.h once that is fixed.
class ConfigTempDir {
 public:
  ConfigTempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr ? tmp : "/tmp") + "/regen-config-test-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << tmpl << " failed";
    path_ = tmpl;
  }
  ~ConfigTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ConfigTempDir(const ConfigTempDir&) = delete;
  ConfigTempDir& operator=(const ConfigTempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string ConfigSourceDir() {
  const char* dir = std::getenv("REGEN_SOURCE_DIR");
  return dir != nullptr ? dir : REGEN_SOURCE_DIR_DEFAULT;
}

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ADD_FAILURE() << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteWholeFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  if (!out) ADD_FAILURE() << "cannot write " << path;
}

}  // namespace regen::testing
