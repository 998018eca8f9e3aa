// EventLoop: posted tasks run in order on the loop thread, Call returns results, the hooks wake
// the loop on time, and Stop drops or drains what is still queued.
#include "common/event_loop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace regen {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

TEST(EventLoopTest, PostedTasksRunInOrderOnTheLoopThread) {
  EventLoop loop;
  loop.Start({});
  std::vector<int> order;  // loop thread only
  std::thread::id loop_thread;
  for (int i = 0; i < 5; ++i) loop.Post([&order, i] { order.push_back(i); });
  loop.Post([&] { loop_thread = std::this_thread::get_id(); });
  EXPECT_EQ(loop.Call<std::vector<int>>([&] { return order; }), (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_NE(loop.Call<std::thread::id>([&] { return loop_thread; }), std::this_thread::get_id());
  loop.Stop();
}

TEST(EventLoopTest, NextWakeWakesTheLoopAndAfterTasksRunsAfterEachWake) {
  EventLoop loop;
  std::atomic<int> after{0};
  EventLoop::Hooks hooks;
  hooks.next_wake = [] { return steady_clock::now() + milliseconds(5); };
  hooks.after_tasks = [&] { ++after; };
  loop.Start(std::move(hooks));
  auto deadline = steady_clock::now() + std::chrono::seconds(10);
  while (after.load() < 5 && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_GE(after.load(), 5);  // woken by time alone, nothing posted
  loop.Stop();
}

TEST(EventLoopTest, StoppingIsTrueOnceStopIsCalledAndStartClearsIt) {
  EventLoop loop;
  loop.Start({});
  EXPECT_FALSE(loop.stopping());
  loop.Stop();
  EXPECT_TRUE(loop.stopping());
  loop.Start({});
  EXPECT_FALSE(loop.stopping());
  EXPECT_EQ(loop.Call<int>([] { return 7; }), 7);
  loop.Stop();
  loop.Stop();  // idempotent
}

// Blocks the loop thread until released, so tasks queue up behind it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void Wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return open; });
  }
  void Open() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
};

TEST(EventLoopTest, StopDrainsQueuedTasksOnlyWhenAskedTo) {
  for (bool drain : {false, true}) {
    EventLoop loop;
    EventLoop::Hooks hooks;
    hooks.drain_on_stop = drain;
    loop.Start(std::move(hooks));
    Gate gate;
    std::atomic<bool> entered{false};
    std::atomic<bool> ran{false};
    loop.Post([&] {
      entered = true;
      gate.Wait();
    });
    while (!entered.load()) std::this_thread::sleep_for(milliseconds(1));
    loop.Post([&] { ran = true; });
    std::thread stopper([&] { loop.Stop(); });
    while (!loop.stopping()) std::this_thread::sleep_for(milliseconds(1));
    gate.Open();
    stopper.join();
    EXPECT_EQ(ran.load(), drain) << "drain_on_stop=" << drain;
  }
}

}  // namespace
}  // namespace regen
