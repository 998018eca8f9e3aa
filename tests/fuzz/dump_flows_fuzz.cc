// libFuzzer target: the parser of `ovs-ofctl --no-names dump-flows` output (ParseDumpFlows,
// ovs/flows.cc) and what the agent does next with the flows it read: keys, canonical matches, a
// plan against itself (nothing to change when the keys are unique), its ovs-ofctl commands, and
// the canonical text re-parsed.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "ovs/flows.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto flows = regen::ovs::ParseDumpFlows(text);
  if (!flows.ok()) return 0;
  std::set<std::string> keys;
  for (const auto& f : *flows) {
    keys.insert(f.Key());
    (void)f.ToString();
    (void)regen::ovs::CanonicalMatch(f.match);
  }
  regen::ovs::FlowPlan plan = regen::ovs::PlanFlowChanges(*flows, *flows);
  if (keys.size() == flows->size()) {
    regen::fuzz::Check(plan.changes() == 0, "dump-flows: a set planned against itself changes");
  }
  (void)regen::ovs::RenderPlan(plan, "br-int");
  // The canonical text parses back to the same flows (the agent compares what it reads with this).
  const std::string canonical = regen::ovs::FormatFlows(*flows);
  auto again = regen::ovs::ParseDumpFlows(canonical);
  if (!again.ok())
    regen::fuzz::Fail("dump-flows: canonical text refused: " + again.status().ToString() + "\n" +
                      canonical);
  for (size_t i = 0; i < flows->size() && i < again->size(); ++i) {
    if (!((*again)[i] == (*flows)[i])) {
      regen::fuzz::Fail("dump-flows: re-parsed differently:\n" + (*flows)[i].ToString() + "\n" +
                        (*again)[i].ToString());
    }
  }
  regen::fuzz::Check(again->size() == flows->size(), "dump-flows: re-parsed to another count");
  return 0;
}
