// FakeCommandRunner: a CommandRunner (common/subprocess.h) that records every call (argv, stdin)
// and answers from a handler the test sets, so argv building and error handling can be checked
// without running anything. Header-only; thread-safe (one mutex).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/subprocess.h"
#include "common/thread_annotations.h"

namespace regen::testing {

class FakeCommandRunner : public CommandRunner {
 public:
  struct Call {
    std::vector<std::string> argv;
    std::string input;
    std::chrono::milliseconds timeout{0};
  };
  using Handler = std::function<Result<CommandOutput>(const Call&)>;

  // Without a handler every command succeeds with empty output.
  Result<CommandOutput> Run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                            const std::string& input) override {
    Handler handler;
    Call call{argv, input, timeout};
    {
      MutexLock lock(mu_);
      calls_.push_back(call);
      handler = handler_;
    }
    if (!handler) return CommandOutput{0, "", ""};
    return handler(call);
  }

  void SetHandler(Handler handler) {
    MutexLock lock(mu_);
    handler_ = std::move(handler);
  }
  std::vector<Call> calls() const {
    MutexLock lock(mu_);
    return calls_;
  }
  void ClearCalls() {
    MutexLock lock(mu_);
    calls_.clear();
  }

 private:
  mutable Mutex mu_;
  Handler handler_ GUARDED_BY(mu_);
  std::vector<Call> calls_ GUARDED_BY(mu_);
};

}  // namespace regen::testing
