#include "tests/e2e/lab_watchdog.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fakes/test_util.h"

namespace regen::testing {

using SteadyClock = std::chrono::steady_clock;

LabWatchdog::LabWatchdog(std::string lab_dir, int hosts, std::chrono::milliseconds timeout)
    : dir_(std::move(lab_dir)), hosts_(hosts), timeout_(timeout) {
  for (int k = 1; k <= hosts_; ++k) {
    mkfifo(Device(k).c_str(), 0600);
    // Non-blocking read end first: the agent's O_WRONLY open then does not wait.
    fds_.push_back(open(Device(k).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  }
  thread_ = std::thread([this] { Loop(); });
}

LabWatchdog::~LabWatchdog() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  for (int fd : fds_) {
    if (fd >= 0) close(fd);
  }
}

std::string LabWatchdog::Device(int host) const {
  return dir_ + "/host-" + std::to_string(host) + "/watchdog";
}

std::vector<std::string> LabWatchdog::log() {
  std::lock_guard lock(mu_);
  return log_;
}

void LabWatchdog::Reset(int host, SteadyClock::time_point last_pet) {
  const std::string needle = dir_ + "/host-" + std::to_string(host) + "/";
  auto victims = FindProcesses(needle);
  for (int pid : victims) kill(pid, SIGKILL);
  // Late by: from the moment the timeout ran out to the signals sent.
  const auto late = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() -
                                                                          (last_pet + timeout_))
                        .count();
  ++resets_;
  if (late > kLateMs) ++late_resets_;
  int64_t seen = max_late_ms_.load();
  while (late > seen && !max_late_ms_.compare_exchange_weak(seen, late)) {
  }
  std::lock_guard lock(mu_);
  log_.push_back(std::to_string(WallMillis()) + " host-" + std::to_string(host) +
                 " reset by its watchdog: not petted for " +
                 std::to_string(timeout_.count() + late) + " ms (" + std::to_string(late) +
                 " ms after its timeout" + (late > kLateMs ? ": LATE, the harness's fault" : "") +
                 "), " + std::to_string(victims.size()) + " process(es) killed");
}

void LabWatchdog::Loop() {
  std::vector<SteadyClock::time_point> last(fds_.size(), SteadyClock::now());
  std::vector<bool> armed(fds_.size(), false);  // petted since the last reset
  char buf[256];
  while (!stop_) {
    std::vector<pollfd> p;
    for (int fd : fds_) p.push_back({fd, POLLIN, 0});
    poll(p.data(), p.size(), 20);
    auto now = SteadyClock::now();
    for (size_t i = 0; i < fds_.size(); ++i) {
      if (p[i].revents & POLLIN) {
        ssize_t n = read(fds_[i], buf, sizeof buf);
        if (n > 0) {
          last[i] = now;
          armed[i] = true;
        }
      }
      if ((p[i].revents & POLLHUP) && !(p[i].revents & POLLIN)) {
        // The writer closed (without 'V': the count goes on). A fresh read end stops the HUPs.
        close(fds_[i]);
        fds_[i] = open(Device(static_cast<int>(i) + 1).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      }
      if (armed[i] && now - last[i] > timeout_) {
        armed[i] = false;
        Reset(static_cast<int>(i) + 1, last[i]);
      }
    }
  }
}

}  // namespace regen::testing
