#include "controller/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "common/metrics_exposer.h"
#include "controller/controller.h"
#include "controller/rpc_stats.h"
#include "controller/store.h"

namespace regen {

namespace {
const std::vector<std::string> kHostStates = {"up",       "suspect", "down",
                                              "draining", "joining", "cordoned"};
const std::vector<std::string> kUpgradeStates = {
    "running",   "preempted",    "paused",      "waiting_for_operator",
    "completed", "rolling_back", "rolled_back", "failed"};
}  // namespace

struct ControllerMetrics::Families {
  explicit Families(prometheus::Registry& r)
      : hosts(prometheus::BuildGauge().Name("regen_hosts").Help("Hosts by state").Register(r)),
        instances(prometheus::BuildGauge()
                      .Name("regen_instances")
                      .Help("Instances by service and state")
                      .Register(r)),
        upgrade_state(prometheus::BuildGauge()
                          .Name("regen_upgrade_state")
                          .Help("1 for the state of each service's last upgrade")
                          .Register(r)),
        upgrade_ud(prometheus::BuildGauge()
                       .Name("regen_upgrade_current_ud")
                       .Help("The update domain being upgraded, or the next one")
                       .Register(r)),
        healings(prometheus::BuildCounter()
                     .Name("regen_healings_total")
                     .Help("Healings by outcome: started (a failure), completed (running again), "
                           "failed (left pending: nothing fits)")
                     .Register(r)),
        heal_seconds(prometheus::BuildHistogram()
                         .Name("regen_heal_seconds")
                         .Help("Time from an instance's failure to it running again")
                         .Register(r)),
        events(prometheus::BuildCounter()
                   .Name("regen_events_total")
                   .Help("Controller events by kind")
                   .Register(r)),
        preemptions(prometheus::BuildCounter()
                        .Name("regen_upgrade_preemptions_total")
                        .Help("Upgrades pre-empted by healing")
                        .Register(r)),
        detection_seconds(
            prometheus::BuildHistogram()
                .Name("regen_detection_seconds")
                .Help("Failure detection: from the first evidence (the agent's detection, or a "
                      "down host's last heartbeat) to the controller's healing decision, by how "
                      "it was detected (event, poll, health_check, host_down)")
                .Register(r)),
        dns_failures(prometheus::BuildCounter()
                         .Name("regen_dns_update_failures_total")
                         .Help("DNS updates that failed (each is retried)")
                         .Register(r)),
        topology_applied(prometheus::BuildGauge()
                             .Name("regen_topology_revision_applied")
                             .Help("The topology revision each host's agent last applied")
                             .Register(r)),
        rpc_errors(prometheus::BuildCounter()
                       .Name("regen_rpc_errors_total")
                       .Help("RPCs answered with an error, by method and gRPC code")
                       .Register(r)),
        started(healings.Add({{"outcome", "started"}})),
        completed(healings.Add({{"outcome", "completed"}})),
        failed(healings.Add({{"outcome", "failed"}})),
        heal(heal_seconds.Add({}, prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.25, 0.5, 1,
                                                                          2, 5, 10, 30, 60, 300})),
        preempted(preemptions.Add({})),
        dns_failed(dns_failures.Add({})) {}

  prometheus::Family<prometheus::Gauge>& hosts;
  prometheus::Family<prometheus::Gauge>& instances;
  prometheus::Family<prometheus::Gauge>& upgrade_state;
  prometheus::Family<prometheus::Gauge>& upgrade_ud;
  prometheus::Family<prometheus::Counter>& healings;
  prometheus::Family<prometheus::Histogram>& heal_seconds;
  prometheus::Family<prometheus::Counter>& events;
  prometheus::Family<prometheus::Counter>& preemptions;
  prometheus::Family<prometheus::Histogram>& detection_seconds;
  prometheus::Family<prometheus::Counter>& dns_failures;
  prometheus::Family<prometheus::Gauge>& topology_applied;
  prometheus::Family<prometheus::Counter>& rpc_errors;
  prometheus::Counter& started;
  prometheus::Counter& completed;
  prometheus::Counter& failed;
  prometheus::Histogram& heal;
  prometheus::Counter& preempted;
  prometheus::Counter& dns_failed;
  std::map<std::string, prometheus::Histogram*> detection;  // by
  std::map<RpcErrorCounts::Key, int64_t> rpc_errors_seen;
  // Every instance gauge set so far, zeroed before each refresh (a state nobody is in reads 0).
  std::map<std::pair<std::string, std::string>, prometheus::Gauge*> instance_gauges;
};

Result<std::unique_ptr<ControllerMetrics>> ControllerMetrics::Start(const std::string& address,
                                                                    int64_t started_unix_ms) {
  std::unique_ptr<ControllerMetrics> m(new ControllerMetrics());
  m->started_unix_ms_ = started_unix_ms;
  m->registry_ = std::make_shared<prometheus::Registry>();
  m->f_ = std::make_unique<Families>(*m->registry_);
  for (const auto& s : kHostStates) m->f_->hosts.Add({{"state", s}});
  ASSIGN_OR_RETURN(MetricsEndpoint endpoint, ServeMetrics(address, m->registry_, 2));
  m->exposer_ = std::move(endpoint.exposer);
  m->port_ = endpoint.port;
  return m;
}

ControllerMetrics::~ControllerMetrics() = default;

void ControllerMetrics::Refresh(Controller& controller) {
  // Hosts by state.
  std::map<std::string, int> hosts;
  for (const auto& s : kHostStates) hosts[s] = 0;
  const v1::ListHostsResponse host_list = controller.ListHosts();
  for (const auto& h : host_list.hosts()) ++hosts[h.state()];
  for (const auto& [state, n] : hosts) f_->hosts.Add({{"state", state}}).Set(n);
  for (const auto& h : host_list.hosts()) {
    f_->topology_applied.Add({{"host", h.name()}})
        .Set(static_cast<double>(h.applied_topology_revision()));
  }

  // RPC errors counted by the server's interceptor since the last refresh.
  for (const auto& [key, n] : GlobalRpcErrors().Snapshot()) {
    int64_t& seen = f_->rpc_errors_seen[key];
    if (n > seen) {
      f_->rpc_errors.Add({{"method", key.first}, {"code", key.second}})
          .Increment(static_cast<double>(n - seen));
      seen = n;
    }
  }

  // Instances by service and state.
  for (auto& [key, gauge] : f_->instance_gauges) gauge->Set(0);
  for (const auto& [name, inst] : controller.instances()) {
    auto key = std::make_pair(inst.service, std::string(InstanceStateName(inst.state)));
    auto it = f_->instance_gauges.find(key);
    if (it == f_->instance_gauges.end()) {
      it = f_->instance_gauges
               .emplace(key, &f_->instances.Add({{"service", key.first}, {"state", key.second}}))
               .first;
    }
    it->second->Increment();
  }

  // Upgrades.
  const v1::ListServicesResponse services = controller.ListServices();
  for (const auto& svc : services.services()) {
    auto u = controller.UpgradeGet(svc.name());
    if (!u.ok() || u->service().empty()) continue;
    for (const auto& s : kUpgradeStates) {
      f_->upgrade_state.Add({{"service", svc.name()}, {"state", s}}).Set(u->state() == s ? 1 : 0);
    }
    f_->upgrade_ud.Add({{"service", svc.name()}}).Set(static_cast<double>(u->current_ud()));
  }

  // Events since the last refresh (the first refresh reads the history once and counts only what
  // happened since this process started).
  for (int batch = 0; batch < 10; ++batch) {
    auto events = controller.EventsAfter(last_sequence_, 5000);
    if (!events.ok()) {
      spdlog::warn("metrics: reading events after {}: {}", last_sequence_,
                   events.status().message());
      return;
    }
    for (const auto& e : *events) {
      last_sequence_ = e.sequence;
      if (e.unix_ms >= started_unix_ms_) OnEvent(e);
    }
    if (events->size() < 5000) return;
  }
}

void ControllerMetrics::OnEvent(const EventRecord& e) {
  f_->events.Add({{"kind", EventKindName(e.kind)}}).Increment();
  if (e.kind == EventKind::kFailure && !e.instance.empty()) {
    if (failed_at_.emplace(e.instance, e.unix_ms).second) f_->started.Increment();
    auto j = nlohmann::json::parse(e.json, nullptr, false);
    if (!j.is_discarded() && j.contains("detected_by") && j.contains("detection_ms")) {
      const std::string by = j.value("detected_by", "");
      auto it = f_->detection.find(by);
      if (it == f_->detection.end()) {
        it = f_->detection
                 .emplace(by, &f_->detection_seconds.Add(
                                  {{"by", by}},
                                  prometheus::Histogram::BucketBoundaries{
                                      0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30}))
                 .first;
      }
      it->second->Observe(static_cast<double>(j.value("detection_ms", int64_t{0})) / 1000.0);
    }
  } else if (e.kind == EventKind::kDnsUpdateFailed) {
    f_->dns_failed.Increment();
  } else if (e.kind == EventKind::kRunning) {
    auto it = failed_at_.find(e.instance);
    if (it != failed_at_.end()) {
      f_->completed.Increment();
      f_->heal.Observe(static_cast<double>(e.unix_ms - it->second) / 1000.0);
      failed_at_.erase(it);
    }
  } else if (e.kind == EventKind::kPending && failed_at_.count(e.instance)) {
    f_->failed.Increment();
  } else if (e.kind == EventKind::kUpgradePreempted) {
    f_->preempted.Increment();
  }
}

}  // namespace regen
