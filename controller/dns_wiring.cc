#include "controller/dns_wiring.h"

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "controller/cluster_state.h"
#include "dns/dns_config.h"
#include "dns/ldns_updater.h"

namespace regen {

dns::ZoneRecords DesiredRecordsOf(const std::string& zone, const Controller& controller,
                                  std::map<std::string, std::string>* skipped) {
  std::map<std::string, dns::ServiceAddresses> by_service;
  for (const std::string& service : controller.ServiceNames()) {
    by_service[service] = {service, controller.DnsNameOf(service), {}};
  }
  for (const auto& [name, loc] : controller.Locations()) {
    if (loc.host.empty() || loc.ip.empty()) continue;
    auto it = by_service.find(loc.service);
    if (it == by_service.end()) continue;
    it->second.instances.push_back({name, loc.ip});
  }
  // One service at a time, so one bad service (dns_name outside the zone) costs only its own
  // records; then all together, which also catches two services claiming one name.
  std::vector<dns::ServiceAddresses> good;
  for (auto& [service, addresses] : by_service) {
    auto records = dns::DesiredZoneRecords(zone, {addresses});
    if (!records.ok()) {
      if (skipped != nullptr) (*skipped)[service] = records.status().message();
      continue;
    }
    good.push_back(std::move(addresses));
  }
  auto all = dns::DesiredZoneRecords(zone, good);
  if (all.ok()) return *all;
  // Two services claim one name: keep the first of each name (services are sorted).
  dns::ZoneRecords merged;
  for (const auto& s : good) {
    auto one = dns::DesiredZoneRecords(zone, {s});
    if (!one.ok()) continue;
    bool clash = false;
    for (const auto& [name, ips] : *one) clash = clash || merged.count(name);
    if (clash) {
      if (skipped != nullptr) (*skipped)[s.service] = all.status().message();
      continue;
    }
    merged.insert(one->begin(), one->end());
  }
  return merged;
}

DnsWiring::DnsWiring(dns::DnsUpdater& updater, const Clock& clock, dns::DnsSyncOptions options,
                     ReportEvent report)
    : zone_(options.zone),
      server_(updater.ServerName()),
      clock_(clock),
      report_(std::move(report)),
      sync_(updater, clock, options, std::nullopt,
            [this](const dns::ZoneUpdate& update, const Status& result,
                   const dns::DnsSyncReport& report) { OnAttempt(update, result, report); }) {}

DnsWiring::~DnsWiring() { Stop(); }

void DnsWiring::Start() { sync_.Start(); }
void DnsWiring::Stop() { sync_.Stop(); }

void DnsWiring::OnChanges(const Controller& controller, const ControllerChanges& changes) {
  if (changes.topology_changed.empty()) return;
  Resync(controller);
}

void DnsWiring::Resync(const Controller& controller) {
  std::map<std::string, std::string> skipped;
  dns::ZoneRecords records = DesiredRecordsOf(zone_, controller, &skipped);
  std::string skipped_text;
  for (const auto& [service, why] : skipped) skipped_text += service + ": " + why + "; ";
  if (skipped_text != last_skipped_) {
    last_skipped_ = skipped_text;
    if (!skipped_text.empty()) {
      spdlog::error("DNS: services left out of zone {}: {}", zone_, skipped_text);
    }
  }
  if (store_ != nullptr) {
    // Names from before the restart that nothing wants any more: the first update deletes them.
    for (const std::string& name : from_before_) {
      if (records.count(name)) continue;
      spdlog::info(
          "op=dns-restart kind=dns_stale target={}: published in zone {} before the restart, no "
          "instance or service has it now; deleting its A records (retried until {} answers)",
          name, zone_, server_);
    }
    from_before_.clear();
    // Before the sync may send them; names the store refused wait for a later update.
    if (!StorePublished(records)) {
      for (auto it = records.begin(); it != records.end();) {
        it = published_.count(it->first) ? std::next(it) : records.erase(it);
      }
    }
  }
  std::set<std::string> names;
  for (const auto& [name, ips] : records) names.insert(name);
  Status s = sync_.SetDesired(std::move(records));
  if (!s.ok()) {
    spdlog::error("DNS: records of zone {} refused: {}", zone_, s.message());
    return;
  }
  uint64_t version = sync_.desired_version();
  for (const std::string& name : names) wanted_at_[name] = version;
}

Status DnsWiring::TrackPublished(Store& store, PostTask post) {
  store_ = &store;
  post_ = std::move(post);
  Result<std::set<std::string>> stored = store.DnsNames(zone_);
  if (!stored.ok()) {
    return stored.status().WithContext("DNS names published in zone " + zone_ +
                                       " before the restart are unknown; records of instances "
                                       "removed meanwhile may stay");
  }
  published_ = *stored;
  from_before_ = *stored;
  Status s = sync_.AddUncertain(*stored);
  if (!s.ok()) return s.WithContext("stored DNS names of zone " + zone_);
  return Status::Ok();
}

bool DnsWiring::StorePublished(const dns::ZoneRecords& records) {
  std::vector<std::string> added;
  for (const auto& [name, ips] : records) {
    if (!published_.count(name)) added.push_back(name);
  }
  if (added.empty()) return true;
  Status s = store_->Transaction([&](StoreTxn& txn) -> Status {
    for (const std::string& name : added) RETURN_IF_ERROR(txn.PutDnsName(zone_, name));
    return Status::Ok();
  });
  if (!s.ok()) {
    StoreRefused(s.WithContext("DNS names published in zone " + zone_));
    return false;
  }
  published_.insert(added.begin(), added.end());
  return true;
}

void DnsWiring::StoreRefused(const Status& status) const {
  if (store_->FailedWritesAreFatal()) DieOnStoreWriteFailure(status);
  spdlog::warn(
      "state store: {}; tried again with the next DNS update (names not stored are "
      "not sent before they are)",
      status.message());
}

void DnsWiring::ForgetDeleted(uint64_t version) {
  if (store_ == nullptr || version == 0) return;
  std::vector<std::string> gone;
  for (const std::string& name : published_) {
    auto it = wanted_at_.find(name);
    if (it == wanted_at_.end() || it->second < version) gone.push_back(name);
  }
  if (gone.empty()) return;
  Status s = store_->Transaction([&](StoreTxn& txn) -> Status {
    for (const std::string& name : gone) RETURN_IF_ERROR(txn.DeleteDnsName(zone_, name));
    return Status::Ok();
  });
  if (!s.ok()) {
    StoreRefused(s.WithContext("DNS names deleted from zone " + zone_));
    return;  // kept as published: deleted from the store after a later acknowledgement
  }
  for (const std::string& name : gone) {
    published_.erase(name);
    wanted_at_.erase(name);
  }
}

void DnsWiring::OnAttempt(const dns::ZoneUpdate& update, const Status& result,
                          const dns::DnsSyncReport& report) {
  std::optional<EventRecord> event;
  {
    MutexLock lock(mu_);
    int64_t now_ms = clock_.WallMillis();
    if (!result.ok()) {
      spdlog::warn("DNS update of zone {} at {} failed (attempt {}, retrying with backoff): {}",
                   zone_, server_, report.consecutive_failures, result.message());
      if (!failing_) {
        failing_ = true;
        failing_since_ms_ = now_ms;
        EventRecord e;
        e.unix_ms = now_ms;
        e.kind = EventKind::kDnsUpdateFailed;
        e.host = server_;
        e.message = "DNS update of zone " + zone_ + " at " + server_ +
                    " failed (retrying with backoff; healing goes on): " + result.message();
        e.json = nlohmann::json{{"kind", EventKindName(e.kind)},
                                {"zone", zone_},
                                {"server", server_},
                                {"update", update.ToString()},
                                {"error", result.message()},
                                {"message", e.message}}
                     .dump();
        event = std::move(e);
      }
    } else {
      spdlog::debug("DNS update of zone {} at {}: {}", zone_, server_, update.ToString());
      for (const std::string& name : update.deletes) {
        spdlog::info(
            "op=dns-{} kind=dns_delete target={}: done (A records deleted from zone {} at {})",
            report.acknowledged_version, name, zone_, server_);
      }
      if (failing_) {
        failing_ = false;
        EventRecord e;
        e.unix_ms = now_ms;
        e.kind = EventKind::kDnsUpdateRecovered;
        e.host = server_;
        int64_t down_ms = now_ms - failing_since_ms_;
        e.message = "DNS updates of zone " + zone_ + " at " + server_ + " work again after " +
                    std::to_string(down_ms) + " ms (" + std::to_string(report.failures) +
                    " failed attempts so far); the zone is up to date";
        e.json = nlohmann::json{{"kind", EventKindName(e.kind)},
                                {"zone", zone_},
                                {"server", server_},
                                {"failed_for_ms", down_ms},
                                {"message", e.message}}
                     .dump();
        event = std::move(e);
      }
    }
  }
  if (event && report_) report_(std::move(*event));
  if (result.ok() && post_) {
    uint64_t version = report.acknowledged_version;
    post_([this, version] { ForgetDeleted(version); });
  }
}

Result<std::optional<DnsWiringParts>> NewDnsWiring(const DnsConfig& config, const Clock& clock,
                                                   DnsWiring::ReportEvent report) {
  ASSIGN_OR_RETURN(std::optional<dns::DnsSetup> setup, dns::DnsSetupFromConfig(config));
  if (!setup) return std::optional<DnsWiringParts>();
  ASSIGN_OR_RETURN(std::unique_ptr<dns::DnsUpdater> updater, dns::NewLdnsUpdater(setup->updater));
  DnsWiringParts parts;
  parts.wiring = std::make_unique<DnsWiring>(*updater, clock, setup->sync, std::move(report));
  parts.updater = std::move(updater);
  return std::optional<DnsWiringParts>(std::move(parts));
}

}  // namespace regen
