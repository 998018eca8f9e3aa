// Keeps the DNS zone in step with where the controller's instances are: a change listener of the
// Controller (controller.h) turns every step that moved an instance or changed its IP into the
// zone's desired records (an A record `<instance>.<zone>` per placed instance with an IP, and the
// round-robin set `<service>.<zone>` or network.dns_name), handed to DnsSync (dns/dns_sync.h),
// which sends one UPDATE per change on its own worker, retries with backoff and never makes the
// healing loop wait. Failures and recoveries are reported through a callback, for the
// controller's events dns_update_failed / dns_update_recovered.
// OnChanges/Resync run on the controller's main loop thread; the report callback runs on the
// DnsSync worker (or the thread calling Flush) and must not touch the Controller directly.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/status.h"
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

  const std::string zone_;
  const std::string server_;
  const Clock& clock_;
  ReportEvent report_;
  std::mutex mu_;
  bool failing_ = false;          // guarded by mu_: the last attempt failed
  int64_t failing_since_ms_ = 0;  // guarded by mu_
  std::string last_skipped_;      // main loop only: logged once per change
  dns::DnsSync sync_;             // last: its worker calls OnAttempt
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
