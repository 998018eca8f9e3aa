// Tests of the allocator (controller/allocator.h): capacity, spreading, packing, exclusions,
// pending instances, addresses, target hosts, and randomized runs checked against a brute-force
// reference.
#include "controller/allocator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/names.h"

namespace regen {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

HostInfo MakeHost(const std::string& name, Resources capacity = {8, 16384, 100, 1000},
                  HostState state = HostState::kUp) {
  return HostInfo{name, state, capacity, {}};
}

std::vector<HostInfo> MakeHosts(int n, Resources capacity = {8, 16384, 100, 1000}) {
  std::vector<HostInfo> hosts;
  for (int i = 0; i < n; ++i) hosts.push_back(MakeHost("host-" + std::to_string(i), capacity));
  return hosts;
}

ServiceModel MakeService(const std::string& name, int64_t instances, int64_t update_domains = 1,
                         PlacementPolicy placement = PlacementPolicy::kSpread,
                         Resources flavor = {1, 1024, 10, 100},
                         std::string subnet = "10.10.0.0/24") {
  ServiceModel s;
  s.name = name;
  s.instances = instances;
  s.update_domains = update_domains;
  s.flavor = flavor;
  s.subnet = std::move(subnet);
  s.placement = placement;
  return s;
}

AllocatorState BuildOrDie(const std::vector<HostInfo>& hosts,
                          const std::vector<ExistingAllocation>& existing = {},
                          const AddressesInUse& in_use = {}) {
  auto state = AllocatorState::Build(hosts, existing, in_use);
  EXPECT_TRUE(state.ok()) << state.status().ToString();
  return std::move(state).value();
}

PlacementPlan PlaceServiceOrDie(AllocatorState& state, const ServiceModel& service) {
  auto plan = state.PlaceService(service);
  EXPECT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_TRUE(state.CheckInvariants().ok()) << state.CheckInvariants().ToString();
  return plan.ok() ? std::move(plan).value() : PlacementPlan{};
}

PlacementPlan PlaceInstancesOrDie(AllocatorState& state, const ServiceModel& service,
                                  const std::vector<InstanceRequest>& requests,
                                  const std::vector<std::string>& excluded = {}) {
  auto plan = state.PlaceInstances(service, requests, excluded);
  EXPECT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_TRUE(state.CheckInvariants().ok()) << state.CheckInvariants().ToString();
  return plan.ok() ? std::move(plan).value() : PlacementPlan{};
}

std::map<std::string, int> CountPerHost(const PlacementPlan& plan) {
  std::map<std::string, int> count;
  for (const auto& p : plan.placed) ++count[p.allocation.host];
  return count;
}

// ----------------------------------------------------------------------------------------------
// Validation.

TEST(AllocatorValidationTest, RefusesBadHosts) {
  auto bad_name = AllocatorState::Build({MakeHost("Host_1")});
  ASSERT_FALSE(bad_name.ok());
  EXPECT_EQ(bad_name.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad_name.status().message(), AllOf(HasSubstr("hosts[0].name"), HasSubstr("Host_1")));

  auto twice = AllocatorState::Build({MakeHost("a"), MakeHost("a")});
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(twice.status().message(), HasSubstr("listed twice"));

  auto negative = AllocatorState::Build({MakeHost("a", {-1, 1, 1, 1})});
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.status().code(), Code::kInvalidArgument);
}

TEST(AllocatorValidationTest, RefusesBadServiceModels) {
  AllocatorState state = BuildOrDie(MakeHosts(2));
  struct Case {
    ServiceModel service;
    std::vector<std::string> expected;
  };
  std::vector<Case> cases;
  cases.push_back({MakeService("Web", 1), {"service name", "\"Web\""}});
  cases.push_back({MakeService("web", -1), {"instances", "-1"}});
  cases.push_back({MakeService("web", 2, 0), {"update_domains", "got 0"}});
  cases.push_back({MakeService("web", 1, 1, PlacementPolicy::kSpread, {0, 1024, 1, 1}),
                   {"flavor.vcpus", "got 0"}});
  cases.push_back({MakeService("web", 1, 1, PlacementPolicy::kSpread, {1, -5, 1, 1}),
                   {"flavor.memory_mib", "got -5"}});
  cases.push_back({MakeService("web", 1, 1, PlacementPolicy::kSpread, {1, 5, -1, 1}),
                   {"flavor.disk_gib", "got -1"}});
  cases.push_back({MakeService("web", 1, 1, PlacementPolicy::kSpread, {1, 5, 1, -2}),
                   {"flavor.bandwidth_mbps", "got -2"}});
  cases.push_back({MakeService("web", 1, 1, PlacementPolicy::kSpread, {1, 1, 1, 1}, "10.0.0.0"),
                   {"network.subnet", "\"10.0.0.0\""}});
  cases.push_back({MakeService("web", 1, 1, PlacementPolicy::kSpread, {1, 1, 1, 1}, "10.0.0.5/24"),
                   {"network.subnet", "host bits", "10.0.0.0/24"}});
  cases.push_back({MakeService("web", 1, 1, PlacementPolicy::kSpread, {1, 1, 1, 1}, "10.0.0.0/31"),
                   {"network.subnet", "prefix length 31"}});
  cases.push_back({MakeService("web", 1, 1, PlacementPolicy::kSpread, {1, 1, 1, 1}, "300.0.0.0/24"),
                   {"network.subnet", "\"300.0.0.0/24\""}});
  cases.push_back({MakeService("web", 1, 1, PlacementPolicy::kSpread, {1, 1, 1, 1}, "10.0.0.0/x"),
                   {"network.subnet", "prefix"}});
  for (const Case& c : cases) {
    auto full = state.PlaceService(c.service);
    ASSERT_FALSE(full.ok()) << c.expected[0];
    EXPECT_EQ(full.status().code(), Code::kInvalidArgument);
    for (const auto& e : c.expected) EXPECT_THAT(full.status().message(), HasSubstr(e));
    auto incremental = state.PlaceInstances(c.service, {{"web-0", 0, ""}});
    ASSERT_FALSE(incremental.ok());
    EXPECT_EQ(incremental.status().code(), Code::kInvalidArgument);
  }
  EXPECT_EQ(state.instance_count(), 0u);
}

TEST(AllocatorValidationTest, RefusesBadRequests) {
  AllocatorState state = BuildOrDie(MakeHosts(2));
  ServiceModel web = MakeService("web", 2, 2);
  auto bad_name = state.PlaceInstances(web, {{"web 0", 0, ""}});
  EXPECT_EQ(bad_name.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad_name.status().message(), HasSubstr("\"web 0\""));
  auto twice = state.PlaceInstances(web, {{"web-0", 0, ""}, {"web-0", 0, ""}});
  EXPECT_THAT(twice.status().message(), HasSubstr("requested twice"));
  auto bad_ud = state.PlaceInstances(web, {{"web-0", 2, ""}});
  EXPECT_EQ(bad_ud.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad_ud.status().message(), HasSubstr("update domain 2"));
  auto unknown_excluded = state.PlaceInstances(web, {{"web-0", 0, ""}}, {"host-9"});
  EXPECT_EQ(unknown_excluded.status().code(), Code::kNotFound);
  EXPECT_THAT(unknown_excluded.status().message(), HasSubstr("host-9"));

  PlaceServiceOrDie(state, MakeService("db", 1));
  auto other_service = state.PlaceInstances(web, {{"db-0", 0, ""}});
  EXPECT_EQ(other_service.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(other_service.status().message(), HasSubstr("belongs to service db"));
  EXPECT_EQ(state.instance_count(), 1u);
}

TEST(AllocatorValidationTest, AdoptRefusesDuplicatesAndUnknownHosts) {
  AllocatorState state = BuildOrDie(MakeHosts(1));
  ExistingAllocation a{
      "web-0", "web", 0, {"host-0", {1, 1024, 1, 1}, "10.0.0.2", "52:54:00:00:00:01"}};
  ASSERT_TRUE(state.Adopt(a).ok());
  ExistingAllocation same_ip{"web-1", "web", 0, {"host-0", {1, 1, 1, 1}, "10.0.0.2", ""}};
  EXPECT_EQ(state.Adopt(same_ip).code(), Code::kAlreadyExists);
  ExistingAllocation same_mac{"web-1", "web", 0, {"host-0", {1, 1, 1, 1}, "", "52:54:00:00:00:01"}};
  EXPECT_EQ(state.Adopt(same_mac).code(), Code::kAlreadyExists);
  ExistingAllocation same_name{"web-0", "web", 0, {"host-0", {1, 1, 1, 1}, "", ""}};
  EXPECT_EQ(state.Adopt(same_name).code(), Code::kAlreadyExists);
  ExistingAllocation unknown{"web-1", "web", 0, {"host-7", {1, 1, 1, 1}, "", ""}};
  Status s = state.Adopt(unknown);
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("host-7"));
  EXPECT_EQ(state.instance_count(), 1u);
  EXPECT_TRUE(state.CheckInvariants().ok());

  auto dup = AllocatorState::Build(MakeHosts(1), {a, a});
  ASSERT_FALSE(dup.ok());
  EXPECT_THAT(dup.status().message(), HasSubstr("existing allocation [1]"));
}

TEST(AllocatorValidationTest, FullServiceRefusedWhenServiceAlreadyAllocated) {
  AllocatorState state = BuildOrDie(MakeHosts(2));
  PlaceServiceOrDie(state, MakeService("web", 2));
  auto again = state.PlaceService(MakeService("web", 2));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr("already holds 2 allocations"));
  EXPECT_EQ(state.Release("nope").code(), Code::kNotFound);
}

TEST(AllocatorValidationTest, ParsesPolicyNames) {
  EXPECT_EQ(*ParsePlacementPolicy("pack"), PlacementPolicy::kPack);
  EXPECT_EQ(*ParseIpPolicy("new"), IpPolicy::kNew);
  EXPECT_EQ(*ParseHostState("draining"), HostState::kDraining);
  EXPECT_THAT(ParsePlacementPolicy("scatter").status().message(), HasSubstr("\"scatter\""));
  EXPECT_FALSE(ParseIpPolicy("").ok());
  EXPECT_FALSE(ParseHostState("UP").ok());
}

// ----------------------------------------------------------------------------------------------
// Capacity.

class AllocatorDimensionTest : public ::testing::TestWithParam<int> {};

// A host with room for exactly two instances in one dimension (plenty in the others).
TEST_P(AllocatorDimensionTest, EveryDimensionLimits) {
  const int dim = GetParam();
  Resources flavor{1, 1024, 10, 100};
  Resources capacity{1000, 1000 * 1024, 1000 * 10, 1000 * 100};
  int64_t* cap_fields[4] = {&capacity.vcpus, &capacity.memory_mib, &capacity.disk_gib,
                            &capacity.bandwidth_mbps};
  const int64_t flavor_fields[4] = {1, 1024, 10, 100};
  *cap_fields[dim] = 2 * flavor_fields[dim] + flavor_fields[dim] / 2;
  AllocatorState state = BuildOrDie({MakeHost("host-0", capacity)});
  PlacementPlan plan =
      PlaceServiceOrDie(state, MakeService("web", 3, 1, PlacementPolicy::kSpread, flavor));
  ASSERT_EQ(plan.placed.size(), 2u);
  ASSERT_EQ(plan.pending.size(), 1u);
  EXPECT_EQ(plan.pending[0].name, "web-2");
  const char* names[4] = {"vCPU by", "memory by", "disk by", "bandwidth by"};
  EXPECT_THAT(plan.pending[0].reason,
              AllOf(HasSubstr("no up host has 1 vCPU, 1024 MiB memory, 10 GiB disk, 100 Mbps "
                              "bandwidth free"),
                    HasSubstr("largest free: host-0"), HasSubstr(names[dim])));
  for (int d = 0; d < 4; ++d) {
    if (d != dim) {
      EXPECT_THAT(plan.pending[0].reason, ::testing::Not(HasSubstr(names[d])));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dimensions, AllocatorDimensionTest, ::testing::Values(0, 1, 2, 3));

TEST(AllocatorCapacityTest, OtherUsageCounts) {
  HostInfo h = MakeHost("host-0", {4, 4096, 100, 1000});
  h.other_usage = {3, 0, 0, 0};
  AllocatorState state = BuildOrDie({h});
  PlacementPlan plan = PlaceServiceOrDie(state, MakeService("web", 2));
  EXPECT_EQ(plan.placed.size(), 1u);
  EXPECT_EQ(plan.pending.size(), 1u);
  EXPECT_EQ(*state.FreeOn("host-0"), (Resources{0, 3072, 90, 900}));
}

TEST(AllocatorCapacityTest, ZeroDiskAndBandwidthFlavorsNeedNoDiskOrBandwidth) {
  AllocatorState state = BuildOrDie({MakeHost("host-0", {2, 4096, 0, 0})});
  PlacementPlan plan =
      PlaceServiceOrDie(state, MakeService("web", 2, 1, PlacementPolicy::kSpread, {1, 1024, 0, 0}));
  EXPECT_EQ(plan.placed.size(), 2u);
}

// ----------------------------------------------------------------------------------------------
// Spread and pack.

TEST(AllocatorSpreadTest, OneInstancePerHostWherePossible) {
  AllocatorState state = BuildOrDie(MakeHosts(5));
  PlacementPlan plan = PlaceServiceOrDie(state, MakeService("web", 5, 2));
  ASSERT_EQ(plan.placed.size(), 5u);
  auto count = CountPerHost(plan);
  EXPECT_EQ(count.size(), 5u);
  for (const auto& [host, n] : count) EXPECT_EQ(n, 1) << host;
}

TEST(AllocatorSpreadTest, UpdateDomainsOnDifferentHostsWhenHostsAreFewer) {
  for (int uds : {2, 3}) {
    AllocatorState state = BuildOrDie(MakeHosts(3));
    PlacementPlan plan = PlaceServiceOrDie(state, MakeService("web", 6, uds));
    ASSERT_EQ(plan.placed.size(), 6u);
    std::map<std::string, std::set<int64_t>> uds_per_host;
    for (const auto& p : plan.placed) {
      EXPECT_EQ(p.update_domain, std::stoi(p.name.substr(4)) % uds);
      EXPECT_TRUE(uds_per_host[p.allocation.host].insert(p.update_domain).second)
          << "two instances of update domain " << p.update_domain << " on " << p.allocation.host;
    }
    for (const auto& [host, set] : uds_per_host) EXPECT_EQ(set.size(), 2u) << host;
  }
}

TEST(AllocatorSpreadTest, PrefersTheEmptiestHostAndAvoidsHostsHoldingTheService) {
  std::vector<HostInfo> hosts = MakeHosts(3);
  hosts[0].other_usage = {4, 8192, 0, 0};  // host-0 half full
  hosts[2].other_usage = {2, 2048, 0, 0};
  AllocatorState state = BuildOrDie(hosts);
  PlacementPlan plan = PlaceServiceOrDie(state, MakeService("web", 3));
  ASSERT_EQ(plan.placed.size(), 3u);
  EXPECT_EQ(plan.placed[0].allocation.host, "host-1");
  EXPECT_EQ(plan.placed[1].allocation.host, "host-2");
  EXPECT_EQ(plan.placed[2].allocation.host, "host-0");  // emptier ones hold the service already
}

TEST(AllocatorPackTest, FillsHostsInOrder) {
  AllocatorState state = BuildOrDie(MakeHosts(3, {4, 16384, 100, 1000}));
  PlacementPlan plan = PlaceServiceOrDie(state, MakeService("web", 6, 3, PlacementPolicy::kPack));
  ASSERT_EQ(plan.placed.size(), 6u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(plan.placed[i].allocation.host, "host-0");
  EXPECT_EQ(plan.placed[4].allocation.host, "host-1");
  EXPECT_EQ(plan.placed[5].allocation.host, "host-1");
}

TEST(AllocatorPackTest, SkipsHostsThatDoNotFit) {
  std::vector<HostInfo> hosts = MakeHosts(3, {4, 16384, 100, 1000});
  hosts[0].capacity.memory_mib = 512;
  hosts[1].state = HostState::kDraining;
  AllocatorState state = BuildOrDie(hosts);
  PlacementPlan plan = PlaceServiceOrDie(state, MakeService("web", 2, 1, PlacementPolicy::kPack));
  ASSERT_EQ(plan.placed.size(), 2u);
  EXPECT_EQ(plan.placed[0].allocation.host, "host-2");
  EXPECT_EQ(plan.placed[1].allocation.host, "host-2");
}

TEST(AllocatorSpreadTest, OnlyUpHostsAreEligible) {
  std::vector<HostInfo> hosts = MakeHosts(5);
  hosts[0].state = HostState::kSuspect;
  hosts[1].state = HostState::kDown;
  hosts[2].state = HostState::kDraining;
  AllocatorState state = BuildOrDie(hosts);
  PlacementPlan plan = PlaceServiceOrDie(state, MakeService("web", 8));
  ASSERT_EQ(plan.placed.size(), 8u);
  for (const auto& p : plan.placed) {
    EXPECT_TRUE(p.allocation.host == "host-3" || p.allocation.host == "host-4")
        << p.allocation.host;
  }
  EXPECT_EQ(CountPerHost(plan)["host-3"], 4);

  AllocatorState none_up = BuildOrDie({MakeHost("a", {8, 16384, 100, 1000}, HostState::kDown)});
  PlacementPlan pending = PlaceServiceOrDie(none_up, MakeService("web", 1));
  ASSERT_EQ(pending.pending.size(), 1u);
  EXPECT_THAT(pending.pending[0].reason, HasSubstr("none of the 1 known hosts is up"));
}

// ----------------------------------------------------------------------------------------------
// Instance mode.

TEST(AllocatorInstanceModeTest, NeverOnTheFailedHostAndHonoursExistingAllocations) {
  AllocatorState state = BuildOrDie(MakeHosts(4, {2, 4096, 100, 1000}));
  ServiceModel web = MakeService("web", 4);
  PlaceServiceOrDie(state, web);
  // Fill host-1 and host-2 with another service so that only host-3 has room.
  ServiceModel db = MakeService("db", 0, 1, PlacementPolicy::kPack, {1, 1024, 10, 100}, "");
  ASSERT_TRUE(state.Adopt({"db-0", "db", 0, {"host-1", {1, 1024, 1, 1}, "", ""}}).ok());
  ASSERT_TRUE(state.Adopt({"db-1", "db", 0, {"host-2", {1, 1024, 1, 1}, "", ""}}).ok());

  auto before = *state.Find("web-0");
  ASSERT_EQ(before.allocation.host, "host-0");
  PlacementPlan plan = PlaceInstancesOrDie(state, web, {{"web-0", 0, ""}}, {"host-0"});
  ASSERT_EQ(plan.placed.size(), 1u);
  const PlacedInstance& p = plan.placed[0];
  EXPECT_EQ(p.allocation.host, "host-3");
  ASSERT_TRUE(p.previous.has_value());
  EXPECT_EQ(*p.previous, before.allocation);
  EXPECT_EQ(p.allocation.ip, before.allocation.ip);
  EXPECT_EQ(p.allocation.mac, before.allocation.mac);
  EXPECT_EQ(p.allocation.resources, web.flavor);
  EXPECT_EQ(state.Find("web-0")->allocation, p.allocation);
  EXPECT_EQ(state.FreeOn("host-0")->vcpus, 2);  // the old allocation is freed
  EXPECT_EQ(state.FreeOn("host-3")->vcpus, 0);
}

TEST(AllocatorInstanceModeTest, NeverOnTheInstancesCurrentHost) {
  // A VM crashed on a healthy host: it goes to a different host even if its own is the emptiest.
  AllocatorState state = BuildOrDie(MakeHosts(2));
  ServiceModel web = MakeService("web", 1);
  PlaceServiceOrDie(state, web);
  ASSERT_EQ(state.Find("web-0")->allocation.host, "host-0");
  PlacementPlan plan = PlaceInstancesOrDie(state, web, {{"web-0", 0, ""}});
  ASSERT_EQ(plan.placed.size(), 1u);
  EXPECT_EQ(plan.placed[0].allocation.host, "host-1");

  AllocatorState alone = BuildOrDie(MakeHosts(1));
  PlaceServiceOrDie(alone, web);
  PlacementPlan stuck = PlaceInstancesOrDie(alone, web, {{"web-0", 0, ""}});
  ASSERT_EQ(stuck.pending.size(), 1u);
  EXPECT_THAT(stuck.pending[0].reason, HasSubstr("not on its current host host-0"));
}

TEST(AllocatorInstanceModeTest, MigratingInstancesSpreadAwayFromTheServicesHosts) {
  AllocatorState state = BuildOrDie(MakeHosts(6));
  ServiceModel web = MakeService("web", 3, 3);
  PlaceServiceOrDie(state, web);  // host-0, host-1, host-2
  ASSERT_TRUE(state.SetHostState("host-0", HostState::kDown).ok());
  ASSERT_TRUE(state.SetHostState("host-1", HostState::kDown).ok());
  PlacementPlan plan =
      PlaceInstancesOrDie(state, web, {{"web-0", 0, ""}, {"web-1", 1, ""}}, {"host-0", "host-1"});
  ASSERT_EQ(plan.placed.size(), 2u);
  EXPECT_EQ(plan.placed[0].allocation.host, "host-3");
  EXPECT_EQ(plan.placed[1].allocation.host, "host-4");
}

TEST(AllocatorInstanceModeTest, PendingWithReasonThenPlacedWhenCapacityAppears) {
  AllocatorState state = BuildOrDie(MakeHosts(2, {2, 4096, 100, 1000}));
  ServiceModel web = MakeService("web", 4, 1, PlacementPolicy::kSpread, {2, 4096, 10, 100});
  PlacementPlan first = PlaceServiceOrDie(state, web);
  ASSERT_EQ(first.placed.size(), 2u);
  ASSERT_EQ(first.pending.size(), 2u);
  EXPECT_EQ(first.pending[0].name, "web-2");
  EXPECT_EQ(first.pending[1].name, "web-3");
  EXPECT_THAT(first.pending[0].reason,
              AllOf(HasSubstr("no up host has 2 vCPU, 4096 MiB memory, 10 GiB disk, 100 Mbps "
                              "bandwidth free"),
                    HasSubstr("largest free: host-0 with 0 vCPU, 0 MiB memory, 90 GiB disk"),
                    HasSubstr("short of vCPU by 2, memory by 4096 MiB")));

  // A new host arrives: the pending instances are placed there (same host: only room there).
  ASSERT_TRUE(state.UpsertHost(MakeHost("host-2", {4, 8192, 100, 1000})).ok());
  PlacementPlan later = PlaceInstancesOrDie(state, web, {{"web-2", 0, ""}, {"web-3", 0, ""}});
  ASSERT_EQ(later.placed.size(), 2u);
  EXPECT_TRUE(later.pending.empty());
  for (const auto& p : later.placed) {
    EXPECT_EQ(p.allocation.host, "host-2");
    EXPECT_FALSE(p.previous.has_value());
  }

  // A host coming back up, and a release, make room as well.
  ASSERT_TRUE(state.SetHostState("host-1", HostState::kDraining).ok());
  PlacementPlan blocked = PlaceInstancesOrDie(state, web, {{"web-0", 0, ""}}, {});
  ASSERT_EQ(blocked.pending.size(), 1u);
  EXPECT_EQ(state.Find("web-0")->allocation.host, "host-0");  // keeps its old allocation
  ASSERT_TRUE(state.Release("web-2").ok());
  PlacementPlan moved = PlaceInstancesOrDie(state, web, {{"web-0", 0, ""}}, {});
  ASSERT_EQ(moved.placed.size(), 1u);
  EXPECT_EQ(moved.placed[0].allocation.host, "host-2");
}

TEST(AllocatorInstanceModeTest, RestOfTheRequestIsPlacedWhenOneDoesNotFit) {
  std::vector<HostInfo> hosts = MakeHosts(2, {2, 4096, 100, 1000});
  AllocatorState state = BuildOrDie(hosts);
  ServiceModel web = MakeService("web", 3, 1, PlacementPolicy::kPack, {1, 1024, 10, 100});
  PlacementPlan plan = PlaceInstancesOrDie(
      state, web,
      {{"web-0", 0, ""}, {"web-1", 0, ""}, {"web-2", 0, ""}, {"web-3", 0, ""}, {"web-4", 0, ""}});
  EXPECT_EQ(plan.placed.size(), 4u);
  ASSERT_EQ(plan.pending.size(), 1u);
  EXPECT_EQ(plan.pending[0].name, "web-4");
}

TEST(AllocatorInstanceModeTest, IpPolicyKeepMovesIpAndMac) {
  AllocatorState state = BuildOrDie(MakeHosts(3));
  ServiceModel web = MakeService("web", 2);
  PlaceServiceOrDie(state, web);
  Allocation before = state.Find("web-1")->allocation;
  PlacementPlan plan = PlaceInstancesOrDie(state, web, {{"web-1", 0, ""}}, {before.host});
  ASSERT_EQ(plan.placed.size(), 1u);
  EXPECT_NE(plan.placed[0].allocation.host, before.host);
  EXPECT_EQ(plan.placed[0].allocation.ip, before.ip);
  EXPECT_EQ(plan.placed[0].allocation.mac, before.mac);
}

TEST(AllocatorInstanceModeTest, IpPolicyNewAssignsNewIpAndFreesTheOld) {
  AllocatorState state = BuildOrDie(MakeHosts(3));
  ServiceModel web = MakeService("web", 2);
  web.ip_policy = IpPolicy::kNew;
  PlaceServiceOrDie(state, web);
  Allocation before = state.Find("web-0")->allocation;
  EXPECT_EQ(before.ip, "10.10.0.2");
  PlacementPlan plan = PlaceInstancesOrDie(state, web, {{"web-0", 0, ""}}, {before.host});
  ASSERT_EQ(plan.placed.size(), 1u);
  EXPECT_EQ(plan.placed[0].allocation.ip, "10.10.0.4");
  EXPECT_EQ(plan.placed[0].allocation.mac, before.mac);  // the MAC stays
  EXPECT_EQ(plan.placed[0].previous->ip, "10.10.0.2");
  // The old address is free again: the next new instance gets it.
  PlacementPlan next = PlaceInstancesOrDie(state, web, {{"web-2", 0, ""}});
  ASSERT_EQ(next.placed.size(), 1u);
  EXPECT_EQ(next.placed[0].allocation.ip, "10.10.0.2");
}

TEST(AllocatorInstanceModeTest, TargetHostThatFits) {
  AllocatorState state = BuildOrDie(MakeHosts(4));
  ServiceModel web = MakeService("web", 2);
  PlaceServiceOrDie(state, web);
  PlacementPlan plan = PlaceInstancesOrDie(state, web, {{"web-0", 0, "host-1"}});
  ASSERT_EQ(plan.placed.size(), 1u);
  EXPECT_EQ(plan.placed[0].allocation.host, "host-1");  // overrides spreading
}

TEST(AllocatorInstanceModeTest, TargetHostErrorsNameTheHostAndTheMissingResource) {
  std::vector<HostInfo> hosts = MakeHosts(4, {4, 8192, 100, 1000});
  hosts[2].capacity = {4, 1024, 100, 1000};
  hosts[3].state = HostState::kDraining;
  AllocatorState state = BuildOrDie(hosts);
  ServiceModel web = MakeService("web", 1, 1, PlacementPolicy::kSpread, {2, 2048, 10, 100});
  PlaceServiceOrDie(state, web);  // web-0 on host-0
  const auto before = *state.Find("web-0");
  const auto free1 = *state.FreeOn("host-1");

  auto small = state.PlaceInstances(web, {{"web-0", 0, "host-2"}});
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(small.status().message(),
              AllOf(HasSubstr("target host host-2"), HasSubstr("short of memory by 1024 MiB")));

  auto draining = state.PlaceInstances(web, {{"web-0", 0, "host-3"}});
  EXPECT_EQ(draining.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(draining.status().message(), AllOf(HasSubstr("host-3"), HasSubstr("draining")));

  auto unknown = state.PlaceInstances(web, {{"web-0", 0, "host-9"}});
  EXPECT_EQ(unknown.status().code(), Code::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("host-9"));

  auto excluded = state.PlaceInstances(web, {{"web-0", 0, "host-1"}}, {"host-1"});
  EXPECT_EQ(excluded.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(excluded.status().message(), HasSubstr("excluded"));

  auto current = state.PlaceInstances(web, {{"web-0", 0, "host-0"}});
  EXPECT_EQ(current.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(current.status().message(), HasSubstr("already runs on target host host-0"));

  // Two targeted instances that fit one by one but not together.
  auto together = state.PlaceInstances(
      web, {{"web-1", 0, "host-1"}, {"web-2", 0, "host-1"}, {"web-3", 0, "host-1"}});
  EXPECT_EQ(together.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(together.status().message(), HasSubstr("short of vCPU by 2"));

  // Nothing changed.
  EXPECT_EQ(*state.Find("web-0"), before);
  EXPECT_EQ(*state.FreeOn("host-1"), free1);
  EXPECT_EQ(state.instance_count(), 1u);
  EXPECT_TRUE(state.CheckInvariants().ok());
}

TEST(AllocatorInstanceModeTest, TargetedInstancesGoFirst) {
  AllocatorState state = BuildOrDie(MakeHosts(1, {1, 16384, 100, 1000}));
  ASSERT_TRUE(state.UpsertHost(MakeHost("host-1", {1, 16384, 100, 1000})).ok());
  ServiceModel web = MakeService("web", 2, 1, PlacementPolicy::kPack);
  // web-0 would take host-0 by first fit, but web-1 asked for it.
  PlacementPlan plan = PlaceInstancesOrDie(state, web, {{"web-0", 0, ""}, {"web-1", 0, "host-0"}});
  ASSERT_EQ(plan.placed.size(), 2u);
  EXPECT_EQ(plan.placed[0].name, "web-0");
  EXPECT_EQ(plan.placed[0].allocation.host, "host-1");
  EXPECT_EQ(plan.placed[1].allocation.host, "host-0");
}

// ----------------------------------------------------------------------------------------------
// Addresses.

TEST(AllocatorAddressTest, SkipsNetworkGatewayAndBroadcastAndAddressesInUse) {
  AllocatorState state = BuildOrDie(MakeHosts(4), {}, {{"10.1.0.3"}, {"52:54:00:aa:bb:cc"}});
  ServiceModel web =
      MakeService("web", 4, 1, PlacementPolicy::kSpread, {1, 1, 1, 1}, "10.1.0.0/29");
  PlacementPlan plan = PlaceServiceOrDie(state, web);
  ASSERT_EQ(plan.placed.size(), 4u);
  std::vector<std::string> ips;
  for (const auto& p : plan.placed) ips.push_back(p.allocation.ip);
  EXPECT_EQ(ips, (std::vector<std::string>{"10.1.0.2", "10.1.0.4", "10.1.0.5", "10.1.0.6"}));
  for (const auto& p : plan.placed) {
    EXPECT_TRUE(IsValidMac(p.allocation.mac)) << p.allocation.mac;
    EXPECT_EQ(p.allocation.mac.substr(0, 9), "52:54:00:");
    EXPECT_NE(p.allocation.mac, "52:54:00:aa:bb:cc");
  }
  // The /29 is used up (.7 is the broadcast address): the next instance waits.
  PlacementPlan more = PlaceInstancesOrDie(state, web, {{"web-4", 0, ""}});
  ASSERT_EQ(more.pending.size(), 1u);
  EXPECT_THAT(more.pending[0].reason, AllOf(HasSubstr("10.1.0.0/29"), HasSubstr("no free address"),
                                            HasSubstr("5 instance addresses")));
  EXPECT_EQ(state.FreeOn("host-0")->vcpus, 7);  // no host was taken for it
}

TEST(AllocatorAddressTest, SmallestSubnetHasOneAddress) {
  AllocatorState state = BuildOrDie(MakeHosts(2));
  ServiceModel web =
      MakeService("web", 2, 1, PlacementPolicy::kSpread, {1, 1, 1, 1}, "192.168.7.4/30");
  PlacementPlan plan = PlaceServiceOrDie(state, web);
  ASSERT_EQ(plan.placed.size(), 1u);
  EXPECT_EQ(plan.placed[0].allocation.ip, "192.168.7.6");
  EXPECT_EQ(plan.pending.size(), 1u);
}

TEST(AllocatorAddressTest, NoSubnetMeansNoIp) {
  AllocatorState state = BuildOrDie(MakeHosts(2));
  PlacementPlan plan = PlaceServiceOrDie(
      state, MakeService("web", 2, 1, PlacementPolicy::kSpread, {1, 1, 1, 1}, ""));
  ASSERT_EQ(plan.placed.size(), 2u);
  EXPECT_EQ(plan.placed[0].allocation.ip, "");
  EXPECT_NE(plan.placed[0].allocation.mac, plan.placed[1].allocation.mac);
}

TEST(AllocatorAddressTest, ExistingAddressesAreNeverReused) {
  std::vector<ExistingAllocation> existing;
  for (int i = 0; i < 5; ++i) {
    existing.push_back({"old-" + std::to_string(i),
                        "old",
                        0,
                        {"host-0", {1, 1, 1, 1}, "10.10.0." + std::to_string(2 + 2 * i), ""}});
  }
  AllocatorState state = BuildOrDie(MakeHosts(2), existing);
  PlacementPlan plan = PlaceServiceOrDie(state, MakeService("web", 4));
  std::vector<std::string> ips;
  for (const auto& p : plan.placed) ips.push_back(p.allocation.ip);
  EXPECT_EQ(ips, (std::vector<std::string>{"10.10.0.3", "10.10.0.5", "10.10.0.7", "10.10.0.9"}));
  // Releasing frees the address for the next instance.
  ASSERT_TRUE(state.Release("old-0").ok());
  PlacementPlan next = PlaceInstancesOrDie(state, MakeService("web", 4), {{"web-9", 0, ""}});
  EXPECT_EQ(next.placed[0].allocation.ip, "10.10.0.2");
}

// ----------------------------------------------------------------------------------------------
// Determinism and the one-shot functions.

TEST(AllocatorDeterminismTest, SameInputSamePlan) {
  std::vector<HostInfo> hosts = MakeHosts(20);
  for (int i = 0; i < 20; ++i) hosts[i].other_usage = {i % 5, 512 * (i % 7), 3 * (i % 4), 0};
  std::vector<ExistingAllocation> existing = {
      {"db-0", "db", 0, {"host-3", {1, 1024, 1, 1}, "10.10.0.2", "52:54:00:00:00:07"}}};
  ServiceModel web = MakeService("web", 30, 3);
  auto a = PlaceService(hosts, existing, web);
  auto b = PlaceService(hosts, existing, web);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->placed.size(), 30u);
  for (size_t i = 0; i < a->placed.size(); ++i) {
    EXPECT_EQ(a->placed[i].name, b->placed[i].name);
    EXPECT_EQ(a->placed[i].allocation, b->placed[i].allocation);
  }
  std::vector<InstanceRequest> requests = {{"web-0", 0, ""}, {"web-1", 1, ""}};
  auto c = PlaceInstances(hosts, existing, web, requests, {"host-0"});
  auto d = PlaceInstances(hosts, existing, web, requests, {"host-0"});
  ASSERT_TRUE(c.ok() && d.ok());
  ASSERT_EQ(c->placed.size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(c->placed[i].allocation, d->placed[i].allocation);
  for (const auto& p : c->placed) EXPECT_NE(p.allocation.host, "host-0");
}

TEST(AllocatorStateTest, HostsAddedLaterAreIndexed) {
  AllocatorState state = BuildOrDie({});
  PlacementPlan none = PlaceServiceOrDie(state, MakeService("web", 1));
  EXPECT_EQ(none.pending.size(), 1u);
  ASSERT_TRUE(state.Release("web-0").code() == Code::kNotFound);
  for (int i = 0; i < 37; ++i) {
    ASSERT_TRUE(state.UpsertHost(MakeHost("h" + std::to_string(i))).ok());
  }
  ServiceModel web = MakeService("web", 37);
  PlacementPlan plan = PlaceInstancesOrDie(state, web, [] {
    std::vector<InstanceRequest> r;
    for (int i = 0; i < 37; ++i) r.push_back({"web-" + std::to_string(i), 0, ""});
    return r;
  }());
  EXPECT_EQ(plan.placed.size(), 37u);
  EXPECT_EQ(CountPerHost(plan).size(), 37u);
  EXPECT_EQ(state.host_count(), 37u);
}

// ----------------------------------------------------------------------------------------------
// Randomized: every operation is checked against a brute-force reference, and the invariants
// (capacity never exceeded, IP and MAC unique) hold after each one.

class Reference {
 public:
  struct Host {
    std::string name;
    HostState state;
    Resources capacity, other, allocated;
  };
  struct Inst {
    std::string service;
    int64_t ud;
    size_t host;
    Resources res;
    std::string ip, mac;
  };

  std::vector<Host> hosts;
  std::map<std::string, Inst> instances;
  std::set<std::string> reserved_ips;

  static std::array<int64_t, 4> V(const Resources& r) {
    return {r.vcpus, r.memory_mib, r.disk_gib, r.bandwidth_mbps};
  }
  std::array<int64_t, 4> Free(size_t h) const {
    auto c = V(hosts[h].capacity), o = V(hosts[h].other), a = V(hosts[h].allocated);
    return {c[0] - o[0] - a[0], c[1] - o[1] - a[1], c[2] - o[2] - a[2], c[3] - o[3] - a[3]};
  }
  bool Fits(size_t h, const Resources& need) const {
    auto f = Free(h);
    auto n = V(need);
    for (int d = 0; d < 4; ++d) {
      if (f[d] < n[d]) return false;
    }
    return true;
  }
  int64_t Score(size_t h) const {
    auto f = Free(h);
    auto c = V(hosts[h].capacity);
    int64_t s = 0;
    for (int d = 0; d < 4; ++d) {
      if (c[d] > 0) s += f[d] * (int64_t{1} << 20) / c[d];
    }
    return s;
  }
  size_t Index(const std::string& name) const {
    for (size_t i = 0; i < hosts.size(); ++i) {
      if (hosts[i].name == name) return i;
    }
    return SIZE_MAX;
  }
  // The host the allocator must choose, or SIZE_MAX.
  size_t Choose(const ServiceModel& s, int64_t ud, size_t current,
                const std::set<size_t>& excluded) const {
    size_t best = SIZE_MAX;
    std::tuple<int, int, int64_t, size_t> best_key;
    for (size_t h = 0; h < hosts.size(); ++h) {
      if (hosts[h].state != HostState::kUp || excluded.count(h) || h == current) continue;
      if (!Fits(h, s.flavor)) continue;
      int count = 0, same_ud = 0;
      for (const auto& [n, i] : instances) {
        if (i.service == s.name && i.host == h) {
          ++count;
          same_ud += i.ud == ud;
        }
      }
      std::tuple<int, int, int64_t, size_t> key =
          s.placement == PlacementPolicy::kPack ? std::make_tuple(0, 0, int64_t{0}, h)
                                                : std::make_tuple(count, same_ud, -Score(h), h);
      if (best == SIZE_MAX || key < best_key) {
        best = h;
        best_key = key;
      }
    }
    return best;
  }
  static uint32_t Ip(const std::string& s) {
    unsigned a, b, c, d;
    sscanf(s.c_str(), "%u.%u.%u.%u", &a, &b, &c, &d);
    return (a << 24) | (b << 16) | (c << 8) | d;
  }
  // The lowest free instance address of the subnet, or "".
  std::string NextIp(const std::string& subnet) const {
    size_t slash = subnet.find('/');
    uint32_t net = Ip(subnet.substr(0, slash));
    int prefix = std::stoi(subnet.substr(slash + 1));
    uint32_t size = uint32_t{1} << (32 - prefix);
    std::set<uint32_t> used;
    for (const auto& ip : reserved_ips) used.insert(Ip(ip));
    for (const auto& [n, i] : instances) {
      if (!i.ip.empty()) used.insert(Ip(i.ip));
    }
    for (uint32_t a = net + 2; a <= net + size - 2; ++a) {
      if (!used.count(a)) {
        return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
               std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
      }
    }
    return "";
  }
  void Add(const std::string& name, Inst inst) {
    Resources& a = hosts[inst.host].allocated;
    a.vcpus += inst.res.vcpus;
    a.memory_mib += inst.res.memory_mib;
    a.disk_gib += inst.res.disk_gib;
    a.bandwidth_mbps += inst.res.bandwidth_mbps;
    instances[name] = std::move(inst);
  }
  void Remove(const std::string& name) {
    const Inst& inst = instances.at(name);
    Resources& a = hosts[inst.host].allocated;
    a.vcpus -= inst.res.vcpus;
    a.memory_mib -= inst.res.memory_mib;
    a.disk_gib -= inst.res.disk_gib;
    a.bandwidth_mbps -= inst.res.bandwidth_mbps;
    instances.erase(name);
  }
};

void ExpectMatchesReference(const AllocatorState& state, const Reference& ref) {
  ASSERT_TRUE(state.CheckInvariants().ok()) << state.CheckInvariants().ToString();
  ASSERT_EQ(state.instance_count(), ref.instances.size());
  std::set<std::string> ips(ref.reserved_ips.begin(), ref.reserved_ips.end());
  std::set<std::string> macs;
  for (const auto& [name, inst] : ref.instances) {
    auto found = state.Find(name);
    ASSERT_TRUE(found.has_value()) << name;
    EXPECT_EQ(found->allocation.host, ref.hosts[inst.host].name) << name;
    EXPECT_EQ(found->allocation.ip, inst.ip) << name;
    EXPECT_EQ(found->allocation.mac, inst.mac) << name;
    if (!inst.ip.empty()) {
      ASSERT_TRUE(ips.insert(inst.ip).second) << "IP twice: " << inst.ip;
    }
    ASSERT_TRUE(macs.insert(inst.mac).second) << "MAC twice: " << inst.mac;
  }
  for (size_t h = 0; h < ref.hosts.size(); ++h) {
    auto free = Reference::V(*state.FreeOn(ref.hosts[h].name));
    ASSERT_EQ(free, ref.Free(h)) << ref.hosts[h].name;
    for (int d = 0; d < 4; ++d) ASSERT_GE(free[d], 0) << ref.hosts[h].name << " dim " << d;
  }
}

struct RandomizedCounts {
  int placed = 0, pending = 0, migrated = 0, target_errors = 0, refused_full = 0;
};

void RunRandomized(uint64_t seed, int max_hosts, int64_t max_instances, RandomizedCounts& counts) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  auto random_state = [&] {
    int64_t r = uniform(0, 9);
    return r < 7 ? HostState::kUp : static_cast<HostState>(1 + r - 7);  // suspect, down, draining
  };
  auto random_capacity = [&] {
    return Resources{uniform(1, 16), 1024 * uniform(1, 32), uniform(0, 200), 100 * uniform(0, 20)};
  };

  Reference ref;
  std::vector<HostInfo> hosts;
  const int n_hosts = static_cast<int>(uniform(1, max_hosts));
  for (int i = 0; i < n_hosts; ++i) {
    HostInfo h{"h" + std::to_string(i), random_state(), random_capacity(), {}};
    if (uniform(0, 3) == 0) h.other_usage = {1, 512, 0, 0};
    if (h.other_usage.vcpus > h.capacity.vcpus ||
        h.other_usage.memory_mib > h.capacity.memory_mib) {
      h.other_usage = {};
    }
    hosts.push_back(h);
    ref.hosts.push_back({h.name, h.state, h.capacity, h.other_usage, {}});
  }
  AddressesInUse in_use;
  in_use.ips = {"10.0.0.3", "10.2.0.2"};
  ref.reserved_ips = in_use.ips;
  auto built = AllocatorState::Build(hosts, {}, in_use);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  AllocatorState state = std::move(built).value();

  const char* subnets[] = {"10.0.0.0/28", "10.0.0.0/24", "10.1.0.0/29", "", "10.2.0.0/27"};
  std::vector<ServiceModel> services;
  for (int i = 0; i < 5; ++i) {
    ServiceModel s;
    s.name = "svc" + std::to_string(i);
    s.instances = uniform(1, max_instances);
    s.update_domains = uniform(1, 4);
    // Half of the services share one flavor: many ties between equally empty hosts.
    s.flavor = uniform(0, 1) ? Resources{1, 1024, 10, 100}
                             : Resources{uniform(1, 4), 512 * uniform(1, 16), uniform(0, 50),
                                         50 * uniform(0, 10)};
    s.subnet = subnets[i];
    s.ip_policy = uniform(0, 1) ? IpPolicy::kNew : IpPolicy::kKeep;
    s.placement = uniform(0, 2) == 0 ? PlacementPolicy::kPack : PlacementPolicy::kSpread;
    services.push_back(s);
  }

  // Applies a plan's outcome for `requests` to the reference, checking each choice.
  auto check_plan = [&](const ServiceModel& s, const std::vector<InstanceRequest>& requests,
                        const std::set<size_t>& excluded, const PlacementPlan& plan) {
    std::map<std::string, const PlacedInstance*> placed;
    std::map<std::string, const PendingInstance*> pending;
    for (const auto& p : plan.placed) placed[p.name] = &p;
    for (const auto& p : plan.pending) pending[p.name] = &p;
    ASSERT_EQ(placed.size() + pending.size(), requests.size());
    std::vector<std::string> ips_to_free;
    // The allocator's order: targeted first, then by update domain, then request order.
    std::vector<InstanceRequest> ordered = requests;
    const bool by_ud = s.placement == PlacementPolicy::kSpread;
    std::stable_sort(ordered.begin(), ordered.end(), [&](const auto& a, const auto& b) {
      return std::make_pair(a.target_host.empty(), by_ud ? a.update_domain : 0) <
             std::make_pair(b.target_host.empty(), by_ud ? b.update_domain : 0);
    });
    {
      for (const InstanceRequest& r : ordered) {
        auto cur = ref.instances.find(r.name);
        const bool migrating = cur != ref.instances.end();
        const size_t current = migrating ? cur->second.host : SIZE_MAX;
        const bool new_ip = !s.subnet.empty() &&
                            (!migrating || cur->second.ip.empty() || s.ip_policy == IpPolicy::kNew);
        std::string ip = new_ip ? ref.NextIp(s.subnet) : (migrating ? cur->second.ip : "");
        size_t host = r.target_host.empty() ? ref.Choose(s, r.update_domain, current, excluded)
                                            : ref.Index(r.target_host);
        if ((new_ip && ip.empty()) || host == SIZE_MAX) {
          ASSERT_TRUE(pending.count(r.name)) << r.name << " should wait";
          EXPECT_FALSE(pending[r.name]->reason.empty());
          ++counts.pending;
          continue;
        }
        ASSERT_TRUE(placed.count(r.name))
            << r.name << " should be placed on " << ref.hosts[host].name << ": "
            << pending[r.name]->reason;
        const PlacedInstance& p = *placed[r.name];
        ASSERT_EQ(p.allocation.host, ref.hosts[host].name) << r.name;
        EXPECT_EQ(p.allocation.ip, ip) << r.name;
        EXPECT_EQ(p.allocation.resources, s.flavor);
        EXPECT_TRUE(IsValidMac(p.allocation.mac));
        Reference::Inst inst{s.name,   r.update_domain, host,
                             s.flavor, p.allocation.ip, p.allocation.mac};
        ++counts.placed;
        if (migrating) {
          ++counts.migrated;
          ASSERT_TRUE(p.previous.has_value());
          EXPECT_EQ(p.previous->host, ref.hosts[current].name);
          EXPECT_EQ(p.allocation.mac, cur->second.mac);
          if (new_ip && !cur->second.ip.empty()) ips_to_free.push_back(cur->second.ip);
          // The old IP stays taken until the call ends.
          if (new_ip && !cur->second.ip.empty()) ref.reserved_ips.insert(cur->second.ip);
          ref.Remove(r.name);
        } else {
          EXPECT_FALSE(p.previous.has_value());
        }
        ref.Add(r.name, inst);
      }
    }
    for (const auto& ip : ips_to_free) ref.reserved_ips.erase(ip);
  };

  for (int step = 0; step < 150; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const int64_t op = uniform(0, 9);
    ServiceModel& s = services[uniform(0, services.size() - 1)];
    bool has_any = false;
    for (const auto& [n, i] : ref.instances) has_any |= i.service == s.name;
    if (op <= 1) {
      auto plan = state.PlaceService(s);
      if (has_any) {
        ASSERT_EQ(plan.status().code(), Code::kFailedPrecondition);
        ++counts.refused_full;
      } else {
        ASSERT_TRUE(plan.ok()) << plan.status().ToString();
        std::vector<InstanceRequest> requests;
        for (int64_t i = 0; i < s.instances; ++i) {
          requests.push_back({s.name + "-" + std::to_string(i), i % s.update_domains, ""});
        }
        check_plan(s, requests, {}, *plan);
      }
    } else if (op <= 5) {
      // Instance mode: some of the service's instances (placed or not), some hosts excluded,
      // sometimes one target host.
      std::vector<InstanceRequest> requests;
      for (int64_t i = 0; i < s.instances + 3; ++i) {
        if (uniform(0, 2) == 0) {
          requests.push_back({s.name + "-" + std::to_string(i), i % s.update_domains, ""});
        }
      }
      std::set<size_t> excluded;
      std::vector<std::string> excluded_names;
      for (size_t h = 0; h < ref.hosts.size(); ++h) {
        if (uniform(0, 5) == 0) {
          excluded.insert(h);
          excluded_names.push_back(ref.hosts[h].name);
        }
      }
      bool target_ok = true;
      if (!requests.empty() && uniform(0, 3) == 0) {
        InstanceRequest& r = requests[uniform(0, requests.size() - 1)];
        size_t t = uniform(0, ref.hosts.size() - 1);
        r.target_host = ref.hosts[t].name;
        auto cur = ref.instances.find(r.name);
        target_ok = ref.hosts[t].state == HostState::kUp && !excluded.count(t) &&
                    (cur == ref.instances.end() || cur->second.host != t) && ref.Fits(t, s.flavor);
      }
      auto plan = state.PlaceInstances(s, requests, excluded_names);
      if (!target_ok) {
        ASSERT_FALSE(plan.ok());
        ASSERT_EQ(plan.status().code(), Code::kFailedPrecondition) << plan.status().ToString();
        ++counts.target_errors;
      } else {
        ASSERT_TRUE(plan.ok()) << plan.status().ToString();
        check_plan(s, requests, excluded, *plan);
      }
    } else if (op <= 7) {
      if (!ref.instances.empty()) {
        auto it = ref.instances.begin();
        std::advance(it, uniform(0, ref.instances.size() - 1));
        std::string name = it->first;
        ASSERT_TRUE(state.Release(name).ok());
        ref.Remove(name);
      }
    } else if (op == 8) {
      size_t h = uniform(0, ref.hosts.size() - 1);
      HostState st = random_state();
      ASSERT_TRUE(state.SetHostState(ref.hosts[h].name, st).ok());
      ref.hosts[h].state = st;
    } else {
      // A new host, or more capacity on a known one.
      if (uniform(0, 1) == 0) {
        HostInfo h{"n" + std::to_string(step), random_state(), random_capacity(), {}};
        ASSERT_TRUE(state.UpsertHost(h).ok());
        ref.hosts.push_back({h.name, h.state, h.capacity, {}, {}});
      } else {
        size_t h = uniform(0, ref.hosts.size() - 1);
        Reference::Host& rh = ref.hosts[h];
        rh.capacity.vcpus += uniform(0, 4);
        rh.capacity.memory_mib += 1024 * uniform(0, 4);
        ASSERT_TRUE(state.UpsertHost({rh.name, rh.state, rh.capacity, rh.other}).ok());
      }
    }
    ExpectMatchesReference(state, ref);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(AllocatorRandomizedTest, MatchesReferenceAndKeepsInvariants) {
  RandomizedCounts counts;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    RunRandomized(seed, /*max_hosts=*/24, /*max_instances=*/20, counts);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // More instances than hosts: the fallback ranking and the masking of the service's hosts.
  for (uint64_t seed = 100; seed < 106; ++seed) {
    RunRandomized(seed, /*max_hosts=*/80, /*max_instances=*/200, counts);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // The runs cover every outcome.
  EXPECT_GT(counts.placed, 1000);
  EXPECT_GT(counts.pending, 100);
  EXPECT_GT(counts.migrated, 300);
  EXPECT_GT(counts.target_errors, 20);
  EXPECT_GT(counts.refused_full, 20);
  std::printf("randomized: %d placed (%d migrations), %d pending, %d target errors\n",
              counts.placed, counts.migrated, counts.pending, counts.target_errors);
}

// Larger cluster: exercises the adaptive masking of the service's hosts and the failure cache.
TEST(AllocatorRandomizedTest, LargeClusterKeepsInvariants) {
  std::mt19937_64 rng(42);
  std::vector<HostInfo> hosts;
  for (int i = 0; i < 500; ++i) {
    hosts.push_back(
        MakeHost("h" + std::to_string(i), {8 + static_cast<int64_t>(rng() % 8), 16384, 200, 2000}));
  }
  AllocatorState state = BuildOrDie(hosts);
  std::vector<ServiceModel> services;
  for (int s = 0; s < 10; ++s) {
    services.push_back(MakeService("s" + std::to_string(s), 300, 5, PlacementPolicy::kSpread,
                                   {1 + s % 3, 1024, 5, 50},
                                   "10." + std::to_string(s) + ".0.0/22"));
    PlacementPlan plan = PlaceServiceOrDie(state, services.back());
    ASSERT_EQ(plan.placed.size() + plan.pending.size(), 300u);
  }
  // A rack of 50 hosts fails: move every instance off it.
  std::vector<std::string> rack;
  for (int i = 0; i < 50; ++i) {
    rack.push_back("h" + std::to_string(i));
    ASSERT_TRUE(state.SetHostState(rack.back(), HostState::kDown).ok());
  }
  for (const ServiceModel& s : services) {
    std::vector<InstanceRequest> requests;
    for (int i = 0; i < 300; ++i) {
      auto f = state.Find(s.name + "-" + std::to_string(i));
      if (f && f->allocation.host.size() <= 3 && std::stoi(f->allocation.host.substr(1)) < 50) {
        requests.push_back({f->instance, f->update_domain, ""});
      }
    }
    PlacementPlan plan = PlaceInstancesOrDie(state, s, requests, rack);
    for (const auto& p : plan.placed) {
      EXPECT_FALSE(std::count(rack.begin(), rack.end(), p.allocation.host)) << p.allocation.host;
    }
  }
  EXPECT_TRUE(state.CheckInvariants().ok());
}

}  // namespace
}  // namespace regen
