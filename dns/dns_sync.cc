#include "dns/dns_sync.h"

#include <algorithm>

#include "common/backoff.h"

namespace regen::dns {

std::chrono::milliseconds DnsBackoff(const DnsSyncOptions& options, int64_t consecutive_failures) {
  return BackoffDelay({options.initial_backoff, options.max_backoff, 2}, consecutive_failures);
}

DnsSync::DnsSync(DnsUpdater& updater, const Clock& clock, DnsSyncOptions options,
                 std::optional<ZoneRecords> applied, AttemptCallback on_attempt)
    : updater_(updater),
      clock_(clock),
      options_(std::move(options)),
      on_attempt_(std::move(on_attempt)),
      applied_(std::move(applied)) {
  if (applied_) std::erase_if(*applied_, [](const auto& entry) { return entry.second.empty(); });
}

DnsSync::~DnsSync() { Stop(); }

Status DnsSync::SetDesired(ZoneRecords desired) {
  // An empty set means "absent": drop such names so they compare equal.
  std::erase_if(desired, [](const auto& entry) { return entry.second.empty(); });
  // Validate now (pure, cheap) so a bad record is the caller's error, not a retry loop.
  RETURN_IF_ERROR(BuildZoneUpdate(options_.zone, options_.ttl, std::nullopt, desired).status());
  {
    MutexLock lock(mu_);
    desired_ = std::move(desired);
    desired_set_ = true;
    ++desired_version_;
  }
  wake_.notify_all();
  return Status::Ok();
}

uint64_t DnsSync::desired_version() const {
  MutexLock lock(mu_);
  return desired_version_;
}

Status DnsSync::AddUncertain(const std::set<std::string>& names) {
  Status first_error = ValidateZoneName(options_.zone);
  if (!first_error.ok()) return first_error;
  std::set<std::string> good;
  for (const std::string& name : names) {
    Status s = ValidateRecordName(options_.zone, name);
    if (s.ok()) {
      good.insert(name);
    } else if (first_error.ok()) {
      first_error = s;
    }
  }
  {
    MutexLock lock(mu_);
    uncertain_.insert(good.begin(), good.end());
  }
  wake_.notify_all();
  return first_error;
}

std::set<std::string> DnsSync::Uncertain() const {
  MutexLock lock(mu_);
  return uncertain_;
}

bool DnsSync::DiffersLocked() const {
  if (!desired_set_) return false;
  return !applied_ || *applied_ != desired_ || !uncertain_.empty();
}

bool DnsSync::FullRewriteDueLocked() const {
  if (!applied_ || resync_requested_) return true;
  if (options_.resync_interval.count() <= 0) return false;
  return !last_full_ || clock_.Now() >= *last_full_ + options_.resync_interval;
}

std::optional<Clock::Duration> DnsSync::TimeUntilDueLocked() const {
  if (!desired_set_) return std::nullopt;
  Clock::TimePoint now = clock_.Now();
  std::optional<Clock::TimePoint> due;
  if (DiffersLocked() || resync_requested_) {
    due = now;
  } else if (options_.resync_interval.count() > 0) {
    due = last_full_ ? *last_full_ + options_.resync_interval : now;
  }
  if (!due) return std::nullopt;
  if (not_before_ && *not_before_ > *due) due = *not_before_;
  return std::max(Clock::Duration::zero(), *due - now);
}

void DnsSync::RequestResync() {
  {
    MutexLock lock(mu_);
    resync_requested_ = true;
  }
  wake_.notify_all();
}

Status DnsSync::Flush() {
  MutexLock flush_lock(flush_mu_);
  ZoneRecords sending;
  bool full = false;
  uint64_t version = 0;
  std::set<std::string> uncertain_sent;
  Result<ZoneUpdate> update = InvalidArgument("unset");
  {
    MutexLock lock(mu_);
    std::optional<Clock::Duration> wait = TimeUntilDueLocked();
    if (!wait || *wait > Clock::Duration::zero()) return Status::Ok();
    sending = desired_;
    version = desired_version_;
    uncertain_sent = uncertain_;
    full = FullRewriteDueLocked();
    update = BuildZoneUpdate(options_.zone, options_.ttl, applied_, sending, uncertain_);
    if (update.ok() && full) {
      // Deletions from what we know was applied; every desired name rewritten.
      Result<ZoneUpdate> everything =
          BuildZoneUpdate(options_.zone, options_.ttl, std::nullopt, sending);
      if (everything.ok())
        update->replaces = std::move(everything->replaces);
      else
        update = everything.status();
    }
  }
  if (!update.ok()) return update.status();  // validated by SetDesired: not expected

  Status result = update->empty() ? Status::Ok() : updater_.Apply(*update);
  DnsSyncReport report;
  {
    MutexLock lock(mu_);
    ++report_.attempts;
    if (result.ok()) {
      applied_ = std::move(sending);
      // The update deleted or rewrote every one of them (names added since wait for the next).
      for (const std::string& name : uncertain_sent) uncertain_.erase(name);
      report_.acknowledged_version = version;
      report_.consecutive_failures = 0;
      report_.last_error = Status::Ok();
      report_.last_success = clock_.Now();
      not_before_.reset();
      if (full) {
        last_full_ = clock_.Now();
        resync_requested_ = false;
      }
    } else {
      // The server may have applied the update and only its answer got lost: until an update
      // succeeds, every name it touched may hold records `applied_` does not show.
      uncertain_.insert(update->deletes.begin(), update->deletes.end());
      for (const RRsetReplacement& r : update->replaces) uncertain_.insert(r.name);
      ++report_.failures;
      ++report_.consecutive_failures;
      report_.last_error = result;
      not_before_ = clock_.Now() + DnsBackoff(options_, report_.consecutive_failures);
    }
    report = report_;
    report.in_sync = !DiffersLocked();
    if (!report.in_sync) report.next_attempt = not_before_.value_or(clock_.Now());
  }
  if (on_attempt_) on_attempt_(*update, result, report);
  return result;
}

DnsSyncReport DnsSync::Report() const {
  MutexLock lock(mu_);
  DnsSyncReport report = report_;
  report.in_sync = !DiffersLocked();
  if (!report.in_sync) report.next_attempt = not_before_.value_or(clock_.Now());
  return report;
}

std::optional<ZoneRecords> DnsSync::Applied() const {
  MutexLock lock(mu_);
  return applied_;
}

void DnsSync::Start() {
  MutexLock lock(mu_);
  if (worker_.joinable()) return;
  stopping_ = false;
  worker_ = std::thread([this] { RunWorker(); });
}

void DnsSync::Stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void DnsSync::RunWorker() {
  MutexLock lock(mu_);
  while (!stopping_) {
    std::optional<Clock::Duration> wait = TimeUntilDueLocked();
    if (!wait) {
      wake_.wait(lock.native());  // SetDesired, RequestResync or Stop
      continue;
    }
    if (*wait > Clock::Duration::zero()) {
      wake_.wait_for(lock.native(), *wait);  // then recompute: woken early, or due now
      continue;
    }
    lock.native().unlock();
    (void)Flush();  // the result reaches the callback and Report()
    lock.native().lock();
  }
}

}  // namespace regen::dns
