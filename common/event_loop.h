// A task queue run on one owner thread (Envoy's dispatcher, reduced): other threads Post() work
// to it, or Call() and wait for the result. The owner's periodic work comes in as two hooks. Post,
// Call and stopping() from any thread (Call never from the loop's own thread); Start/Stop from one
// thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <thread>

#include "common/thread_annotations.h"

namespace regen {

class EventLoop {
 public:
  using Task = std::function<void()>;
  using TimePoint = std::chrono::steady_clock::time_point;

  struct Hooks {
    // When to wake up if nothing is posted (called on the loop thread before each wait).
    std::function<TimePoint()> next_wake;
    // Runs on the loop thread after each wake-up, once the posted tasks have run.
    Task after_tasks;
    // On Stop(): run the tasks already posted before the thread ends (true), or drop them.
    bool drain_on_stop = false;
  };

  EventLoop() = default;
  ~EventLoop();  // Stop()
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Starts the loop thread. After a Stop() it may be started again.
  void Start(Hooks hooks) EXCLUDES(mu_);
  // Stops the loop thread and waits for it (idempotent).
  void Stop() EXCLUDES(mu_);
  // True once Stop() was called (until the next Start()).
  bool stopping() EXCLUDES(mu_);

  // Runs `fn` on the loop thread.
  void Post(Task fn) EXCLUDES(mu_);
  // Runs `fn` on the loop thread and returns its result.
  template <typename T>
  T Call(std::function<T()> fn) {
    auto task = std::make_shared<std::packaged_task<T()>>(std::move(fn));
    auto future = task->get_future();
    Post([task] { (*task)(); });
    return future.get();
  }

 private:
  void Run(const Hooks& hooks) EXCLUDES(mu_);

  Mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // Start/Stop's thread only
};

}  // namespace regen
