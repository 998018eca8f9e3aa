// The agent's fencing lease, its maintenance hold, and what the main loop last saw of its managed
// domains: shared by the main loop (fences by it), the controller link (renews it; retries fast
// while it runs) and the fencing backstop thread. Thread-safe (one mutex); nothing here blocks.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/thread_annotations.h"

namespace regen {

// What the backstop should do now (BackstopDecide).
struct BackstopVerdict {
  bool expired = false;    // now >= the end of the lease and hold
  bool confirmed = false;  // a listing made after that end showed no managed domain alive
  bool pet_device = true;  // a hardware watchdog may be petted now
  bool trip = false;       // give up: WATCHDOG=trigger, never pet again
  Clock::Duration unconfirmed_for{0};
};

// One consistent view of a Lease (Lease::Snapshot).
struct LeaseSnapshot {
  Clock::TimePoint lease_until{};
  std::optional<Clock::TimePoint> hold_until;  // a maintenance hold, if one is granted
  Clock::TimePoint last_renewal{};             // when the lease last grew (or started)
  // The main loop's listings: when the last one ran (min(): never) and whether it showed a
  // managed domain alive; the last one that showed none; the first of the current run of
  // listings that show one.
  Clock::TimePoint last_listing_at = Clock::TimePoint::min();
  bool last_listing_alive = false;
  Clock::TimePoint confirmed_gone_at = Clock::TimePoint::min();
  Clock::TimePoint alive_since = Clock::TimePoint::min();
  // Renewals that came after the lease and hold had run out: each is a fence the main loop must
  // apply even if it was too busy to see the lease run out (Agent::ApplyLease).
  uint64_t lapses = 0;
  // The domains are protected until then: max(lease_until, hold_until).
  Clock::TimePoint until() const {
    return hold_until && *hold_until > lease_until ? *hold_until : lease_until;
  }
};

// The backstop's decision, pure. Before `until()` all is well. After it, the agent must prove
// its managed domains are gone: the last listing was made after `until()` and showed none alive.
// Until it does, a hardware watchdog is not petted (its own timeout is its grace), and once that
// lasts `grace` the agent trips (systemd's WATCHDOG=trigger).
BackstopVerdict BackstopDecide(const LeaseSnapshot& lease, Clock::TimePoint now,
                               Clock::Duration grace);

class Lease {
 public:
  // No lease at all (standalone mode): until() is max(), never expired.
  explicit Lease(const Clock& clock) : clock_(clock) {}

  // Starts a lease that runs until `until` (agent start), dropping any hold; it was last renewed
  // at `last_renewal` (an earlier run's renewal; nullopt: now).
  void Start(Clock::TimePoint until, std::optional<Clock::TimePoint> last_renewal = std::nullopt);
  // The lease runs until `until` unless it already runs longer (a late, shorter renewal never
  // shortens it). Returns whether it grew.
  bool Renew(Clock::TimePoint until);
  // The lease ends now (its etcd lease is gone: a controller may already be healing); a
  // maintenance hold stays. Returns whether it was still running.
  bool EndNow();
  // A maintenance hold until `until`; nullopt ends any hold.
  void SetHold(std::optional<Clock::TimePoint> until);
  // From the main loop after each successful listing: the managed domains alive in it (running,
  // paused, starting, or in a state it cannot tell).
  void NoteListing(std::vector<std::string> managed_alive);
  // From the main loop before it starts managed domain `name`: alive from now on as far as the
  // fencing backstop knows, until a listing says otherwise.
  void NoteStarting(const std::string& name);
  // The managed domains the main loop last knew alive or starting: what the fencing backstop
  // kills itself when the lease ran out and the main loop has not fenced.
  std::vector<std::string> ManagedAlive() const;

  LeaseSnapshot Snapshot() const;
  // The end of the lease and hold; now >= until() means fence.
  Clock::TimePoint until() const { return Snapshot().until(); }
  bool Expired() const { return clock_.Now() >= until(); }
  // Time left of the hold (zero when there is none or it is over).
  std::chrono::milliseconds HoldRemaining() const;

 private:
  const Clock& clock_;
  mutable Mutex mu_;
  LeaseSnapshot state_ GUARDED_BY(mu_) = NoLease();
  std::vector<std::string> managed_alive_ GUARDED_BY(mu_);
  static LeaseSnapshot NoLease() {
    LeaseSnapshot s;
    s.lease_until = Clock::TimePoint::max();
    return s;
  }
};

}  // namespace regen
