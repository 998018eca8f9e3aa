#include "common/metrics_exposer.h"

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

namespace regen {

Result<MetricsEndpoint> ServeMetrics(const std::string& address,
                                     std::shared_ptr<prometheus::Registry> registry, int threads) {
  MetricsEndpoint out;
  try {
    out.exposer = std::make_unique<prometheus::Exposer>(address, threads);
  } catch (const std::exception& e) {
    return Unavailable("metrics_address " + address + ": cannot listen: " + e.what());
  }
  out.exposer->RegisterCollectable(registry);
  auto ports = out.exposer->GetListeningPorts();
  out.port = ports.empty() ? 0 : ports.front();
  return out;
}

}  // namespace regen
