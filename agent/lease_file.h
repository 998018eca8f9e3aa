// The fencing lease and maintenance hold across restarts of the agent (same boot): a restarted
// agent must not grant itself a fresh lease the controller never gave (the controller may already
// be healing its instances elsewhere), and must keep a maintenance hold. state_dir/lease.json
// holds both ends and the last renewal on the agent's Clock (CLOCK_BOOTTIME: it runs on across
// process restarts and suspends within one boot), with the boot's id; it is rewritten (temporary file + rename, no fsync: it must outlive the
// agent, not the host) whenever they change, by a thread of its own: a write stalled behind a
// busy disk (the VMs' overlays share it) never holds up the heartbeat acks that renew the lease.
// Thread-safe (one mutex).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>

#include "agent/lease.h"
#include "common/thread_annotations.h"

namespace regen {

struct PersistedLease {
  Clock::TimePoint lease_until{};
  std::optional<Clock::TimePoint> hold_until;
  // When the lease last grew; nullopt in a file written before it was recorded.
  std::optional<Clock::TimePoint> last_renewal;
};

// This boot's id (/proc/sys/kernel/random/boot_id), "" if it cannot be read.
std::string CurrentBootId();

class LeaseFile {
 public:
  // `boot_id` "": nothing is ever restored.
  LeaseFile(std::string path, std::string boot_id);
  ~LeaseFile();  // writes what is still pending
  LeaseFile(const LeaseFile&) = delete;
  LeaseFile& operator=(const LeaseFile&) = delete;

  // What an earlier run left in this boot; nullopt if none, another boot's, or unreadable.
  std::optional<PersistedLease> Load() const;
  // Records the lease's and hold's ends: the writer thread writes the latest soon (never
  // blocks). A failed write is logged (a restarted agent then starts a fresh lease).
  void Save(const LeaseSnapshot& lease);
  // Returns once everything saved before the call is written (or failed).
  void Flush();

 private:
  void Run();
  void Write(const PersistedLease& lease);  // writer thread only

  const std::string path_;
  const std::string boot_id_;
  std::string last_error_;  // writer thread only
  Mutex mu_;
  std::condition_variable cv_;  // with mu_: work for the writer, or a write done
  std::optional<PersistedLease> pending_ GUARDED_BY(mu_);
  uint64_t saved_ GUARDED_BY(mu_) = 0;    // Save() calls so far
  uint64_t written_ GUARDED_BY(mu_) = 0;  // of those, written
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // declared last: starts once the rest is built
};

}  // namespace regen
