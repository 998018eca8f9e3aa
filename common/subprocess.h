// Runs external programs (qemu-img, ovs-vsctl, ovs-ofctl) with an argv, never through a shell,
// with a timeout. CommandRunner is the seam; tests swap in a fake. RunCommand is thread-safe.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace regen {

struct CommandOutput {
  int exit_code = -1;  // -1 when killed by a signal or by the timeout
  std::string stdout_text;
  std::string stderr_text;
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Runs argv[0] (looked up in PATH) with `input` on stdin. Returns the output whatever the exit
  // code; an error only when the program cannot be started or exceeds `timeout` (then it is
  // killed). Use CheckedRun to turn a non-zero exit into an error.
  virtual Result<CommandOutput> Run(const std::vector<std::string>& argv,
                                    std::chrono::milliseconds timeout,
                                    const std::string& input = "") = 0;
};

class RealCommandRunner : public CommandRunner {
 public:
  Result<CommandOutput> Run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                            const std::string& input = "") override;
};

// Runs and requires exit code 0; the error names the command and carries its stderr.
Result<CommandOutput> CheckedRun(CommandRunner& runner, const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout, const std::string& input = "");

// "prog 'arg with space' arg2": for messages only, never executed.
std::string FormatArgv(const std::vector<std::string>& argv);

// How a child ended, from waitpid's status: "killed by signal N" or "exit status N".
std::string DescribeWaitStatus(int wait_status);

}  // namespace regen
