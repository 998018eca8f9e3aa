#include "agent/dns_watch.h"

#include <set>

#include "common/log.h"

namespace regen {

nlohmann::json DnsChangeEvent(const std::string& service, const dns::AddressChange& change,
                              int64_t unix_ms) {
  return nlohmann::json{{"event", "dns_change"},
                        {"service", service},
                        {"name", change.name},
                        {"old_addresses", change.old_addresses},
                        {"new_addresses", change.new_addresses},
                        {"unix_ms", unix_ms}};
}

DnsWatch::DnsWatch(dns::Resolver& resolver, const Clock& clock, std::string zone,
                   std::chrono::milliseconds interval, Deliver deliver)
    : clock_(clock),
      zone_(std::move(zone)),
      deliver_(std::move(deliver)),
      poller_(resolver, {interval}, [this](const dns::AddressChange& c) { OnChange(c); }) {}

DnsWatch::~DnsWatch() { Stop(); }

void DnsWatch::SetLocalInstances(std::map<std::string, std::vector<std::string>> by_service,
                                 std::map<std::string, std::string> dns_names) {
  std::set<std::string> names;
  {
    MutexLock lock(mu_);
    by_service_ = std::move(by_service);
    dns_names_ = std::move(dns_names);
    for (const auto& [service, instances] : by_service_) {
      if (!instances.empty()) names.insert(NameOfLocked(service));
    }
  }
  poller_.SetNames(std::move(names));
}

std::string DnsWatch::NameOf(const std::string& service) {
  MutexLock lock(mu_);
  return NameOfLocked(service);
}

std::string DnsWatch::NameOfLocked(const std::string& service) const {
  auto it = dns_names_.find(service);
  if (it == dns_names_.end() || it->second.empty()) return service + "." + zone_;
  return it->second.back() == '.' ? it->second : it->second + ".";
}

std::vector<dns::AddressChange> DnsWatch::PollOnce() { return poller_.PollOnce(); }

void DnsWatch::Start() { poller_.Start(); }
void DnsWatch::Stop() { poller_.Stop(); }

void DnsWatch::OnChange(const dns::AddressChange& change) {
  std::string service;
  std::vector<std::string> instances;
  {
    MutexLock lock(mu_);
    for (const auto& [s, local] : by_service_) {
      if (NameOfLocked(s) == change.name) {
        service = s;
        instances = local;
      }
    }
  }
  if (service.empty() || instances.empty()) return;  // no longer hosted here
  nlohmann::json event = DnsChangeEvent(service, change, clock_.WallMillis());
  spdlog::info("DNS: {} changed ({} -> {} addresses); telling {} local instances", change.name,
               change.old_addresses.size(), change.new_addresses.size(), instances.size());
  if (deliver_) deliver_(instances, event.dump());
}

}  // namespace regen
