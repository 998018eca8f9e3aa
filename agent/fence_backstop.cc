#include "agent/fence_backstop.h"

#include <fcntl.h>
#include <linux/watchdog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace regen {

namespace {
int64_t Ms(Clock::Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}
}  // namespace

Clock::Duration BackstopGrace(std::chrono::milliseconds configured,
                              std::chrono::milliseconds fencing_lease) {
  if (configured > std::chrono::milliseconds::zero()) return configured;
  return std::min<Clock::Duration>(std::chrono::seconds(1), fencing_lease / 2);
}

FenceBackstop::FenceBackstop(const Lease& lease, const Clock& clock, FenceBackstopOptions options,
                             TripFn on_trip, KillFn kill)
    : lease_(lease),
      clock_(clock),
      options_(std::move(options)),
      on_trip_(std::move(on_trip)),
      kill_(std::move(kill)) {}

FenceBackstop::~FenceBackstop() { Stop(); }

Status FenceBackstop::Start() {
  if (!options_.device.empty()) {
    device_fd_ = ::open(options_.device.c_str(), O_WRONLY | O_CLOEXEC);
    if (device_fd_ < 0) {
      return InvalidArgument("watchdog_device " + options_.device +
                             ": cannot open it: " + std::strerror(errno) +
                             " (load a watchdog driver, e.g. modprobe softdog, check that no other "
                             "daemon holds the device, or remove watchdog_device from agent.yaml)");
    }
    LearnDeviceTimeout();
    spdlog::info(
        "fencing backstop: petting {} (timeout {} ms) every {} ms while this host's domains are "
        "safe; it is never closed with the magic 'V'",
        options_.device, device_timeout_ms_.load(), options_.interval.count());
  }
  {
    MutexLock lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void FenceBackstop::LearnDeviceTimeout() {
  int configured = static_cast<int>(
      std::chrono::duration_cast<std::chrono::seconds>(options_.device_timeout).count());
  if (configured > 0) {
    int t = configured;
    if (::ioctl(device_fd_, WDIOC_SETTIMEOUT, &t) != 0) {
      spdlog::warn(
          "watchdog_device {}: cannot set its timeout to {} s ({}); counting on "
          "watchdog_timeout {} s being the device's",
          options_.device, configured, std::strerror(errno), configured);
    }
  }
  int now = 0;
  if (::ioctl(device_fd_, WDIOC_GETTIMEOUT, &now) == 0 && now > 0) {
    if (configured > 0 && now != configured) {
      spdlog::warn("watchdog_device {}: its timeout is {} s, not watchdog_timeout {} s",
                   options_.device, now, configured);
    }
    device_timeout_ms_ = int64_t{now} * 1000;
  } else if (configured > 0) {
    device_timeout_ms_ = int64_t{configured} * 1000;
  } else {
    spdlog::warn(
        "watchdog_device {}: cannot read its timeout ({}); set watchdog_timeout in "
        "agent.yaml so that host_down_after can be checked against it",
        options_.device, std::strerror(errno));
  }
}

void FenceBackstop::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (device_fd_ >= 0) {
    ::close(device_fd_);  // no 'V': the device keeps counting
    device_fd_ = -1;
  }
}

void FenceBackstop::Run() {
  MutexLock lock(mu_);
  while (!stop_) {
    lock.native().unlock();
    CheckOnce();
    lock.native().lock();
    auto next = std::chrono::steady_clock::now() + options_.interval;
    while (!stop_ && cv_.wait_until(lock.native(), next) != std::cv_status::timeout) {
    }
  }
}

void FenceBackstop::KillUnconfirmed(const BackstopVerdict& v) {
  if (!kill_) return;
  std::vector<std::string> names = lease_.ManagedAlive();
  if (names.empty()) return;
  int killed = kill_(names);
  if (killed <= 0) return;
  kills_ += killed;
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
  spdlog::error(
      "fencing backstop: the lease ran out {} ms ago and the main loop has not confirmed the "
      "fence: SIGKILLed {} qemu processes of the {} managed domains it last knew alive ({})",
      Ms(v.unconfirmed_for), killed, names.size(), list);
}

void FenceBackstop::CheckOnce() {
  // Also paused when the device is absent: status and tests see the verdict the same way.
  BackstopVerdict v = BackstopDecide(lease_.Snapshot(), clock_.Now(), options_.grace);
  // Even once tripped: giving up on the watchdog is not giving up on the fence.
  if (!v.pet_device) KillUnconfirmed(v);
  if (tripped_) return;  // for good: no more pets
  if (v.trip) {
    if (tripped_.exchange(true)) return;
    std::string why = "fencing backstop: the lease ran out " +
                      std::to_string(Ms(v.unconfirmed_for)) +
                      " ms ago and this agent cannot confirm its managed domains are gone "
                      "(hypervisor hung or failing); giving up on this host";
    spdlog::critical("{}: no more watchdog pings{}", why,
                     device_fd_ >= 0 ? ", " + options_.device + " no longer petted" : "");
    if (on_trip_) on_trip_(why);
    return;
  }
  if (!v.pet_device) {
    if (!device_paused_.exchange(true) && device_fd_ >= 0) {
      spdlog::error(
          "fencing backstop: lease ran out, managed domains not yet confirmed gone: not petting "
          "{} until they are (the host resets at the device's timeout)",
          options_.device);
    }
    return;
  }
  if (device_paused_.exchange(false) && device_fd_ >= 0) {
    spdlog::warn("fencing backstop: fence confirmed; petting {} again", options_.device);
  }
  if (device_fd_ < 0) return;
  // Any byte but 'V' (which would let a close disarm the device).
  if (::write(device_fd_, ".", 1) == 1) {
    ++pets_;
  } else {
    spdlog::error("fencing backstop: writing to {} failed: {}", options_.device,
                  std::strerror(errno));
  }
}

}  // namespace regen
