#include "agent/lease.h"

#include <algorithm>

namespace regen {

BackstopVerdict BackstopDecide(const LeaseSnapshot& lease, Clock::TimePoint now,
                               Clock::Duration grace) {
  BackstopVerdict v;
  const Clock::TimePoint until = lease.until();
  v.expired = now >= until;
  if (!v.expired) return v;
  // Only the last listing counts, and only if it was made after the end.
  v.confirmed = lease.last_listing_at >= until && !lease.last_listing_alive;
  if (v.confirmed) return v;
  // Unconfirmed since the end, or since a domain was seen alive again after a confirmation.
  Clock::TimePoint since = until;
  if (lease.last_listing_alive && lease.confirmed_gone_at >= until) {
    since = std::max(since, lease.alive_since);
  }
  v.unconfirmed_for = now - since;
  v.pet_device = false;
  v.trip = v.unconfirmed_for >= grace;
  return v;
}

void Lease::Start(Clock::TimePoint until, std::optional<Clock::TimePoint> last_renewal) {
  const Clock::TimePoint now = clock_.Now();
  MutexLock lock(mu_);
  state_ = LeaseSnapshot{};
  state_.lease_until = until;
  state_.last_renewal = last_renewal.value_or(now);
}

bool Lease::Renew(Clock::TimePoint until) {
  const Clock::TimePoint now = clock_.Now();
  MutexLock lock(mu_);
  if (until <= state_.lease_until) return false;
  if (now >= state_.until()) ++state_.lapses;
  state_.lease_until = until;
  state_.last_renewal = now;
  return true;
}

bool Lease::EndNow() {
  Clock::TimePoint now = clock_.Now();
  MutexLock lock(mu_);
  if (state_.lease_until <= now) return false;
  state_.lease_until = now;
  return true;
}

void Lease::SetHold(std::optional<Clock::TimePoint> until) {
  MutexLock lock(mu_);
  state_.hold_until = until;
}

void Lease::NoteListing(std::vector<std::string> alive) {
  Clock::TimePoint now = clock_.Now();
  const bool managed_alive = !alive.empty();
  MutexLock lock(mu_);
  managed_alive_ = std::move(alive);
  if (managed_alive && !state_.last_listing_alive) state_.alive_since = now;
  if (!managed_alive) state_.confirmed_gone_at = now;
  state_.last_listing_at = now;
  state_.last_listing_alive = managed_alive;
}

void Lease::NoteStarting(const std::string& name) {
  MutexLock lock(mu_);
  if (std::find(managed_alive_.begin(), managed_alive_.end(), name) == managed_alive_.end()) {
    managed_alive_.push_back(name);
  }
}

std::vector<std::string> Lease::ManagedAlive() const {
  MutexLock lock(mu_);
  return managed_alive_;
}

LeaseSnapshot Lease::Snapshot() const {
  MutexLock lock(mu_);
  return state_;
}

std::chrono::milliseconds Lease::HoldRemaining() const {
  LeaseSnapshot s = Snapshot();
  if (!s.hold_until) return std::chrono::milliseconds(0);
  return std::max(
      std::chrono::milliseconds(0),
      std::chrono::duration_cast<std::chrono::milliseconds>(*s.hold_until - clock_.Now()));
}

}  // namespace regen
