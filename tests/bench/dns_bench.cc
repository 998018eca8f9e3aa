// DNS update latency against a real knotd on loopback (started here, in a temp dir): from the
// UPDATE being sent to the new address being visible in a query, for one heal (instance record
// and the service set in one message) and for a 100-instance service; plus the pure update
// builder and one c-ares poll of 100 names. Figures are printed, never asserted.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "dns/cares_resolver.h"
#include "dns/dns_updater.h"
#include "dns/ldns_updater.h"
#include "tests/integration/dns/knot_server.h"

namespace regen::dns {
namespace {

using Clock = std::chrono::steady_clock;
using regen::testing::KnotServer;

struct Lab {
  std::unique_ptr<KnotServer> knot;
  std::unique_ptr<DnsUpdater> updater;
  std::unique_ptr<Resolver> resolver;
};

// One knotd for the whole run; nullptr (and the error printed) when it cannot start.
Lab* GetLab() {
  static Lab* lab = [] {
    auto knot = KnotServer::Start();
    if (!knot.ok()) {
      std::fprintf(stderr, "dns_bench: %s\n", knot.status().ToString().c_str());
      return static_cast<Lab*>(nullptr);
    }
    auto* l = new Lab;
    l->knot = std::move(knot).value();
    LdnsUpdaterOptions o;
    o.server_address = l->knot->address();
    o.port = l->knot->port();
    o.tsig = l->knot->key();
    o.tcp_only = std::getenv("DNS_BENCH_TCP") != nullptr;
    l->updater = std::move(NewLdnsUpdater(o)).value();
    l->resolver = std::move(NewCaresResolver({l->knot->address(), l->knot->port(),
                                              std::chrono::milliseconds(500), 2}))
                      .value();
    std::atexit([] { delete GetLab(); });
    return l;
  }();
  return lab;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

ZoneRecords Service(int instances, int generation) {
  std::vector<InstanceAddress> list;
  for (int i = 0; i < instances; ++i) {
    // Every generation moves each instance to a new address.
    int host = 2 + (i + generation * instances) % 250;
    list.push_back({"web-" + std::to_string(i),
                    "10.1." + std::to_string(generation % 200) + "." + std::to_string(host)});
  }
  return std::move(DesiredZoneRecords("lab.example.", {{"web", "", list}})).value();
}

// Sends the update from `before` to `after`, then queries `probe` until it shows `want`.
void UpdateToVisible(benchmark::State& state, int instances) {
  Lab* lab = GetLab();
  if (lab == nullptr) {
    state.SkipWithError("knotd cannot start (see stderr)");
    return;
  }
  std::vector<double> apply_ms, visible_ms;
  int64_t queries = 0, records = 0;
  int generation = 0;
  ZoneRecords applied = Service(instances, generation);
  if (!lab->updater->Apply(*BuildZoneUpdate("lab.example.", 30, std::nullopt, applied)).ok()) {
    state.SkipWithError("initial update failed");
    return;
  }
  std::string probe = "web-" + std::to_string(instances - 1) + ".lab.example.";
  for (auto _ : state) {
    ++generation;
    ZoneRecords next = Service(instances, generation);
    // A heal of one instance, or a whole service moving at once.
    if (instances == 1) next = Service(1, generation);
    auto update = BuildZoneUpdate("lab.example.", 30, applied, next);
    records += update->RecordCount();
    std::vector<std::string> want(next[probe].begin(), next[probe].end());
    auto start = Clock::now();
    Status s = lab->updater->Apply(*update);
    auto applied_at = Clock::now();
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
    while (true) {
      ++queries;
      auto r = lab->resolver->ResolveAll({probe});
      if (r[probe].status.ok() && r[probe].addresses == want) break;
    }
    auto end = Clock::now();
    apply_ms.push_back(std::chrono::duration<double, std::milli>(applied_at - start).count());
    visible_ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
    applied = std::move(next);
  }
  state.counters["apply_p50_ms"] = Percentile(apply_ms, 0.5);
  state.counters["apply_p99_ms"] = Percentile(apply_ms, 0.99);
  state.counters["visible_p50_ms"] = Percentile(visible_ms, 0.5);
  state.counters["visible_p99_ms"] = Percentile(visible_ms, 0.99);
  state.counters["visible_max_ms"] = Percentile(visible_ms, 1.0);
  state.counters["queries_per_update"] =
      static_cast<double>(queries) / std::max<int64_t>(1, state.iterations());
  state.counters["records_per_update"] =
      static_cast<double>(records) / std::max<int64_t>(1, state.iterations());
}

void BM_DnsHealUpdateToVisible(benchmark::State& state) { UpdateToVisible(state, 1); }
BENCHMARK(BM_DnsHealUpdateToVisible)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_DnsService100UpdateToVisible(benchmark::State& state) { UpdateToVisible(state, 100); }
BENCHMARK(BM_DnsService100UpdateToVisible)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_BuildZoneUpdate100(benchmark::State& state) {
  ZoneRecords before = Service(100, 0);
  ZoneRecords after = Service(100, 1);
  for (auto _ : state) {
    auto update = BuildZoneUpdate("lab.example.", 30, before, after);
    benchmark::DoNotOptimize(update);
  }
}
BENCHMARK(BM_BuildZoneUpdate100)->Unit(benchmark::kMicrosecond);

void BM_CaresResolve100Names(benchmark::State& state) {
  Lab* lab = GetLab();
  if (lab == nullptr) {
    state.SkipWithError("knotd cannot start (see stderr)");
    return;
  }
  ZoneRecords records = Service(100, 7);
  if (!lab->updater->Apply(*BuildZoneUpdate("lab.example.", 30, std::nullopt, records)).ok()) {
    state.SkipWithError("update failed");
    return;
  }
  std::vector<std::string> names;
  for (const auto& [name, addresses] : records) names.push_back(name);
  for (auto _ : state) {
    auto results = lab->resolver->ResolveAll(names);
    if (results.size() != names.size()) state.SkipWithError("missing results");
  }
  state.counters["names"] = static_cast<double>(names.size());
}
BENCHMARK(BM_CaresResolve100Names)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace regen::dns

BENCHMARK_MAIN();
