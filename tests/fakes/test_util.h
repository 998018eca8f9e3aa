// Helpers shared by Regen's tests: temp dirs that clean themselves, waiting on a condition with a
// deadline (tests never sleep to wait), file helpers, and locating the source tree.
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace regen::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "regen-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Polls `condition` every `step` until it is true (returns true) or `timeout` passes (false).
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds step = std::chrono::milliseconds(5));

std::string ReadFileOrDie(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& content);

// The source tree root (REGEN_SOURCE_DIR, set by CTest; else the compile-time path).
std::string SourceDir();
std::string BinaryDir();

// True when `program` is found in PATH.
bool HaveProgram(const std::string& program);

// In CI (CI set in the environment) a missing component is a failure, never a skip; outside CI
// the test is skipped with a message saying what to install. Use as:
//   if (!HaveProgram("qemu-system-x86_64")) REGEN_REQUIRE_COMPONENT("qemu-system-x86_64", "...");
#define REGEN_REQUIRE_COMPONENT(what, hint)                                                 \
  do {                                                                                      \
    if (std::getenv("CI") != nullptr) {                                                     \
      FAIL() << "component " << (what) << " cannot run here and CI requires it: " << (hint); \
    } else {                                                                                \
      GTEST_SKIP() << "component " << (what) << " cannot run here: " << (hint);              \
    }                                                                                       \
  } while (0)

}  // namespace regen::testing
