// Keeps the DNS zone in step with where the controller's instances are: a change listener of the
// Controller (controller.h) turns every step that moved an instance or changed its IP into the
// zone's desired records (an A record `<instance>.<zone>` per placed instance with an IP, and the
// round-robin set `<service>.<zone>` or network.dns_name), handed to DnsSync (dns/dns_sync.h),
// which sends one UPDATE per change on its own worker, retries with backoff and never makes the
// healing loop wait. Failures and recoveries are reported through a callback, for the
// controller's events dns_update_failed / dns_update_recovered.
// With TrackPublished, the names it publishes are kept in the controller's Store, so that after a
// restart the records of instances and services that went away meanwhile (removed while the
// controller was down, or before DNS caught up) are deleted; names it never published (the
// operator's records) are never touched.
// OnChanges/Resync/TrackPublished run on the controller's main loop thread; the report callback
// runs on the DnsSync worker (or the thread calling Flush) and must not touch the Controller or
// the Store directly.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "config/controller_config.h"
#include "controller/controller.h"
#include "controller/store.h"
#include "dns/dns_sync.h"
#include "dns/dns_updater.h"

namespace regen {

// The zone's desired records for the controller's current instances. Instances that are not
// placed or have no IP have no record; a service with no such instance has no record either.
// Services whose records are invalid (dns_name outside the zone, ...) are left out and named in
// `skipped` (service -> why) instead of failing the whole zone.
dns::ZoneRecords DesiredRecordsOf(const std::string& zone, const Controller& controller,
                                  std::map<std::string, std::string>* skipped = nullptr);

class DnsWiring {
 public:
  // An event for the controller's log: kind is dns_update_failed or dns_update_recovered.
  using ReportEvent = std::function<void(EventRecord event)>;
  // Runs a task on the controller's main loop thread (ControllerServer::Post).
  using PostTask = std::function<void(std::function<void()> task)>;

  // `updater` and `clock` must outlive this object. The sync starts with the server's records
  // unknown, so the first update rewrites every desired name.
  DnsWiring(dns::DnsUpdater& updater, const Clock& clock, dns::DnsSyncOptions options,
            ReportEvent report);
  ~DnsWiring();  // stops the worker
  DnsWiring(const DnsWiring&) = delete;
  DnsWiring& operator=(const DnsWiring&) = delete;

  // The change listener (Controller::AddChangeListener): recomputes the records when a topology
  // changed. Never blocks on DNS.
  void OnChanges(const Controller& controller, const ControllerChanges& changes);
  // Recomputes the records from the controller's whole state (after a load).
  void Resync(const Controller& controller);

  // Keeps the names of the zone this wiring publishes in `store` (Store::PutDnsName), which must
  // outlive this object. The names stored by an earlier run become the sync's uncertain names:
  // the first update deletes those the controller no longer wants (logged, one line per name) and
  // rewrites the others, retried with backoff like any update. A name is stored before an update
  // that writes it can be sent (an update whose answer is lost cannot leave an unknown record)
  // and dropped once the server acknowledged an update without it that no newer desired state
  // needs. The worker's acknowledgements reach the store through `post`. Call once, before the
  // first Resync and Start. An error (the store could not be read) is for the log: names of this
  // run are still stored, only those of the earlier run are unknown.
  Status TrackPublished(Store& store, PostTask post);
  // The names stored for the zone now (main loop thread), for tests.
  const std::set<std::string>& published() const { return published_; }

  // The worker that sends updates (real time). Tests with a fake clock call Flush() instead.
  void Start();
  void Stop();
  Status Flush() { return sync_.Flush(); }
  dns::DnsSyncReport Report() const { return sync_.Report(); }
  dns::DnsSync& sync() { return sync_; }
  const std::string& zone() const { return zone_; }

 private:
  void OnAttempt(const dns::ZoneUpdate& update, const Status& result,
                 const dns::DnsSyncReport& report);
  // Main loop: stores the names of `records` that are not stored yet; false when the store
  // refused (those names are then not in published_ and must not be sent).
  bool StorePublished(const dns::ZoneRecords& records);
  // Main loop: the server acknowledged desired version `version`; drops the stored names no
  // desired version from `version` on contains.
  void ForgetDeleted(uint64_t version);
  // A refused write of the names: fatal for a store whose refusals are (etcd), else logged; the
  // names are written with a later update.
  void StoreRefused(const Status& status) const;

  const std::string zone_;
  const std::string server_;
  const Clock& clock_;
  ReportEvent report_;
  Mutex mu_;
  bool failing_ GUARDED_BY(mu_) = false;  // the last attempt failed
  int64_t failing_since_ms_ GUARDED_BY(mu_) = 0;
  std::string last_skipped_;  // main loop only: logged once per change
  Store* store_ = nullptr;    // main loop only; null: names are not kept
  PostTask post_;
  std::set<std::string> published_;  // main loop only: the names stored for the zone
  // Main loop only: name -> the last desired version that contained it.
  std::map<std::string, uint64_t> wanted_at_;
  std::set<std::string> from_before_;  // main loop only: stored names the first Resync will judge
  dns::DnsSync sync_;                  // last: its worker calls OnAttempt
};

// The production wiring from controller.yaml's `dns:` block: nullptr when DNS is off (no
// dns.server). Errors name the field and value (server, zone, ttl, TSIG key file).
struct DnsWiringParts {
  std::unique_ptr<dns::DnsUpdater> updater;
  std::unique_ptr<DnsWiring> wiring;
};
Result<std::optional<DnsWiringParts>> NewDnsWiring(const DnsConfig& config, const Clock& clock,
                                                   DnsWiring::ReportEvent report);

}  // namespace regen
