// DnsSync keeps one zone's A records in step with what Regen wants, without ever making its
// caller wait for DNS. The healing loop calls SetDesired() (cheap: a copy under a mutex, never a
// send); a worker (Start(), or a test calling Flush()) sends one UPDATE with everything that is
// pending, retries a failed send with exponential backoff, and reports every attempt.
// Updates coalesce: the next send carries the difference between what the server last
// acknowledged and the latest desired records, so ten changes while DNS is down are one UPDATE
// when it is back. Names the server may hold without DnsSync knowing their records (published by
// an earlier run, or sent in an update whose answer was lost) are "uncertain": the next update
// deletes them when they are not desired and rewrites them when they are. All methods are
// thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "dns/dns_updater.h"

namespace regen::dns {

struct DnsSyncOptions {
  std::string zone;  // "lab.example."
  uint32_t ttl = 30;
  std::chrono::milliseconds initial_backoff{250};  // wait after the first failure
  std::chrono::milliseconds max_backoff{30000};    // the wait doubles up to this
  // The safety net for a server that lost records (restored from an old backup, journal wiped):
  // this long after the last full rewrite, the next update rewrites every desired name, even
  // when nothing changed. Also done first thing when `applied` is unknown. 0 = never.
  std::chrono::milliseconds resync_interval{std::chrono::minutes(5)};
};

// The state of the sync, for status pages, logs and tests.
struct DnsSyncReport {
  bool in_sync = true;  // the server acknowledged the latest desired records
  int64_t attempts = 0;
  int64_t failures = 0;
  int64_t consecutive_failures = 0;
  Status last_error;                             // OK when the last attempt succeeded (or none yet)
  std::optional<Clock::TimePoint> next_attempt;  // when pending: not before this
  std::optional<Clock::TimePoint> last_success;
  // Which SetDesired the server holds (1 = the first accepted one; 0 = none yet): after a
  // success, the server holds that call's records and nothing else of what DnsSync published.
  uint64_t acknowledged_version = 0;
};

// The backoff after `consecutive_failures` failures (>= 1): initial * 2^(n-1), at most max.
std::chrono::milliseconds DnsBackoff(const DnsSyncOptions& options, int64_t consecutive_failures);

class DnsSync {
 public:
  // Called after every attempt (on the thread that made it, without DnsSync's lock held) with
  // the update sent and its result: log it, count it, raise an event.
  using AttemptCallback = std::function<void(const ZoneUpdate& update, const Status& result,
                                             const DnsSyncReport& report)>;

  // `updater` and `clock` must outlive this object. `applied` is what the server is known to
  // hold; nullopt (unknown, e.g. after a restart) makes the first update rewrite every desired
  // name. Options are checked by the first SetDesired.
  DnsSync(DnsUpdater& updater, const Clock& clock, DnsSyncOptions options,
          std::optional<ZoneRecords> applied = std::nullopt, AttemptCallback on_attempt = nullptr);
  ~DnsSync();  // Stop()s the worker
  DnsSync(const DnsSync&) = delete;
  DnsSync& operator=(const DnsSync&) = delete;

  // Replaces the desired records of the zone and wakes the worker. Never blocks on DNS.
  // INVALID_ARGUMENT (and the previous desired records stay) for names outside the zone or bad
  // addresses.
  Status SetDesired(ZoneRecords desired);
  // The number of SetDesired calls accepted so far: the version of the current desired records
  // (compare DnsSyncReport::acknowledged_version).
  uint64_t desired_version() const;

  // Names the server may hold A records of from an earlier run (the controller's list of names it
  // published): the next update deletes those not desired and rewrites the desired ones. Call it
  // before the first SetDesired; names are uncertain until an update succeeds. INVALID_ARGUMENT
  // names the first bad name (outside the zone, not a DNS name); the good ones are still taken.
  Status AddUncertain(const std::set<std::string>& names);
  // The uncertain names (see above), for tests and status.
  std::set<std::string> Uncertain() const;

  // When something is pending and its backoff has passed, sends one UPDATE with all of it and
  // returns the result; otherwise returns OK at once. Blocks for the send (up to the updater's
  // timeout). Concurrent calls are serialised.
  Status Flush();

  // Makes the next update rewrite every desired name (e.g. after the operator says the DNS
  // server was restored) and wakes the worker.
  void RequestResync();

  DnsSyncReport Report() const;
  // What the server acknowledged last (nullopt when unknown).
  std::optional<ZoneRecords> Applied() const;

  // A worker thread that calls Flush() whenever something is due. It waits in real time: with a
  // fake clock, drive Flush() from the test instead.
  void Start();
  // Joins the worker; an update in flight is waited for (up to the updater's timeout).
  void Stop();

 private:
  // The time until the next Flush() has something to send; nullopt: nothing pending.
  std::optional<Clock::Duration> TimeUntilDueLocked() const REQUIRES(mu_);
  bool FullRewriteDueLocked() const REQUIRES(mu_);
  bool DiffersLocked() const REQUIRES(mu_);  // desired records not yet acknowledged
  void RunWorker();

  DnsUpdater& updater_;
  const Clock& clock_;
  const DnsSyncOptions options_;
  const AttemptCallback on_attempt_;

  Mutex flush_mu_ ACQUIRED_BEFORE(mu_);  // one Flush at a time; taken before mu_
  mutable Mutex mu_;
  std::condition_variable wake_;  // with mu_
  ZoneRecords desired_ GUARDED_BY(mu_);
  std::optional<ZoneRecords> applied_ GUARDED_BY(mu_);
  std::set<std::string> uncertain_ GUARDED_BY(mu_);
  uint64_t desired_version_ GUARDED_BY(mu_) = 0;
  bool desired_set_ GUARDED_BY(mu_) = false;
  DnsSyncReport report_ GUARDED_BY(mu_);  // in_sync computed on read
  std::optional<Clock::TimePoint> not_before_ GUARDED_BY(mu_);  // backoff end
  std::optional<Clock::TimePoint> last_full_ GUARDED_BY(mu_);   // last full rewrite
  bool resync_requested_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread worker_;  // started under mu_ by Start(); joined by Stop()
};

}  // namespace regen::dns
