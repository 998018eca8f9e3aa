// The agent's status (control socket, systemd STATUS=, metrics) and its failure and change
// records: read on the main loop through Call.
#include "agent/agent.h"
#include "common/text.h"

namespace regen {

nlohmann::json Agent::LibvirtDomainsJson() {
  return Call<nlohmann::json>([this] {
    auto listed = hypervisor_.ListDomains();
    if (!listed.ok()) return nlohmann::json{{"error", listed.status().message()}};
    nlohmann::json out = nlohmann::json::array();
    for (const auto& d : *listed) {
      out.push_back({{"name", d.name}, {"id", d.id}, {"state", DomainStateName(d.state)}});
    }
    return out;
  });
}

nlohmann::json Agent::StatusJson() {
  return Call<nlohmann::json>([this] {
    nlohmann::json j;
    j["host"] = config_.host_name;
    j["libvirt_uri"] = config_.libvirt_uri;
    j["connected"] = connected_;
    const DomainTypeChoice type = domain_type();
    j["domain_type"] = type.type;
    j["domain_type_reason"] = type.reason;
    j["mode"] = config_.controller_address.empty() ? "standalone" : "controller";
    j["desired_known"] = desired_.has_value();
    j["desired_count"] = desired_ ? desired_->size() : 0;
    if (!desired_error_.empty()) j["desired_error"] = SanitizeText(desired_error_);
    if (!last_connect_error_.empty()) j["connect_error"] = SanitizeText(last_connect_error_);
    j["reconciles"] = reconciles_;
    if (controller_mode()) AddLeaseStatus(j);
    j["last_reconcile_unix_ms"] = last_reconcile_unix_ms_;
    nlohmann::json domains = nlohmann::json::array();
    for (const auto& d : last_domains_) {
      nlohmann::json dj{{"name", d.name},
                        {"id", d.id},  // libvirt's: a new one at every start
                        {"state", DomainStateName(d.state)},
                        {"reason", SanitizeText(d.reason)},
                        {"managed", d.metadata.managed}};
      if (d.metadata.managed) {
        dj["service"] = d.metadata.service;
        dj["update_domain"] = d.metadata.update_domain;
        dj["version"] = d.metadata.version;
        dj["generation"] = d.metadata.generation;
      }
      domains.push_back(dj);
    }
    j["domains"] = domains;
    nlohmann::json health = nlohmann::json::array();
    for (const auto& [name, h] : health_.Report()) {
      health.push_back({{"instance", name},
                        {"generation", h.generation},
                        {"state", HealthStateName(h.state)},
                        {"passed", h.passed_once},
                        {"consecutive_failures", h.consecutive_failures},
                        {"failed", h.failed},
                        {"last_error", SanitizeText(h.last_error)}});
    }
    j["health"] = health;
    nlohmann::json failures = nlohmann::json::array();
    for (const auto& f : failures_) {
      failures.push_back({{"instance", f.instance},
                          {"generation", f.generation},
                          {"state", f.state},
                          {"reason", SanitizeText(f.reason)},
                          {"detected_by", f.detected_by},
                          {"detected_unix_ms", f.detected_unix_ms},
                          {"recreated_unix_ms", f.recreated_unix_ms}});
    }
    j["failures"] = failures;
    nlohmann::json changes = nlohmann::json::array();
    for (const auto& c : changes_) {
      changes.push_back({{"unix_ms", c.unix_ms},
                         {"instance", c.instance},
                         {"what", c.what},
                         {"detail", SanitizeText(c.detail)}});
    }
    j["changes"] = changes;
    return j;
  });
}

void Agent::AddLeaseStatus(nlohmann::json& j) {
  j["controller"] = config_.controller_address;
  // What renews the lease: this host's own etcd lease (HA mode) or the controller's acks.
  j["lease_source"] = config_.etcd ? "etcd" : "controller";
  j["fenced"] = fenced_;
  LeaseSnapshot lease = lease_.Snapshot();
  // Once the lease ran out: has a listing since then shown every managed domain gone? (What the
  // fencing backstop waits for.)
  j["fence_confirmed"] = BackstopDecide(lease, clock_.Now(), Clock::Duration::max()).confirmed;
  j["lease_remaining_ms"] =
      std::chrono::duration_cast<std::chrono::milliseconds>(lease.lease_until - clock_.Now())
          .count();
  // A maintenance hold (regenctl maintenance start): domains are kept until it ends.
  j["hold_remaining_ms"] = lease_.HoldRemaining().count();
  if (lease.hold_until) {
    j["hold_until_unix_ms"] =
        clock_.WallMillis() +
        std::chrono::duration_cast<std::chrono::milliseconds>(*lease.hold_until - clock_.Now())
            .count();
  }
  // Instances destroyed by a fence that no Hello has reported to the controller yet.
  nlohmann::json unreported = nlohmann::json::array();
  for (const auto& r : fence_log_.Take().records) {
    unreported.push_back({{"instance", r.instance},
                          {"generation", r.generation},
                          {"fenced_unix_ms", r.fenced_unix_ms},
                          {"reason", SanitizeText(r.reason)}});
  }
  j["fenced_unreported"] = unreported;
}

std::vector<FailureRecord> Agent::Failures() {
  return Call<std::vector<FailureRecord>>([this] { return failures_; });
}

std::vector<ChangeRecord> Agent::Changes() {
  return Call<std::vector<ChangeRecord>>(
      [this] { return std::vector<ChangeRecord>(changes_.begin(), changes_.end()); });
}

int64_t Agent::reconciles() {
  return Call<int64_t>([this] { return reconciles_; });
}

}  // namespace regen
