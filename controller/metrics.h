// Prometheus metrics of regen-controller (prometheus-cpp; scraped at http://ADDRESS/metrics).
//
// Gauges are refreshed from the controller's state and counters/histograms from its event log, on
// the controller's main loop (Refresh), so the collector never touches the controller from the
// HTTP thread and the controller's code knows nothing about metrics:
//   regen_hosts{state}                       hosts by state (up, suspect, down, draining, ...)
//   regen_instances{service,state}           instances by state
//   regen_upgrade_state{service,state}       1 for the state of each service's last upgrade
//   regen_upgrade_current_ud{service}        the UD being upgraded / next
//   regen_healings_total{outcome}            started (a failure), completed (running again),
//                                            failed (left pending: nothing fits)
//   regen_heal_seconds                       histogram: failure event -> running again
//   regen_events_total{kind}                 controller events by kind
//   regen_upgrade_preemptions_total          upgrades pre-empted by healing
//   regen_detection_seconds{by}              histogram: first evidence of a failure (the agent's
//                                            detection; a down host's last heartbeat) -> the
//                                            healing decision; by = event | poll | health_check |
//                                            host_down
//   regen_dns_update_failures_total          dns_update_failed events (each update is retried)
//   regen_topology_revision_applied{host}    the topology revision each agent last applied
//   regen_rpc_errors_total{method,code}      RPCs answered with an error (refusals included)
// Counters count events appended since this process started.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "common/status.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace regen {

class Controller;
struct EventRecord;

class ControllerMetrics {
 public:
  // Serves /metrics on `address` ("127.0.0.1:9464"; port 0 picks a free one). UNAVAILABLE naming
  // the address when it cannot listen.
  static Result<std::unique_ptr<ControllerMetrics>> Start(const std::string& address,
                                                          int64_t started_unix_ms);
  ~ControllerMetrics();

  // On the controller's main loop: gauges from the state, counters from events appended since
  // the last call.
  void Refresh(Controller& controller);
  // The port it listens on.
  int port() const { return port_; }

 private:
  ControllerMetrics() = default;
  struct Families;
  void OnEvent(const EventRecord& event);

  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> f_;
  int port_ = 0;
  int64_t started_unix_ms_ = 0;
  int64_t last_sequence_ = 0;
  std::map<std::string, int64_t> failed_at_;  // instance -> failure event time (being healed)
};

}  // namespace regen
