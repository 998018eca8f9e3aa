// Tests of the allocator's host index (controller/host_index.h): free capacity, eligibility,
// masks, first-fit and most-free searches, and growth past the tree's size.
#include "controller/host_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace regen {
namespace {

using Vec = HostIndex::Vec;

HostIndex MakeIndex(const std::vector<Resources>& capacities) {
  HostIndex index;
  for (size_t i = 0; i < capacities.size(); ++i) {
    index.Append({"host-" + std::to_string(i), HostState::kUp, capacities[i], {}});
  }
  index.BuildIndex();
  return index;
}

int NoReject(HostIndex& index, const Vec& need, int32_t current = -1) {
  int rejected = 0;
  return index.SearchMostFree(need, current, nullptr, &rejected);
}

TEST(HostIndexTest, FreeIsCapacityMinusOtherUsageMinusAllocations) {
  HostIndex index;
  index.Append({"a", HostState::kUp, {8, 16384, 100, 1000}, {1, 1024, 0, 0}});
  index.BuildIndex();
  index.AddAllocated(0, {2, 2048, 10, 100});
  EXPECT_EQ(index.FreeVec(0), (Vec{5, 13312, 90, 900}));
  index.RemoveAllocated(0, {2, 2048, 10, 100});
  EXPECT_EQ(index.FreeVec(0), (Vec{7, 15360, 100, 1000}));
  EXPECT_EQ(index.Find("a"), 0);
  EXPECT_EQ(index.Find("b"), -1);
  EXPECT_TRUE(index.CheckIndex().ok());
}

TEST(HostIndexTest, FirstFitTakesTheLeftmostFittingUpHost) {
  HostIndex index = MakeIndex({{1, 1024, 10, 10}, {4, 4096, 10, 10}, {8, 8192, 10, 10}});
  EXPECT_EQ(index.SearchFirstFit({2, 2048, 0, 0}, -1), 1);
  EXPECT_EQ(index.SearchFirstFit({2, 2048, 0, 0}, 1), 2);  // not its current host
  index.SetState(1, HostState::kDown);
  EXPECT_EQ(index.SearchFirstFit({2, 2048, 0, 0}, -1), 2);
  EXPECT_EQ(index.SearchFirstFit({16, 2048, 0, 0}, -1), -1);
  EXPECT_TRUE(index.CheckIndex().ok());
}

TEST(HostIndexTest, MostFreeTakesTheEmptiestAndSkipsRejectedHosts) {
  HostIndex index = MakeIndex({{8, 8192, 10, 10}, {8, 8192, 10, 10}, {8, 8192, 10, 10}});
  index.AddAllocated(0, {4, 4096, 5, 5});
  index.AddAllocated(2, {1, 1024, 1, 1});
  EXPECT_EQ(NoReject(index, {1, 1, 0, 0}), 1);
  int rejected = 0;
  EXPECT_EQ(index.SearchMostFree(
                {1, 1, 0, 0}, -1, [](int32_t h) { return h == 1; }, &rejected),
            2);
  EXPECT_EQ(rejected, 1);
  EXPECT_EQ(NoReject(index, {1, 1, 0, 0}, /*current=*/1), 2);
}

TEST(HostIndexTest, MasksHideHostsUntilCleared) {
  HostIndex index = MakeIndex({{8, 8192, 10, 10}, {8, 8192, 10, 10}});
  index.SetMask(0, HostIndex::kMaskExcluded, true);
  EXPECT_FALSE(index.Eligible(0));
  EXPECT_EQ(index.SearchFirstFit({1, 1, 0, 0}, -1), 1);
  index.SetMask(1, HostIndex::kMaskService, true);
  EXPECT_TRUE(index.Eligible(1));  // the service mask does not make a host ineligible
  EXPECT_EQ(index.SearchFirstFit({1, 1, 0, 0}, -1), -1);
  index.SetMask(0, HostIndex::kMaskExcluded | HostIndex::kMaskService, false);
  index.SetMask(1, HostIndex::kMaskExcluded | HostIndex::kMaskService, false);
  EXPECT_EQ(index.SearchFirstFit({1, 1, 0, 0}, -1), 0);
  EXPECT_TRUE(index.CheckIndex().ok());
}

TEST(HostIndexTest, AppendAfterBuildGrowsTheTree) {
  HostIndex index = MakeIndex({{1, 1, 0, 0}});
  for (int i = 1; i < 9; ++i)
    index.Append({"h" + std::to_string(i), HostState::kUp, {i, i, 0, 0}, {}});
  EXPECT_EQ(index.size(), 9u);
  EXPECT_EQ(index.SearchFirstFit({8, 8, 0, 0}, -1), 8);
  index.Update(3, HostState::kUp, {20, 20, 0, 0}, {});
  EXPECT_EQ(index.SearchFirstFit({8, 8, 0, 0}, -1), 3);
  EXPECT_TRUE(index.CheckIndex().ok());
}

TEST(HostIndexTest, DescribeShortageNamesEveryShortDimension) {
  EXPECT_EQ(HostIndex::DescribeShortage({1, 1024, 10, 10}, {2, 3072, 10, 10}),
            "short of vCPU by 1, memory by 2048 MiB");
  EXPECT_EQ(HostIndex::DescribeShortage({1, 1, 1, 1}, {1, 1, 1, 1}), "");
}

TEST(HostIndexTest, HostStateNamesRoundTrip) {
  for (HostState s : {HostState::kUp, HostState::kSuspect, HostState::kDown, HostState::kDraining,
                      HostState::kCordoned}) {
    EXPECT_EQ(*ParseHostState(HostStateName(s)), s);
  }
  EXPECT_THAT(ParseHostState("gone").status().message(),
              ::testing::HasSubstr("use up, suspect, down, draining or cordoned"));
}

}  // namespace
}  // namespace regen
