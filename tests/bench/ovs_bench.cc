// Flow programming at 1,000 instances on a real ovs-vswitchd (userspace datapath, OvsSandbox):
// generating a host's flow set, installing it whole (one --bundle replace-flows), and applying a
// one-instance move as an incremental bundle, each with and without the dump/verify round trips
// of SyncFlows. Figures are wall time (the work happens in ovs-ofctl and ovs-vswitchd).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/subprocess.h"
#include "ovs/flows.h"
#include "ovs/ovs_vswitch.h"
#include "ovs/vswitch.h"
#include "tests/integration/ovs/ovs_sandbox.h"

namespace regen::ovs {
namespace {

constexpr int kInstances = 1000;
constexpr int kServices = 10;
constexpr int kHosts = 4;
const std::string kBridge(kIntegrationBridge);
const LocalSwitch kLocal{"host-1", 1};

testing::OvsSandbox* sandbox = nullptr;

std::string Mac(int i) {
  char mac[18];
  std::snprintf(mac, sizeof mac, "52:54:00:%02x:%02x:%02x", (i >> 16) & 0xff, (i >> 8) & 0xff,
                i & 0xff);
  return mac;
}

// 1,000 instances of 10 services round-robin over 4 hosts: host-1 runs 250 of them.
Topology Cluster() {
  Topology t;
  t.revision = 1;
  for (int h = 1; h <= kHosts; ++h)
    t.hosts.push_back({"host-" + std::to_string(h), "192.168.100." + std::to_string(h)});
  for (int i = 0; i < kInstances; ++i) {
    const std::string service = "svc" + std::to_string(i % kServices);
    t.instances.push_back(TopologyInstance{
        service + "-" + std::to_string(i), service, "host-" + std::to_string(1 + i % kHosts),
        "10." + std::to_string(i % kServices) + "." + std::to_string(i / 250) + "." +
            std::to_string(2 + i % 250),
        Mac(i), 1, 2 + i / kHosts});
  }
  return t;
}

// The moves measured (host-1 runs instances 0, 4, 8, ...: services svc0, svc2, ... svc8):
//   0  svc2-2 from host-3 to host-4: remote to remote, its service has instances here
//   1  svc2-2 from host-3 to host-1: arrives here, its service already has instances here
//   2  svc1-1 from host-2 to host-1: the first instance of its service here (ARP and ACL entries
//      for all 100 instances of svc1 appear)
Topology MovedCluster(int move) {
  Topology t = Cluster();
  t.revision = 2;
  TopologyInstance moved = t.instances[move == 2 ? 1 : 2];
  moved.host = move == 0 ? "host-4" : "host-1";
  moved.generation = 2;
  moved.ofport = 2 + kInstances;
  t.instances.push_back(moved);
  return t;
}

std::vector<Flow> BuildOrDie(const Topology& t) {
  auto flows = BuildFlowSet(t, kLocal);
  if (!flows.ok()) {
    std::fprintf(stderr, "BuildFlowSet: %s\n", flows.status().ToString().c_str());
    std::abort();
  }
  return *flows;
}

void BM_BuildFlowSet1000(benchmark::State& state) {
  const Topology t = Cluster();
  size_t flows = 0;
  for (auto _ : state) {
    auto built = BuildFlowSet(t, kLocal);
    benchmark::DoNotOptimize(built);
    flows = built->size();
  }
  state.counters["flows"] = static_cast<double>(flows);
}
BENCHMARK(BM_BuildFlowSet1000)->Unit(benchmark::kMillisecond);

// Whole table from empty (an OVS restart, first start): ApplyPlan(kReplace) alone, or the full
// SyncFlows (dump, plan, apply, dump, compare).
void BM_InstallAll1000(benchmark::State& state) {
  const bool sync = state.range(0) == 1;
  RealCommandRunner runner;
  OvsVSwitch vswitch(runner, sandbox->VSwitchOptions());
  const std::vector<Flow> desired = BuildOrDie(Cluster());
  FlowPlan empty_plan;
  empty_plan.mode = PlanMode::kReplace;
  empty_plan.desired = {Flow{0, 0, 0, "", "drop"}};
  for (auto _ : state) {
    state.PauseTiming();
    Status cleared = vswitch.ApplyPlan(kBridge, empty_plan);
    if (!cleared.ok()) state.SkipWithError(cleared.ToString().c_str());
    state.ResumeTiming();
    if (sync) {
      auto r = SyncFlows(vswitch, kBridge, desired);
      if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
    } else {
      Status s = vswitch.ApplyPlan(kBridge, PlanFlowChanges(desired, {}));
      if (!s.ok()) state.SkipWithError(s.ToString().c_str());
    }
  }
  state.counters["flows"] = static_cast<double>(desired.size());
}
BENCHMARK(BM_InstallAll1000)
    ->ArgName("sync")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// One instance moves (and back, alternately) with the other 999 in place: an incremental bundle.
void BM_MoveOneInstance(benchmark::State& state) {
  const int move = static_cast<int>(state.range(0));
  const bool sync = state.range(1) == 1;
  RealCommandRunner runner;
  OvsVSwitch vswitch(runner, sandbox->VSwitchOptions());
  const std::vector<Flow> sets[2] = {BuildOrDie(Cluster()), BuildOrDie(MovedCluster(move))};
  auto initial = SyncFlows(vswitch, kBridge, sets[0]);
  if (!initial.ok()) {
    state.SkipWithError(initial.status().ToString().c_str());
    return;
  }
  const FlowPlan plans[2] = {PlanFlowChanges(sets[1], sets[0]), PlanFlowChanges(sets[0], sets[1])};
  int next = 1;
  size_t changes = 0;
  for (auto _ : state) {
    if (sync) {
      auto r = SyncFlows(vswitch, kBridge, sets[next]);
      if (!r.ok()) state.SkipWithError(r.status().ToString().c_str());
      if (r.ok() && r->mode != PlanMode::kIncremental) state.SkipWithError("not incremental");
      if (r.ok()) changes = r->added + r->modified + r->removed;
    } else {
      Status s = vswitch.ApplyPlan(kBridge, plans[1 - next]);
      if (!s.ok()) state.SkipWithError(s.ToString().c_str());
      changes = plans[0].changes();
    }
    next = 1 - next;
  }
  state.counters["flows"] = static_cast<double>(sets[1].size());
  state.counters["changes"] = static_cast<double>(changes);
}
BENCHMARK(BM_MoveOneInstance)
    ->ArgNames({"move", "sync"})
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Dumping and parsing the 1,000-instance table (the read half of every sync).
void BM_DumpFlows1000(benchmark::State& state) {
  RealCommandRunner runner;
  OvsVSwitch vswitch(runner, sandbox->VSwitchOptions());
  auto initial = SyncFlows(vswitch, kBridge, BuildOrDie(Cluster()));
  if (!initial.ok()) {
    state.SkipWithError(initial.status().ToString().c_str());
    return;
  }
  size_t flows = 0;
  for (auto _ : state) {
    auto dumped = vswitch.DumpFlows(kBridge);
    if (!dumped.ok()) state.SkipWithError(dumped.status().ToString().c_str());
    flows = dumped.ok() ? dumped->size() : 0;
  }
  state.counters["flows"] = static_cast<double>(flows);
}
BENCHMARK(BM_DumpFlows1000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace regen::ovs

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  regen::testing::OvsSandbox box;
  regen::Status started = box.Start();
  if (!started.ok()) {
    std::fprintf(stderr, "cannot start a private Open vSwitch: %s\n", started.ToString().c_str());
    return 1;
  }
  regen::RealCommandRunner runner;
  regen::ovs::OvsVSwitch vswitch(runner, box.VSwitchOptions());
  regen::Status bridge = vswitch.EnsureBridge(regen::ovs::kBridge);
  if (!bridge.ok()) {
    std::fprintf(stderr, "%s\n", bridge.ToString().c_str());
    return 1;
  }
  regen::ovs::sandbox = &box;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
