#include "common/notify.h"

#include <systemd/sd-daemon.h>

#include <algorithm>

namespace regen {

SystemdNotifier::SystemdNotifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(/*unset_environment=*/0, &usec) > 0) {
    watchdog_timeout_ = std::chrono::microseconds(usec);
  }
}

void SystemdNotifier::Notify(const std::string& state) {
  // Errors are ignored on purpose: without a service manager listening there is no one to tell.
  sd_notify(/*unset_environment=*/0, state.c_str());
}

void LoopWatchdog::Shared::Send(const std::string& state) {
  MutexLock lock(mu);
  if (!stopped) notifier.Notify(state);
}

void LoopWatchdog::Shared::Ping() {
  MutexLock lock(mu);
  if (!stopped && !tripped) notifier.Notify("WATCHDOG=1");
}

void LoopWatchdog::Trip(const std::string& why) {
  MutexLock lock(shared_->mu);
  if (shared_->stopped || shared_->tripped) return;
  shared_->tripped = true;
  shared_->notifier.Notify("WATCHDOG=trigger\nSTATUS=" + why);
}

bool LoopWatchdog::tripped() {
  MutexLock lock(shared_->mu);
  return shared_->tripped;
}

LoopWatchdog::LoopWatchdog(Notifier& notifier, Poster post, StatusFn status,
                           std::chrono::milliseconds status_interval)
    : shared_(std::make_shared<Shared>(notifier)),
      post_(std::move(post)),
      status_(std::move(status)),
      status_interval_(status_interval),
      ping_interval_(notifier.WatchdogTimeout() > std::chrono::microseconds::zero()
                         ? std::max<std::chrono::microseconds>(notifier.WatchdogTimeout() / 2,
                                                               std::chrono::milliseconds(1))
                         : std::chrono::microseconds::zero()) {}

LoopWatchdog::~LoopWatchdog() { Stop(); }

void LoopWatchdog::Start() {
  MutexLock lock(mu_);
  if (thread_.joinable() || stop_) return;
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void LoopWatchdog::Stop() {
  bool started = false;
  {
    MutexLock lock(mu_);
    if (stop_) return;
    stop_ = true;
    started = started_;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  MutexLock lock(shared_->mu);
  if (started) shared_->notifier.Notify("STOPPING=1");
  shared_->stopped = true;
}

void LoopWatchdog::Run() {
  using Steady = std::chrono::steady_clock;
  std::shared_ptr<Shared> shared = shared_;
  std::string last_status = status_ ? status_() : "";
  std::string ready = "READY=1";
  if (!last_status.empty()) ready += "\nSTATUS=" + last_status;
  post_([shared, ready] { shared->Send(ready); });

  Steady::time_point next_ping = Steady::now();
  Steady::time_point next_status = Steady::now() + status_interval_;
  const bool watchdog = ping_interval_ > std::chrono::microseconds::zero();
  MutexLock lock(mu_);
  while (true) {
    Steady::time_point wake = watchdog ? std::min(next_ping, next_status) : next_status;
    while (!stop_ && cv_.wait_until(lock.native(), wake) != std::cv_status::timeout) {
    }
    if (stop_) return;
    Steady::time_point now = Steady::now();
    if (watchdog && now >= next_ping) {
      next_ping = now + ping_interval_;
      // At most one ping waits on the loop: a stalled loop does not pile them up.
      if (!shared->ping_pending.exchange(true)) {
        post_([shared] {
          shared->ping_pending = false;
          shared->Ping();
        });
      }
    }
    if (status_ && now >= next_status) {
      lock.native().unlock();  // status_ may wait for the main loop: do not hold mu_ meanwhile
      std::string line = status_();
      lock.native().lock();
      next_status = Steady::now() + status_interval_;
      if (line != last_status) {
        shared->Send("STATUS=" + line);
        last_status = line;
      }
    }
  }
}

}  // namespace regen
