#include "controller/lease_keeper.h"

#include <algorithm>

#include "controller/controller_core.h"

namespace regen {

void LeaseKeeper::Open(const std::string& host, AgentSink* sink) {
  MutexLock lock(mu_);
  HostLease& h = hosts_[host];
  if (h.sink != sink) h.last_grant_sequence = 0;  // sequences count per session
  h.sink = sink;
  h.open = true;
  h.last_heartbeat = clock_.Now();  // a Hello (or a heartbeat just seen) is word from the agent
  h.last_heartbeat_unix_ms = clock_.WallMillis();
}

void LeaseKeeper::Suspend(const std::string& host) {
  MutexLock lock(mu_);
  if (auto it = hosts_.find(host); it != hosts_.end()) it->second.open = false;
}

void LeaseKeeper::Close(const std::string& host, AgentSink* sink) {
  MutexLock lock(mu_);
  auto it = hosts_.find(host);
  if (it == hosts_.end() || it->second.sink != sink) return;
  it->second.sink = nullptr;
  it->second.open = false;
}

void LeaseKeeper::OnHeartbeat(const std::string& host, AgentSink* sink,
                              const v1::Heartbeat& heartbeat) {
  MutexLock lock(mu_);
  auto it = hosts_.find(host);
  if (it == hosts_.end() || it->second.sink != sink) return;
  HostLease& h = it->second;
  Clock::TimePoint now = clock_.Now();
  h.last_heartbeat = now;
  h.last_heartbeat_unix_ms = clock_.WallMillis();
  // The agent no longer holds anything granted so far: its hold bound is gone.
  if (heartbeat.hold_remaining_ms() <= 0 && heartbeat.acked_through() >= h.last_grant_sequence &&
      !hold_until_) {
    h.hold_bound = {};
  }
  if (!h.open) return;
  v1::ControllerMessage ack;
  v1::HeartbeatAck* a = ack.mutable_heartbeat_ack();
  a->set_sequence(heartbeat.sequence());
  a->set_heartbeat_interval_ms(config_.heartbeat_interval.count());
  a->set_fencing_lease_ms(config_.fencing_lease.count());
  a->set_host_down_after_ms(config_.host_down_after.count());
  if (hold_until_ && *hold_until_ > now) {
    auto hold = std::chrono::duration_cast<std::chrono::milliseconds>(*hold_until_ - now);
    a->set_hold_ms(std::max<int64_t>(hold.count(), 1));
    h.hold_bound = std::max(h.hold_bound, *hold_until_);
    h.last_grant_sequence = heartbeat.sequence();
  }
  sink->Send(ack);
}

void LeaseKeeper::Seed(const std::map<std::string, Clock::TimePoint>& hosts) {
  MutexLock lock(mu_);
  int64_t wall = clock_.WallMillis();
  for (const auto& [name, at] : hosts) {
    HostLease& h = hosts_[name];
    h.last_heartbeat = at;
    h.last_heartbeat_unix_ms = wall;
  }
}

std::optional<LeaseKeeper::HostLease> LeaseKeeper::Get(const std::string& host) const {
  MutexLock lock(mu_);
  auto it = hosts_.find(host);
  if (it == hosts_.end()) return std::nullopt;
  return it->second;
}

std::map<std::string, LeaseKeeper::HostLease> LeaseKeeper::All() const {
  MutexLock lock(mu_);
  return hosts_;
}

void LeaseKeeper::SetHold(std::optional<Clock::TimePoint> until) {
  MutexLock lock(mu_);
  hold_until_ = until;
}

void LeaseKeeper::SeedHoldBound(Clock::TimePoint outstanding) {
  MutexLock lock(mu_);
  for (auto& [name, h] : hosts_) h.hold_bound = std::max(h.hold_bound, outstanding);
}

}  // namespace regen
