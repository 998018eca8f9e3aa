#include "agent/agent_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <vector>

#include "common/metrics_exposer.h"

namespace regen {

namespace {
const std::vector<std::string> kDomainStates = {"running", "starting", "paused",
                                                "shutoff", "crashed",  "other"};
}  // namespace

struct AgentMetrics::Families {
  explicit Families(prometheus::Registry& r)
      : domains(prometheus::BuildGauge()
                    .Name("regen_agent_domains")
                    .Help("Domains on this host by state")
                    .Register(r)),
        failures(prometheus::BuildCounter()
                     .Name("regen_agent_failures_detected_total")
                     .Help("Failures this agent detected, by how")
                     .Register(r)),
        recreate_seconds(prometheus::BuildHistogram()
                             .Name("regen_agent_recreate_seconds")
                             .Help("From a failure's detection to the domain re-created here")
                             .Register(r)),
        controller_connected(prometheus::BuildGauge()
                                 .Name("regen_agent_controller_connected")
                                 .Help("1 while the stream to the controller is up")
                                 .Register(r)
                                 .Add({})),
        libvirt_connected(prometheus::BuildGauge()
                              .Name("regen_agent_libvirt_connected")
                              .Help("1 while libvirt answers")
                              .Register(r)
                              .Add({})),
        fenced(prometheus::BuildGauge()
                   .Name("regen_agent_fenced")
                   .Help("1 while this host is fenced (no lease from the controller)")
                   .Register(r)
                   .Add({})),
        hold_seconds(prometheus::BuildGauge()
                         .Name("regen_agent_hold_remaining_seconds")
                         .Help("What is left of a maintenance hold from the controller (0: none)")
                         .Register(r)
                         .Add({})),
        fences_unreported(prometheus::BuildGauge()
                              .Name("regen_agent_fences_unreported")
                              .Help("Instances destroyed by a fence that no Hello has reported to "
                                    "the controller yet")
                              .Register(r)
                              .Add({})),
        backstop_tripped(prometheus::BuildGauge()
                             .Name("regen_agent_fence_backstop_tripped")
                             .Help("1 once the fencing backstop gave up on this host (lease ran "
                                   "out, domains not confirmed gone): systemd watchdog triggered")
                             .Register(r)
                             .Add({})),
        topology(prometheus::BuildGauge()
                     .Name("regen_agent_topology_revision_applied")
                     .Help("The topology revision the network worker last applied (0: none)")
                     .Register(r)
                     .Add({})),
        reconciles(prometheus::BuildCounter()
                       .Name("regen_agent_reconciles_total")
                       .Help("Reconcile passes")
                       .Register(r)
                       .Add({})),
        recreate(recreate_seconds.Add({}, prometheus::Histogram::BucketBoundaries{
                                              0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60})) {}

  prometheus::Family<prometheus::Gauge>& domains;
  prometheus::Family<prometheus::Counter>& failures;
  prometheus::Family<prometheus::Histogram>& recreate_seconds;
  prometheus::Gauge& controller_connected;
  prometheus::Gauge& libvirt_connected;
  prometheus::Gauge& fenced;
  prometheus::Gauge& hold_seconds;
  prometheus::Gauge& fences_unreported;
  prometheus::Gauge& backstop_tripped;
  prometheus::Gauge& topology;
  prometheus::Counter& reconciles;
  prometheus::Histogram& recreate;
};

Result<std::unique_ptr<AgentMetrics>> AgentMetrics::Start(const std::string& address) {
  std::unique_ptr<AgentMetrics> m(new AgentMetrics());
  m->registry_ = std::make_shared<prometheus::Registry>();
  m->f_ = std::make_unique<Families>(*m->registry_);
  for (const auto& s : kDomainStates) m->f_->domains.Add({{"state", s}});
  ASSIGN_OR_RETURN(MetricsEndpoint endpoint, ServeMetrics(address, m->registry_, 1));
  m->exposer_ = std::move(endpoint.exposer);
  m->port_ = endpoint.port;
  return m;
}

AgentMetrics::~AgentMetrics() = default;

void AgentMetrics::Refresh(const nlohmann::json& status, const Links& links) {
  std::map<std::string, int> by_state;
  for (const auto& s : kDomainStates) by_state[s] = 0;
  for (const auto& d : status.value("domains", nlohmann::json::array())) {
    std::string state = d.value("state", "other");
    ++by_state[by_state.count(state) ? state : "other"];
  }
  for (const auto& [state, n] : by_state) f_->domains.Add({{"state", state}}).Set(n);

  for (const auto& f : status.value("failures", nlohmann::json::array())) {
    const int64_t detected = f.value("detected_unix_ms", int64_t{0});
    const std::string key = f.value("instance", "") + "/" +
                            std::to_string(f.value("generation", int64_t{0})) + "/" +
                            std::to_string(detected);
    if (failures_seen_.insert(key).second) {
      f_->failures.Add({{"by", f.value("detected_by", "unknown")}}).Increment();
    }
    const int64_t recreated = f.value("recreated_unix_ms", int64_t{0});
    if (recreated > 0 && recreated >= detected && recreates_seen_.insert(key).second) {
      f_->recreate.Observe(static_cast<double>(recreated - detected) / 1000.0);
    }
  }
  f_->controller_connected.Set(links.controller_mode && links.controller_connected ? 1 : 0);
  f_->libvirt_connected.Set(status.value("connected", false) ? 1 : 0);
  f_->fenced.Set(status.value("fenced", false) ? 1 : 0);
  f_->hold_seconds.Set(static_cast<double>(status.value("hold_remaining_ms", int64_t{0})) / 1000);
  f_->fences_unreported.Set(
      static_cast<double>(status.value("fenced_unreported", nlohmann::json::array()).size()));
  f_->backstop_tripped.Set(links.backstop_tripped ? 1 : 0);
  f_->topology.Set(static_cast<double>(links.topology_revision_applied));
  const int64_t reconciles = status.value("reconciles", int64_t{0});
  if (reconciles_seen_ >= 0 && reconciles > reconciles_seen_) {
    f_->reconciles.Increment(static_cast<double>(reconciles - reconciles_seen_));
  }
  reconciles_seen_ = reconciles;
}

}  // namespace regen
