#include "agent/qemu_killer.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "agent/reaper.h"
#include "common/log.h"

namespace regen {

namespace {

// A pidfd for `pid`, -1 if the kernel has none (then kill() is used) or the pid is gone.
int OpenPidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

bool SendKill(int pidfd, pid_t pid) {
#ifdef SYS_pidfd_send_signal
  if (pidfd >= 0) return ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) == 0;
#endif
  (void)pidfd;
  return ::kill(pid, SIGKILL) == 0;
}

}  // namespace

std::optional<std::string> QemuPidDir(const std::string& libvirt_uri) {
  const std::string embed = "qemu:///embed?root=";
  if (libvirt_uri.rfind(embed, 0) == 0) {
    std::string root = libvirt_uri.substr(embed.size());
    root = root.substr(0, root.find('&'));
    if (root.empty()) return std::nullopt;
    return root + "/run/qemu";
  }
  if (libvirt_uri == "qemu:///system") return std::string("/run/libvirt/qemu");
  return std::nullopt;
}

bool IsQemuOf(pid_t pid, const std::string& name, const std::string& proc_root) {
  if (pid <= 1 || name.empty()) return false;
  std::string dir = proc_root + "/" + std::to_string(pid);
  std::string comm = ReadProcFile(dir + "/comm");
  if (comm.rfind("qemu", 0) != 0) return false;
  auto who = ParseQemuCmdline(ReadProcFile(dir + "/cmdline"));  // empty for a zombie: no match
  return who && who->name == name;
}

QemuKiller::QemuKiller(std::string pid_dir, KnownPids known, std::string proc_root)
    : pid_dir_(std::move(pid_dir)), known_(std::move(known)), proc_root_(std::move(proc_root)) {}

std::vector<pid_t> QemuKiller::Candidates(const std::string& name) const {
  std::vector<pid_t> pids;
  if (known_) pids = known_(name);
  // The pid file: after an agent restart the running qemus are no children of this agent.
  if (!pid_dir_.empty() && name.find('/') == std::string::npos) {
    std::string text = ReadProcFile(pid_dir_ + "/" + name + ".pid");
    char* end = nullptr;
    long pid = std::strtol(text.c_str(), &end, 10);
    if (end != text.c_str() && pid > 1 && pid < (1L << 22)) pids.push_back(static_cast<pid_t>(pid));
  }
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  return pids;
}

std::vector<pid_t> QemuKiller::Kill(const std::vector<std::string>& names) const {
  std::vector<pid_t> killed;
  for (const auto& name : names) {
    for (pid_t pid : Candidates(name)) {
      int pidfd = OpenPidfd(pid);
      if (pidfd < 0 && errno != ENOSYS) continue;  // gone already
      if (!IsQemuOf(pid, name, proc_root_)) {
        spdlog::debug("fencing: pid {} is not the qemu of {} (any more): not killed", pid, name);
      } else if (SendKill(pidfd, pid)) {
        killed.push_back(pid);
      } else if (errno != ESRCH) {
        spdlog::error("fencing: SIGKILL to qemu pid {} of {} failed: {}", pid, name,
                      std::strerror(errno));
      }
      if (pidfd >= 0) ::close(pidfd);
    }
  }
  return killed;
}

}  // namespace regen
