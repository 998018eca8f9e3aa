// The fencing backstop: a thread of its own that watches the agent's lease (agent/lease.h) and
// never waits for the main loop, which a hung hypervisor call may block. While the lease runs, or
// once a listing made after it ran out showed no managed domain alive, it pets an optional
// hardware watchdog (watchdog_device). Once the lease ran out and that proof is missing it stops
// petting the device at once (the device's timeout resets the host), and after `grace` it trips
// for good: on_trip (the daemon sends systemd WATCHDOG=trigger and stops its WATCHDOG=1 pings).
// With a kill function (QEMU drivers: agent/qemu_killer.h) it also SIGKILLs, from its own thread,
// the qemus of the managed domains the main loop last knew alive or starting, at every look
// after the lease ran out until a listing confirms them gone: a main loop stuck in a libvirt
// call cannot delay the fence, and a host whose watchdog is late runs nothing twice.
// Start/Stop from one thread; tripped() from any.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/lease.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace regen {

struct FenceBackstopOptions {
  Clock::Duration grace{std::chrono::seconds(1)};  // fencing_backstop_after
  std::chrono::milliseconds interval{100};         // how often it looks (and pets the device)
  std::string device;                              // watchdog_device; "" = none
  // watchdog_timeout: set on the device at Start (WDIOC_SETTIMEOUT) when > 0.
  std::chrono::milliseconds device_timeout{0};
};

// The grace agent.yaml asks for, or (zero: not set) min(1 s, fencing_lease / 2).
Clock::Duration BackstopGrace(std::chrono::milliseconds configured,
                              std::chrono::milliseconds fencing_lease);

class FenceBackstop {
 public:
  using TripFn = std::function<void(const std::string& why)>;
  // SIGKILLs the qemus of the named domains; returns how many it signalled. Called from the
  // backstop's thread.
  using KillFn = std::function<int(const std::vector<std::string>& names)>;
  FenceBackstop(const Lease& lease, const Clock& clock, FenceBackstopOptions options,
                TripFn on_trip, KillFn kill = nullptr);
  ~FenceBackstop();  // Stop()
  FenceBackstop(const FenceBackstop&) = delete;
  FenceBackstop& operator=(const FenceBackstop&) = delete;

  // Opens the watchdog device (if any) and starts the thread. The device is opened last thing
  // at start so that a daemon that fails to start never leaves it armed. Error: the device
  // cannot be opened (kInvalidArgument naming watchdog_device).
  Status Start();
  // Stops the thread and closes the device without the magic 'V': the kernel keeps counting, so
  // an agent that does not come back within the device's timeout gets its host reset.
  void Stop();
  bool tripped() const { return tripped_.load(); }
  // The device is not petted now (lease ran out, fence not confirmed).
  bool device_paused() const { return device_paused_.load(); }
  // Bytes written to the device so far (tests, status).
  int64_t pets() const { return pets_.load(); }
  // qemu processes the backstop itself has SIGKILLed so far (tests, status).
  int64_t kills() const { return kills_.load(); }
  // The device's timeout once started: what the device says (WDIOC_GETTIMEOUT), else the
  // configured one; nullopt without a device or when neither is known.
  std::optional<std::chrono::milliseconds> device_timeout() const {
    int64_t ms = device_timeout_ms_.load();
    if (ms <= 0) return std::nullopt;
    return std::chrono::milliseconds(ms);
  }

  // One look at the lease (the thread's body; any thread).
  void CheckOnce();

 private:
  void Run();
  void LearnDeviceTimeout();
  void KillUnconfirmed(const BackstopVerdict& v);

  const Lease& lease_;
  const Clock& clock_;
  const FenceBackstopOptions options_;
  TripFn on_trip_;
  KillFn kill_;
  int device_fd_ = -1;
  std::atomic<int64_t> kills_{0};
  std::atomic<bool> tripped_{false};
  std::atomic<int64_t> pets_{0};
  std::atomic<bool> device_paused_{false};
  std::atomic<int64_t> device_timeout_ms_{0};

  Mutex mu_;
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace regen
