// Fast fencing on the QEMU driver: SIGKILLs the qemu processes of the named domains before the
// agent asks libvirt to destroy them (libvirt's destroy sends SIGTERM and waits; under load three
// destroys took over 0.7 s). A candidate pid comes from the reaper's knowledge (agent/reaper.h) or
// from the domain's pid file in libvirt's state directory, and is killed only if /proc/PID/comm
// starts with "qemu" and its command line says `-name guest=NAME`: an unrelated pid (a stale pid
// file, a reused pid) is never killed. The kill goes through a pidfd opened before the check, so a
// pid reused between the check and the kill cannot be hit either. No state: any thread.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace regen {

// libvirt's per-domain pid file directory for `uri`: `<root>/run/qemu` for
// qemu:///embed?root=<root>, /run/libvirt/qemu for qemu:///system; nullopt for any other driver
// (the test driver runs no process: fencing keeps libvirt's destroy only).
std::optional<std::string> QemuPidDir(const std::string& libvirt_uri);

// True if `pid` is alive and runs the qemu of domain `name` (comm "qemu*", `-name guest=NAME`).
// `proc_root` is /proc except in tests.
bool IsQemuOf(pid_t pid, const std::string& name, const std::string& proc_root = "/proc");

class QemuKiller {
 public:
  // The live qemu pids the caller already knows for domain `name` (the reaper's); may be empty.
  using KnownPids = std::function<std::vector<pid_t>(const std::string& name)>;
  QemuKiller(std::string pid_dir, KnownPids known, std::string proc_root = "/proc");

  // SIGKILLs the verified qemu of each named domain; returns the pids it signalled.
  std::vector<pid_t> Kill(const std::vector<std::string>& names) const;
  // The candidate pids of `name` (known, then the pid file), not yet verified.
  std::vector<pid_t> Candidates(const std::string& name) const;

 private:
  const std::string pid_dir_;
  const KnownPids known_;
  const std::string proc_root_;
};

}  // namespace regen
