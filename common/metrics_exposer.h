// The /metrics HTTP endpoint both daemons serve (prometheus-cpp's Exposer) around a registry.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace regen {

struct MetricsEndpoint {
  std::unique_ptr<prometheus::Exposer> exposer;
  int port = 0;  // the port it listens on
};

// Serves `registry` at http://address/metrics with `threads` HTTP threads. UNAVAILABLE naming
// the field metrics_address and the address when it cannot listen.
Result<MetricsEndpoint> ServeMetrics(const std::string& address,
                                     std::shared_ptr<prometheus::Registry> registry, int threads);

}  // namespace regen
