// The hosts' leases in embedded mode (DESIGN "Liveness, fencing and high availability"): every
// heartbeat is acknowledged here, on the gRPC thread that read it, from memory only: never behind
// the main loop, a store write, an fsync or an admin call. The main loop judges liveness from the
// heartbeat times recorded here. Thread-safe: every method may be called from any thread.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/proto/regen.pb.h"
#include "common/thread_annotations.h"
#include "config/controller_config.h"

namespace regen {

class AgentSink;

class LeaseKeeper {
 public:
  LeaseKeeper(const ControllerConfig& config, Clock& clock) : config_(config), clock_(clock) {}

  // ---- sessions (main loop) ----
  // The host's heartbeats on `sink` are acknowledged from now on. The main loop calls it after it
  // sent the session what the agent must follow (its desired set): an ack may un-fence an agent,
  // which must then find the controller's current word on the stream before it. Counts as word
  // from the host (its heartbeat time is now).
  void Open(const std::string& host, AgentSink* sink);
  // The host's heartbeats are still recorded but no longer acknowledged (the host was declared
  // down: its lease must run out before it is given a new one with a new desired set).
  void Suspend(const std::string& host);
  // The session ended: forget it (its recorded heartbeat time stays).
  void Close(const std::string& host, AgentSink* sink);

  // ---- heartbeats (gRPC threads) ----
  // Records the heartbeat of `host` on `sink` and, when that session is open, sends the ack on
  // it (renewing the agent's lease, with the maintenance hold if one runs). Heartbeats of a
  // session that is not the host's current one are ignored.
  void OnHeartbeat(const std::string& host, AgentSink* sink, const v1::Heartbeat& heartbeat);

  // ---- liveness (main loop) ----
  // Every known host gets host_down_after from `at` to be heard (a controller start).
  void Seed(const std::map<std::string, Clock::TimePoint>& hosts);
  struct HostLease {
    Clock::TimePoint last_heartbeat{};  // when the last heartbeat arrived (or the seed)
    int64_t last_heartbeat_unix_ms = 0;
    AgentSink* sink = nullptr;  // the current session (null: none)
    bool open = false;          // its heartbeats are acknowledged
    // The latest time a maintenance hold granted to this host's agent may run to ({}: none
    // outstanding). The host may not be declared down before this + host_down_after.
    Clock::TimePoint hold_bound{};
    uint64_t last_grant_sequence = 0;  // the ack that granted the latest hold (this session)
  };
  std::optional<HostLease> Get(const std::string& host) const;
  std::map<std::string, HostLease> All() const;

  // ---- maintenance (main loop) ----
  // While set, every ack grants a hold until `until` (steady clock); nullopt: acks grant none
  // (and end the agents' holds). `outstanding`: at a start, every known host's hold bound (holds
  // granted before a restart).
  void SetHold(std::optional<Clock::TimePoint> until);
  void SeedHoldBound(Clock::TimePoint outstanding);

 private:
  const ControllerConfig config_;
  Clock& clock_;
  mutable Mutex mu_;
  std::map<std::string, HostLease> hosts_ GUARDED_BY(mu_);
  std::optional<Clock::TimePoint> hold_until_ GUARDED_BY(mu_);
};

}  // namespace regen
