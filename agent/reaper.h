// Makes the agent a child subreaper and reaps the qemu processes re-parented to it, so a dead qemu
// is noticed in milliseconds (LAB-NOTES.md). Only qemu* processes whose parent is this process are
// reaped. At once: the domains' qemus (learnt alive, with `-name guest=`) and qemus in another
// session (daemonized, re-parented to us: libvirt polls the capability probe's daemon with
// kill(pid, 0) until it is gone, so it must not linger). After `unknown_grace`: other qemus in our
// own session, which libvirt started and waits for itself (the probe's `qemu -daemonize` parent:
// reaping it first fails libvirt's probe and every domain start with "unable to wait for process:
// No child processes").
//
// With qemu:///embed libvirt runs inside the agent, so every qemu it starts is re-parented to the
// agent when libvirt's intermediate child exits. The reaper remembers each live qemu child's guest
// name and libvirt domain id (from its command line: `-name guest=NAME` and the per-domain
// directory `domain-ID-NAME`), and when it reaps one it reports (name, id, status) through the exit
// callback: that is the agent's fastest failure event, well before libvirt's own lifecycle event.
//
// BlockSigchld() must be called on the main thread before any other thread starts; Start/Stop from
// one thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace regen {

// What identifies a qemu process: the guest name and libvirt's domain id (-1 if not found).
struct QemuIdentity {
  std::string name;
  int64_t domain_id = -1;
};

// Parses a qemu command line (NUL-separated, as in /proc/PID/cmdline). nullopt if it has no
// `-name guest=...` (or `-name NAME`).
std::optional<QemuIdentity> ParseQemuCmdline(const std::string& cmdline);

// The whole of a /proc file (or any file); "" if it cannot be opened or read (e.g. the process
// exited meanwhile). Never throws.
std::string ReadProcFile(const std::string& path);

class ChildReaper {
 public:
  // name, libvirt domain id, and the wait status of the reaped qemu. Called on the reaper thread.
  using ExitCallback = std::function<void(const QemuIdentity& who, int wait_status)>;

  explicit ChildReaper(std::chrono::milliseconds unknown_grace = std::chrono::seconds(2))
      : unknown_grace_(unknown_grace) {}
  ~ChildReaper();
  ChildReaper(const ChildReaper&) = delete;
  ChildReaper& operator=(const ChildReaper&) = delete;

  // Blocks SIGCHLD in the calling thread (threads started later inherit the mask).
  static void BlockSigchld();
  // Set before Start().
  void SetExitCallback(ExitCallback cb) { exit_cb_ = std::move(cb); }
  // prctl(PR_SET_CHILD_SUBREAPER) and starts the reaping thread.
  Status Start();
  void Stop();
  // Learns new qemu children and reaps every qemu zombie child now; returns how many were reaped.
  int ScanOnce();
  int reaped() const { return reaped_.load(); }
  // The live qemu children learnt to run domain `name` (fencing kills them first: QemuKiller).
  std::vector<pid_t> PidsOf(const std::string& name);

 private:
  void Loop();
  std::atomic<bool> stop_{false};
  std::atomic<int> reaped_{0};
  ExitCallback exit_cb_;
  Mutex mu_;                                             // serialises ScanOnce
  std::map<pid_t, QemuIdentity> known_ GUARDED_BY(mu_);  // live qemu children seen so far
  // Zombie qemu children that are not known domains, and when they were first seen.
  std::map<pid_t, std::chrono::steady_clock::time_point> unknown_zombies_ GUARDED_BY(mu_);
  const std::chrono::milliseconds unknown_grace_;
  std::thread thread_;
};

}  // namespace regen
