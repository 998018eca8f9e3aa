// libFuzzer target: the YAML loaders (service spec, desired set, controller.yaml, agent.yaml) on
// the same input. Run with -rss_limit_mb=2048 -max_len=65536 (scripts/fuzz.sh does): a crash, a
// hang or a huge allocation on any text is a bug. Errors must name a field or a line, never throw.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/agent_config.h"
#include "config/controller_config.h"
#include "config/service_spec.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto spec = regen::ParseServiceSpec(text, "fuzz.yaml");
  if (!spec.ok())
    regen::fuzz::Check(!spec.status().ToString().empty(), "service spec: empty error");
  auto desired = regen::ParseDesiredInstances(text, "fuzz.yaml");
  if (!desired.ok())
    regen::fuzz::Check(!desired.status().ToString().empty(), "desired: empty error");
  auto controller = regen::ParseControllerConfig(text, "fuzz.yaml");
  if (!controller.ok()) {
    regen::fuzz::Check(!controller.status().ToString().empty(), "controller.yaml: empty error");
  }
  auto agent = regen::ParseAgentConfig(text, "fuzz.yaml");
  if (!agent.ok())
    regen::fuzz::Check(!agent.status().ToString().empty(), "agent.yaml: empty error");
  return 0;
}
