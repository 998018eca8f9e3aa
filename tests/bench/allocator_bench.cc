// Allocator figures in a cluster of 10,000 hosts and 200,000 instances (1,000 services of 200):
// building the state, instance-mode placement of one instance and of a rack's 2,000 instances,
// and full-service placement of a 2,000-instance service.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "controller/allocator.h"

namespace regen {
namespace {

constexpr int kHosts = 10000;
constexpr int kServices = 1000;
constexpr int kInstancesPerService = 200;  // 200,000 instances, 20 per host on average
constexpr int kRackSize = 100;             // hosts per rack: a rack holds ~2,000 instances

std::string HostName(int h) { return "host-" + std::to_string(h); }
std::string ServiceName(int s) { return "svc-" + std::to_string(s); }

ServiceModel Service(int s) {
  static const Resources kFlavors[] = {
      {1, 2048, 10, 50}, {2, 4096, 20, 100}, {4, 8192, 40, 200}, {2, 8192, 20, 100}};
  ServiceModel m;
  m.name = ServiceName(s);
  m.instances = kInstancesPerService;
  m.update_domains = 5;
  m.flavor = kFlavors[s % 4];
  m.subnet = "10." + std::to_string(s >> 8) + "." + std::to_string(s & 255) + ".0/24";
  m.placement = PlacementPolicy::kSpread;
  return m;
}

struct Cluster {
  std::vector<HostInfo> hosts;
  std::vector<ExistingAllocation> existing;
};

// Deterministic: instance j of service s on host (s * 37 + j * 50) mod 10,000, so each service
// spans 200 hosts and every host holds ~20 instances (~45 of its 64 vCPU).
const Cluster& TheCluster() {
  static const Cluster* cluster = [] {
    auto* c = new Cluster;
    for (int h = 0; h < kHosts; ++h) {
      c->hosts.push_back({HostName(h), HostState::kUp, {64, 262144, 4000, 25000}, {}});
    }
    c->existing.reserve(kServices * kInstancesPerService);
    int mac = 0;
    for (int s = 0; s < kServices; ++s) {
      ServiceModel m = Service(s);
      for (int j = 0; j < kInstancesPerService; ++j) {
        ExistingAllocation e;
        e.instance = m.name + "-" + std::to_string(j);
        e.service = m.name;
        e.update_domain = j % m.update_domains;
        e.allocation.host = HostName((s * 37 + j * 50) % kHosts);
        e.allocation.resources = m.flavor;
        e.allocation.ip = "10." + std::to_string(s >> 8) + "." + std::to_string(s & 255) + "." +
                          std::to_string(j + 2);
        char buf[18];
        ++mac;
        std::snprintf(buf, sizeof buf, "52:54:01:%02x:%02x:%02x", (mac >> 16) & 0xff,
                      (mac >> 8) & 0xff, mac & 0xff);
        e.allocation.mac = buf;
        c->existing.push_back(std::move(e));
      }
    }
    return c;
  }();
  return *cluster;
}

const AllocatorState& BaseState() {
  static const AllocatorState* state = [] {
    auto built = AllocatorState::Build(TheCluster().hosts, TheCluster().existing);
    if (!built.ok()) {
      std::fprintf(stderr, "build failed: %s\n", built.status().ToString().c_str());
      std::abort();
    }
    return new AllocatorState(std::move(built).value());
  }();
  return *state;
}

void BM_BuildState(benchmark::State& state) {
  const Cluster& c = TheCluster();
  for (auto _ : state) {
    auto built = AllocatorState::Build(c.hosts, c.existing);
    if (!built.ok()) state.SkipWithError(built.status().message().c_str());
    benchmark::DoNotOptimize(built);
  }
  state.counters["hosts"] = kHosts;
  state.counters["instances"] = static_cast<double>(c.existing.size());
}
BENCHMARK(BM_BuildState)->Unit(benchmark::kMillisecond);

// Heal one instance (instance mode): its host is the failed host. Each iteration moves a
// different instance, so the cluster stays as loaded as it was.
void BM_PlaceOneInstance(benchmark::State& state) {
  AllocatorState s = BaseState();
  std::vector<ServiceModel> models;
  for (int svc = 0; svc < kServices; ++svc) models.push_back(Service(svc));
  std::vector<std::string> names;
  for (int idx = 0; idx < kInstancesPerService; ++idx) names.push_back("-" + std::to_string(idx));
  int64_t i = 0, pending = 0;
  std::string name;
  for (auto _ : state) {
    // Counted in the time: building the request and one hash lookup for its failed host.
    const ServiceModel& m = models[(i * 7919) % kServices];
    const int idx = static_cast<int>(i % kInstancesPerService);
    ++i;
    name = m.name + names[idx];
    std::string failed = s.Find(name)->allocation.host;
    auto plan = s.PlaceInstances(m, {{name, idx % m.update_domains, ""}}, {failed});
    if (!plan.ok()) state.SkipWithError(plan.status().message().c_str());
    pending += static_cast<int64_t>(plan->pending.size());
  }
  state.counters["pending"] = static_cast<double>(pending);
  state.counters["instances/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PlaceOneInstance)->Unit(benchmark::kMicrosecond);

// A rack of 100 hosts goes down: heal its ~2,000 instances, one PlaceInstances call per service
// with that service's failed hosts excluded (what the healer does).
void BM_PlaceRack(benchmark::State& state) {
  const AllocatorState& base = BaseState();
  // Which instances the rack holds, per service.
  std::map<int, std::vector<InstanceRequest>> requests;
  std::map<int, std::vector<std::string>> failed_hosts;
  const Cluster& c = TheCluster();
  for (size_t k = 0; k < c.existing.size(); ++k) {
    const ExistingAllocation& e = c.existing[k];
    int host = std::stoi(e.allocation.host.substr(5));
    if (host >= kRackSize) continue;
    int svc = static_cast<int>(k / kInstancesPerService);
    requests[svc].push_back({e.instance, e.update_domain, ""});
    auto& f = failed_hosts[svc];
    if (f.empty() || f.back() != e.allocation.host) f.push_back(e.allocation.host);
  }
  size_t total = 0;
  for (const auto& [svc, r] : requests) total += r.size();
  int64_t placed = 0, pending = 0;
  for (auto _ : state) {
    state.PauseTiming();
    AllocatorState s = base;
    for (int h = 0; h < kRackSize; ++h) (void)s.SetHostState(HostName(h), HostState::kDown);
    state.ResumeTiming();
    for (const auto& [svc, r] : requests) {
      auto plan = s.PlaceInstances(Service(svc), r, failed_hosts[svc]);
      if (!plan.ok()) state.SkipWithError(plan.status().message().c_str());
      placed += static_cast<int64_t>(plan->placed.size());
      pending += static_cast<int64_t>(plan->pending.size());
    }
    state.PauseTiming();
    benchmark::DoNotOptimize(s);
    { AllocatorState discard = std::move(s); }
    state.ResumeTiming();
  }
  state.counters["instances"] = static_cast<double>(total);
  state.counters["services"] = static_cast<double>(requests.size());
  state.counters["pending"] =
      static_cast<double>(pending) / static_cast<double>(state.iterations());
  state.counters["instances/s"] =
      benchmark::Counter(static_cast<double>(placed + pending), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PlaceRack)->Unit(benchmark::kMillisecond);

// Full-service mode: a new 2,000-instance service (10 update domains) in the same cluster.
void BM_PlaceService2000(benchmark::State& state) {
  AllocatorState s = BaseState();
  ServiceModel m;
  m.name = "big";
  m.instances = 2000;
  m.update_domains = 10;
  m.flavor = {2, 4096, 20, 100};
  m.subnet = "172.16.0.0/20";
  m.placement = static_cast<PlacementPolicy>(state.range(0));
  int64_t pending = 0, placed = 0;
  for (auto _ : state) {
    auto plan = s.PlaceService(m);
    if (!plan.ok()) state.SkipWithError(plan.status().message().c_str());
    placed += static_cast<int64_t>(plan->placed.size());
    pending += static_cast<int64_t>(plan->pending.size());
    state.PauseTiming();
    for (const auto& p : plan->placed) (void)s.Release(p.name);
    state.ResumeTiming();
  }
  state.SetLabel(PlacementPolicyName(m.placement));
  state.counters["pending"] =
      static_cast<double>(pending) / static_cast<double>(state.iterations());
  state.counters["instances/s"] =
      benchmark::Counter(static_cast<double>(placed + pending), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PlaceService2000)
    ->Arg(static_cast<int>(PlacementPolicy::kSpread))
    ->Arg(static_cast<int>(PlacementPolicy::kPack))
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace regen

BENCHMARK_MAIN();
