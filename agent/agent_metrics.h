// Prometheus metrics of regen-agent (prometheus-cpp; scraped at http://ADDRESS/metrics), refreshed
// once a second from the agent's status (the same JSON as `regen-agent status`), so the collector
// never touches the agent's state from the HTTP thread:
//   regen_agent_domains{state}                  domains on this host by state
//   regen_agent_failures_detected_total{by}     failures this agent detected (event, poll,
//                                               process_exit, health_check)
//   regen_agent_recreate_seconds                histogram: detection -> re-created on this host
//                                               (standalone healing)
//   regen_agent_controller_connected            1 while the controller stream is up
//   regen_agent_libvirt_connected               1 while libvirt answers
//   regen_agent_fenced                          1 while fenced (no lease: managed domains
//   destroyed) regen_agent_topology_revision_applied       the topology revision the network worker
//   applied regen_agent_reconciles_total                reconcile passes
// Counters count what happened since this process started.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace regen {

class AgentMetrics {
 public:
  // Serves /metrics on `address` ("127.0.0.1:9465"; port 0 picks a free one). UNAVAILABLE naming
  // the field and address when it cannot listen.
  static Result<std::unique_ptr<AgentMetrics>> Start(const std::string& address);
  ~AgentMetrics();

  struct Links {
    bool controller_mode = false;
    bool controller_connected = false;
    int64_t topology_revision_applied = 0;
    bool backstop_tripped = false;  // the fencing backstop gave up on this host
  };
  // `status` is Agent::StatusJson().
  void Refresh(const nlohmann::json& status, const Links& links);
  int port() const { return port_; }

 private:
  AgentMetrics() = default;
  struct Families;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> f_;
  int port_ = 0;
  std::set<std::string> failures_seen_;  // instance/generation/detected_unix_ms
  std::set<std::string> recreates_seen_;
  int64_t reconciles_seen_ = -1;
};

}  // namespace regen
