// The agent's DNS watch (agent.yaml `dns:`): resolves the name of every service with an instance on
// this host (its network.dns_name, else `<service>.<zone>`) every poll interval (dns/dns_poller.h
// over the c-ares resolver) and, when a name's addresses change, sends a dns_change event to the
// local instances of that service (through the delivery callback, e.g. EventDelivery). The first
// answer for a name is the baseline (no event); failed lookups change nothing. Thread-safe;
// callbacks run on the polling thread.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "dns/dns_poller.h"

namespace regen {

// {"event":"dns_change","service","name","old_addresses":[...],"new_addresses":[...],"unix_ms"}
nlohmann::json DnsChangeEvent(const std::string& service, const dns::AddressChange& change,
                              int64_t unix_ms);

class DnsWatch {
 public:
  // Writes one event (one JSON line) to the named instances.
  using Deliver =
      std::function<void(const std::vector<std::string>& instances, const std::string& json)>;

  // `resolver` and `clock` must outlive the watch. `zone` ends with '.'.
  DnsWatch(dns::Resolver& resolver, const Clock& clock, std::string zone,
           std::chrono::milliseconds interval, Deliver deliver);
  ~DnsWatch();

  // The instances on this host by service (from the controller's desired set); the names to
  // watch follow from the next poll on.
  // `dns_names`: service -> its network.dns_name ("web.lab.example"; absent or "" = the default).
  void SetLocalInstances(std::map<std::string, std::vector<std::string>> by_service,
                         std::map<std::string, std::string> dns_names = {});
  // Resolves every watched name now and delivers one event per change; returns the changes.
  std::vector<dns::AddressChange> PollOnce();
  // The name watched for `service`: its dns_name with a final '.', else "<service>.<zone>".
  std::string NameOf(const std::string& service);

  // The addresses last seen per watched name (for the agent's status).
  dns::KnownAddresses Known() const { return poller_.Known(); }

  void Start();  // polls now and then every interval (real time)
  void Stop();

 private:
  void OnChange(const dns::AddressChange& change);
  std::string NameOfLocked(const std::string& service) const REQUIRES(mu_);

  const Clock& clock_;
  const std::string zone_;
  const Deliver deliver_;
  mutable Mutex mu_;
  std::map<std::string, std::vector<std::string>> by_service_ GUARDED_BY(mu_);
  std::map<std::string, std::string> dns_names_ GUARDED_BY(mu_);
  dns::DnsPoller poller_;                                       // last: its thread calls OnChange
};

}  // namespace regen
