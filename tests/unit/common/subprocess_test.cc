#include "common/subprocess.h"

#include <gtest/gtest.h>

namespace regen {
namespace {

using std::chrono::milliseconds;

TEST(SubprocessTest, CapturesOutputAndExitCode) {
  RealCommandRunner runner;
  auto r = runner.Run({"sh", "-c", "echo out; echo err >&2; exit 3"}, milliseconds(5000));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->stdout_text, "out\n");
  EXPECT_EQ(r->stderr_text, "err\n");
}

TEST(SubprocessTest, ArgvIsNotInterpretedByAShell) {
  RealCommandRunner runner;
  auto r = runner.Run({"echo", "$HOME; rm -rf /", "a b"}, milliseconds(5000));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_text, "$HOME; rm -rf / a b\n");
}

TEST(SubprocessTest, FeedsStdin) {
  RealCommandRunner runner;
  std::string big(200000, 'x');
  auto r = runner.Run({"wc", "-c"}, milliseconds(5000), big);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::stoi(r->stdout_text), 200000);
}

TEST(SubprocessTest, TimeoutKills) {
  RealCommandRunner runner;
  auto r = runner.Run({"sleep", "10"}, milliseconds(100));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded);
  EXPECT_NE(r.status().message().find("sleep 10"), std::string::npos);
}

TEST(SubprocessTest, MissingProgram) {
  RealCommandRunner runner;
  auto r = runner.Run({"/nonexistent/regen-no-such-program"}, milliseconds(1000));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
}

TEST(SubprocessTest, CheckedRunReportsCommandAndStderr) {
  RealCommandRunner runner;
  auto r = CheckedRun(runner, {"sh", "-c", "echo boom >&2; exit 1"}, milliseconds(5000));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exited with 1: boom"), std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace regen
