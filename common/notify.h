// Telling the service manager (systemd, Type=notify) how a daemon is doing: READY=1 once it
// serves, STATUS= one-line summaries, WATCHDOG=1 pings from the daemon's main loop, STOPPING=1,
// and WATCHDOG=trigger when the daemon gives up on itself (LoopWatchdog::Trip, any thread).
// Notifier implementations are thread-safe. LoopWatchdog is started and stopped from one thread
// (the daemon's main()); its pings run on the daemon's main loop.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/thread_annotations.h"

namespace regen {

// The seam over sd_notify(3). A fake (tests/fakes/fake_notifier.h) records what is sent.
class Notifier {
 public:
  virtual ~Notifier() = default;
  // Sends one state message: "READY=1", "STATUS=...", "WATCHDOG=1", "WATCHDOG=trigger", or
  // several joined by '\n'.
  virtual void Notify(const std::string& state) = 0;
  // The service manager's watchdog timeout (WatchdogSec=), or zero when there is no watchdog.
  virtual std::chrono::microseconds WatchdogTimeout() const = 0;
};

// The real one: sd_notify(3) to $NOTIFY_SOCKET. Does nothing when the daemon does not run under
// a service manager (NOTIFY_SOCKET unset). The watchdog timeout is read once, at construction,
// with sd_watchdog_enabled(3): WATCHDOG_USEC, honouring WATCHDOG_PID when that is set.
class SystemdNotifier : public Notifier {
 public:
  SystemdNotifier();
  void Notify(const std::string& state) override;
  std::chrono::microseconds WatchdogTimeout() const override { return watchdog_timeout_; }

 private:
  std::chrono::microseconds watchdog_timeout_{0};
};

// Keeps the service manager informed while a daemon runs. A ticker thread of its own posts (via
// `post`, the daemon's "run this on the main loop") a WATCHDOG=1 ping every half watchdog
// timeout, at most one at a time: the ping is sent by the main loop, so a stalled loop stops
// pinging and systemd kills the daemon. Every `status_interval` the ticker calls `status` (on the
// ticker thread; it may block on the main loop, e.g. through a Call) and sends STATUS= when the
// line changed. READY=1 is sent by the main loop too, with the first status line.
class LoopWatchdog {
 public:
  using Poster = std::function<void(std::function<void()>)>;
  using StatusFn = std::function<std::string()>;
  LoopWatchdog(Notifier& notifier, Poster post, StatusFn status,
               std::chrono::milliseconds status_interval = std::chrono::seconds(5));
  ~LoopWatchdog();
  LoopWatchdog(const LoopWatchdog&) = delete;
  LoopWatchdog& operator=(const LoopWatchdog&) = delete;

  // Starts the ticker: READY=1 (with STATUS=) goes out from the main loop, then the pings. Call
  // once the daemon serves and its main loop runs.
  void Start();
  // Stops the ticker and sends STOPPING=1. Call before the main loop stops (a status call in
  // flight waits for the loop). After Stop() returns, pings still queued on the loop send
  // nothing, so the notifier may be destroyed.
  void Stop();
  // Gives up on the daemon, from any thread (no main loop needed): WATCHDOG=trigger with
  // STATUS=`why` goes out now (systemd >= 243 handles it as a watchdog timeout at once), and no
  // WATCHDOG=1 is sent any more. Once only; nothing after Stop().
  void Trip(const std::string& why);
  bool tripped();

 private:
  // What posted tasks share with this object; they may outlive it on the loop's queue.
  struct Shared {
    explicit Shared(Notifier& n) : notifier(n) {}
    Notifier& notifier;
    Mutex mu;
    bool stopped GUARDED_BY(mu) = false;  // once true, tasks send nothing
    bool tripped GUARDED_BY(mu) = false;  // once true, no WATCHDOG=1
    std::atomic<bool> ping_pending{false};
    // Sends `state` unless stopped (and, for the ping, unless tripped).
    void Send(const std::string& state);
    void Ping();
  };
  void Run();

  std::shared_ptr<Shared> shared_;
  Poster post_;
  StatusFn status_;
  const std::chrono::milliseconds status_interval_;
  const std::chrono::microseconds ping_interval_;  // zero: no watchdog

  Mutex mu_;
  std::condition_variable cv_;  // with mu_
  bool stop_ GUARDED_BY(mu_) = false;
  bool started_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // started under mu_; joined by Stop() (Start and Stop run on one thread)
};

}  // namespace regen
