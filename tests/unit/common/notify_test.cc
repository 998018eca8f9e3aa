#include "common/notify.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "tests/fakes/fake_notifier.h"
#include "tests/fakes/notify_listener.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::FakeNotifier;
using testing::NotifyListener;
using testing::TempDir;
using testing::WaitFor;

// A main loop like the daemons': one thread runs posted tasks in order.
class TestLoop {
 public:
  TestLoop() : thread_([this] { Run(); }) {}
  ~TestLoop() {
    Release();
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(fn));
    }
    cv_.notify_all();
  }
  // Stalls the loop until Release().
  // Stalls the loop until Release(); returns once the loop is stalled (every task posted before
  // has run).
  void Stall() {
    {
      std::lock_guard lock(mu_);
      stalled_ = true;
      stall_running_ = false;
    }
    Post([this] {
      std::unique_lock lock(mu_);
      stall_running_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !stalled_; });
    });
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return stall_running_; });
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      stalled_ = false;
    }
    cv_.notify_all();
  }
  std::thread::id id() const { return thread_.get_id(); }
  // Tasks posted and not yet started.
  size_t Queued() {
    std::lock_guard lock(mu_);
    return tasks_.size();
  }
  LoopWatchdog::Poster poster() {
    return [this](std::function<void()> fn) { Post(std::move(fn)); };
  }

 private:
  void Run() {
    while (true) {
      std::function<void()> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
        if (stop_) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  bool stop_ = false;                        // guarded by mu_
  bool stalled_ = false;                     // guarded by mu_
  bool stall_running_ = false;               // guarded by mu_
  std::thread thread_;
};

TEST(LoopWatchdogTest, ReadyThenPingsAllFromTheMainLoop) {
  FakeNotifier notifier(milliseconds(100));
  TestLoop loop;
  LoopWatchdog watchdog(notifier, loop.poster(), [] { return "all fine"; });
  watchdog.Start();
  ASSERT_TRUE(WaitFor([&] { return notifier.Count("WATCHDOG=1") >= 4; }, milliseconds(5000)));
  watchdog.Stop();
  auto messages = notifier.messages();
  ASSERT_GE(messages.size(), 5u);
  EXPECT_EQ(messages.front().state, "READY=1\nSTATUS=all fine");
  EXPECT_EQ(messages.back().state, "STOPPING=1");
  for (size_t i = 0; i + 1 < messages.size(); ++i) {
    EXPECT_EQ(messages[i].thread, loop.id()) << messages[i].state << " not sent by the loop";
  }
}

TEST(LoopWatchdogTest, AStalledLoopStopsPingingAndResumesAfter) {
  FakeNotifier notifier(milliseconds(40));  // a ping every 20 ms
  TestLoop loop;
  LoopWatchdog watchdog(notifier, loop.poster(), nullptr);
  watchdog.Start();
  ASSERT_TRUE(WaitFor([&] { return notifier.Count("WATCHDOG=1") >= 2; }, milliseconds(5000)));
  loop.Stall();  // pings are sent by loop tasks: none can go out from now on
  int before = notifier.Count("WATCHDOG=1");
  EXPECT_FALSE(WaitFor([&] { return notifier.Count("WATCHDOG=1") > before; }, milliseconds(300)));
  // The watchdog ticked ~15 times meanwhile, but at most one ping waits on the stalled loop
  // (counted structurally, not by timing what comes out after the release).
  EXPECT_LE(loop.Queued(), 1u);
  loop.Release();
  // The pings then carry on.
  ASSERT_TRUE(
      WaitFor([&] { return notifier.Count("WATCHDOG=1") >= before + 3; }, milliseconds(5000)));
}

TEST(LoopWatchdogTest, NoWatchdogNoPingsButReady) {
  FakeNotifier notifier;  // WatchdogSec= not set
  TestLoop loop;
  LoopWatchdog watchdog(notifier, loop.poster(), nullptr);
  watchdog.Start();
  ASSERT_TRUE(WaitFor([&] { return notifier.Count("READY=1") == 1; }, milliseconds(5000)));
  EXPECT_FALSE(WaitFor([&] { return notifier.Count("WATCHDOG=1") > 0; }, milliseconds(100)));
}

TEST(LoopWatchdogTest, StatusIsSentWhenItChanges) {
  FakeNotifier notifier;
  TestLoop loop;
  std::mutex mu;
  std::string status = "0 hosts up";
  LoopWatchdog watchdog(
      notifier, loop.poster(),
      [&] {
        std::lock_guard lock(mu);
        return status;
      },
      milliseconds(10));
  watchdog.Start();
  ASSERT_TRUE(WaitFor([&] { return notifier.Count("READY=1\nSTATUS=0 hosts up") == 1; },
                      milliseconds(5000)));
  {
    std::lock_guard lock(mu);
    status = "3 hosts up";
  }
  ASSERT_TRUE(
      WaitFor([&] { return notifier.Count("STATUS=3 hosts up") == 1; }, milliseconds(5000)));
  // Unchanged: not sent again.
  EXPECT_FALSE(WaitFor([&] { return notifier.Count("STATUS=3 hosts up") > 1; }, milliseconds(100)));
}

TEST(LoopWatchdogTest, NothingIsSentAfterStop) {
  FakeNotifier notifier(milliseconds(20));
  TestLoop loop;
  {
    LoopWatchdog watchdog(notifier, loop.poster(), nullptr);
    watchdog.Start();
    ASSERT_TRUE(WaitFor([&] { return notifier.Count("WATCHDOG=1") >= 1; }, milliseconds(5000)));
    loop.Stall();
    WaitFor([] { return false; }, milliseconds(50));  // a ping is now queued behind the stall
    watchdog.Stop();
  }
  loop.Release();
  loop.Post([] {});
  WaitFor([] { return false; }, milliseconds(50));
  EXPECT_EQ(notifier.messages().back().state, "STOPPING=1");
}

// The real notifier against a socket standing in for systemd's.
class SystemdNotifierTest : public ::testing::Test {
 protected:
  void TearDown() override {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
  }
  TempDir dir_{"regen-notify"};
};

TEST_F(SystemdNotifierTest, SendsToNotifySocketAndReadsTheWatchdogTimeout) {
  NotifyListener listener(dir_.File("notify.sock"));
  setenv("NOTIFY_SOCKET", listener.path().c_str(), 1);
  setenv("WATCHDOG_USEC", "300000", 1);
  unsetenv("WATCHDOG_PID");
  SystemdNotifier notifier;
  EXPECT_EQ(notifier.WatchdogTimeout(), milliseconds(300));
  notifier.Notify("READY=1\nSTATUS=up");
  ASSERT_TRUE(WaitFor([&] { return listener.messages().size() == 1; }, milliseconds(5000)));
  EXPECT_EQ(listener.messages()[0].state, "READY=1\nSTATUS=up");
}

TEST_F(SystemdNotifierTest, WatchdogMeantForAnotherProcessIsOff) {
  setenv("WATCHDOG_USEC", "300000", 1);
  setenv("WATCHDOG_PID", "1", 1);
  SystemdNotifier notifier;
  EXPECT_EQ(notifier.WatchdogTimeout(), std::chrono::microseconds(0));
}

TEST_F(SystemdNotifierTest, WithoutAServiceManagerNothingHappens) {
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  SystemdNotifier notifier;
  EXPECT_EQ(notifier.WatchdogTimeout(), std::chrono::microseconds(0));
  notifier.Notify("READY=1");  // no socket: a no-op, not a crash
}

}  // namespace
}  // namespace regen
