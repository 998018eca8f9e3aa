#include "common/event_loop.h"

namespace regen {

EventLoop::~EventLoop() { Stop(); }

void EventLoop::Start(Hooks hooks) {
  {
    MutexLock lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this, hooks = std::move(hooks)] { Run(hooks); });
}

void EventLoop::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool EventLoop::stopping() {
  MutexLock lock(mu_);
  return stop_;
}

void EventLoop::Post(Task fn) {
  {
    MutexLock lock(mu_);
    tasks_.push_back(std::move(fn));
  }
  cv_.notify_one();
}

void EventLoop::Run(const Hooks& hooks) {
  while (true) {
    const TimePoint wake = hooks.next_wake ? hooks.next_wake() : TimePoint::max();
    std::deque<Task> tasks;
    {
      MutexLock lock(mu_);
      while (!stop_ && tasks_.empty()) {
        if (wake == TimePoint::max()) {
          cv_.wait(lock.native());
        } else if (cv_.wait_until(lock.native(), wake) == std::cv_status::timeout) {
          break;
        }
      }
      if (stop_ && (!hooks.drain_on_stop || tasks_.empty())) return;
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) task();
    if (hooks.after_tasks) hooks.after_tasks();
  }
}

}  // namespace regen
