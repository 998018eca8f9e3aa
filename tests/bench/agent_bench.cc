// Agent hot paths at 1,000 domains: building domain XML, and planning a reconcile.
#include <benchmark/benchmark.h>

#include <cstdio>

#include "agent/domain_xml.h"
#include "agent/reconciler.h"

namespace regen {
namespace {

InstanceSpec MakeSpec(int i) {
  InstanceSpec s;
  s.service = "svc" + std::to_string(i % 10);
  s.name = s.service + "-" + std::to_string(i);
  s.update_domain = i % 5;
  s.version = "v1";
  s.generation = 1;
  s.allocation.resources = {1, 64, 1, 100};
  char mac[18];
  std::snprintf(mac, sizeof mac, "52:54:00:%02x:%02x:%02x", (i >> 16) & 0xff, (i >> 8) & 0xff,
                i & 0xff);
  s.allocation.mac = mac;
  s.allocation.ip = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 2);
  s.metadata = {{"role", "frontend"}, {"build", "1234"}};
  return s;
}

void BM_BuildDomainXml1000(benchmark::State& state) {
  std::vector<InstanceSpec> specs;
  for (int i = 0; i < 1000; ++i) specs.push_back(MakeSpec(i));
  DomainXmlOptions opts;
  opts.domain_type = "kvm";
  opts.disk_path = "/var/lib/regen/disks/x.qcow2";
  size_t bytes = 0;
  for (auto _ : state) {
    for (const auto& s : specs) {
      auto xml = BuildDomainXml(s, opts);
      if (!xml.ok()) state.SkipWithError(xml.status().message().c_str());
      bytes += xml->size();
    }
  }
  state.counters["domains/s"] = benchmark::Counter(1000.0 * static_cast<double>(state.iterations()),
                                                   benchmark::Counter::kIsRate);
  benchmark::DoNotOptimize(bytes);
}
BENCHMARK(BM_BuildDomainXml1000)->Unit(benchmark::kMillisecond);

// 1,000 desired, 1,000 actual: 10 crashed, 10 missing, 10 extra, 10 at an old generation.
void BM_PlanReconcile1000(benchmark::State& state) {
  std::vector<InstanceSpec> desired;
  std::vector<DomainInfo> actual;
  for (int i = 0; i < 1000; ++i) {
    desired.push_back(MakeSpec(i));
    if (i % 100 == 1) continue;  // missing
    DomainInfo d;
    d.name = desired.back().name;
    d.state = i % 100 == 2 ? DomainState::kCrashed : DomainState::kRunning;
    d.metadata = {true, desired.back().service, d.name, 0, "v1", i % 100 == 3 ? 0 : 1};
    actual.push_back(d);
  }
  for (int i = 0; i < 10; ++i) {
    DomainInfo d;
    d.name = "gone-" + std::to_string(i);
    d.state = DomainState::kRunning;
    d.metadata.managed = true;
    actual.push_back(d);
  }
  size_t actions = 0;
  for (auto _ : state) {
    auto plan = PlanReconcile(desired, actual, {.restart_failed_locally = true});
    actions = plan.actions.size();
    benchmark::DoNotOptimize(plan);
  }
  state.counters["actions"] = static_cast<double>(actions);
}
BENCHMARK(BM_PlanReconcile1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace regen

BENCHMARK_MAIN();
