// The fencing lease and maintenance hold across restarts of the agent (same boot): a restarted
// agent must not grant itself a fresh lease the controller never gave (the controller may already
// be healing its instances elsewhere), and must keep a maintenance hold. state_dir/lease.json
// holds both ends on the steady clock, which runs on across process restarts within one boot,
// with the boot's id; it is rewritten (temporary file + rename, no fsync: it must outlive the
// agent, not the host) whenever they change. Thread-safe (one mutex).
#pragma once

#include <optional>
#include <string>

#include "agent/lease.h"
#include "common/thread_annotations.h"

namespace regen {

struct PersistedLease {
  Clock::TimePoint lease_until{};
  std::optional<Clock::TimePoint> hold_until;
};

// This boot's id (/proc/sys/kernel/random/boot_id), "" if it cannot be read.
std::string CurrentBootId();

class LeaseFile {
 public:
  // `boot_id` "": nothing is ever restored.
  LeaseFile(std::string path, std::string boot_id)
      : path_(std::move(path)), boot_id_(std::move(boot_id)) {}
  // What an earlier run left in this boot; nullopt if none, another boot's, or unreadable.
  std::optional<PersistedLease> Load() const;
  // Records the lease's and hold's ends. A failed write is logged (a restarted agent then
  // starts a fresh lease, as before this file existed).
  void Save(const LeaseSnapshot& lease);

 private:
  const std::string path_;
  const std::string boot_id_;
  Mutex mu_;  // one writer at a time (they share the temporary file)
  std::string last_error_ GUARDED_BY(mu_);
};

}  // namespace regen
