#include "agent/reconciler.h"

#include <gtest/gtest.h>

namespace regen {
namespace {

InstanceSpec Spec(const std::string& name, int64_t generation = 1) {
  InstanceSpec s;
  s.name = name;
  s.service = "web";
  s.version = "v1";
  s.generation = generation;
  return s;
}

DomainInfo Dom(const std::string& name, DomainState state, int64_t generation = 1,
               bool managed = true, const std::string& reason = "booted") {
  DomainInfo d;
  d.name = name;
  d.state = state;
  d.reason = reason;
  d.metadata.managed = managed;
  d.metadata.instance = name;
  d.metadata.service = "web";
  d.metadata.generation = generation;
  return d;
}

using Kind = ReconcileAction::Kind;

TEST(ReconcilerTest, NothingToDoWhenDesiredRuns) {
  auto plan = PlanReconcile({Spec("web-0")}, {Dom("web-0", DomainState::kRunning)}, {});
  EXPECT_TRUE(plan.empty());
}

TEST(ReconcilerTest, CreatesMissingAndDestroysUndesired) {
  auto plan =
      PlanReconcile({Spec("web-1"), Spec("web-0")},
                    {Dom("web-0", DomainState::kRunning), Dom("old-3", DomainState::kRunning)}, {});
  ASSERT_EQ(plan.actions.size(), 2u);
  EXPECT_EQ(plan.actions[0].kind, Kind::kDestroy);  // destroys come first
  EXPECT_EQ(plan.actions[0].name, "old-3");
  EXPECT_EQ(plan.actions[1].kind, Kind::kCreate);
  EXPECT_EQ(plan.actions[1].name, "web-1");
  EXPECT_EQ(plan.actions[1].spec.name, "web-1");
}

TEST(ReconcilerTest, ForeignDomainsAreNeverTouched) {
  auto plan = PlanReconcile({}, {Dom("mydb", DomainState::kRunning, 0, /*managed=*/false)}, {});
  EXPECT_TRUE(plan.actions.empty());
  // Same name as a desired instance: a conflict, reported, not destroyed.
  plan = PlanReconcile({Spec("web-0")}, {Dom("web-0", DomainState::kShutoff, 0, false)},
                       {.restart_failed_locally = true});
  EXPECT_TRUE(plan.actions.empty());
  ASSERT_EQ(plan.conflicts.size(), 1u);
  EXPECT_NE(plan.conflicts[0].message.find("not created by Regen"), std::string::npos);
  EXPECT_TRUE(plan.failures.empty());
}

TEST(ReconcilerTest, CrashedDomainIsAFailure) {
  auto actual = std::vector<DomainInfo>{Dom("web-0", DomainState::kCrashed, 1, true, "crashed")};
  auto plan = PlanReconcile({Spec("web-0")}, actual, {.restart_failed_locally = false});
  ASSERT_EQ(plan.failures.size(), 1u);
  EXPECT_EQ(plan.failures[0].instance, "web-0");
  EXPECT_EQ(plan.failures[0].state, DomainState::kCrashed);
  EXPECT_EQ(plan.failures[0].reason, "crashed");
  EXPECT_TRUE(plan.actions.empty()) << "with a controller, the controller heals elsewhere";

  plan = PlanReconcile({Spec("web-0")}, actual, {.restart_failed_locally = true});
  ASSERT_EQ(plan.actions.size(), 1u);
  EXPECT_EQ(plan.actions[0].kind, Kind::kRecreate);
  EXPECT_EQ(plan.actions[0].spec.generation, 1);
}

TEST(ReconcilerTest, ShutoffAndPausedStates) {
  auto plan = PlanReconcile(
      {Spec("a-0"), Spec("a-1")},
      {Dom("a-0", DomainState::kShutoff, 1, true, "shutdown"), Dom("a-1", DomainState::kPaused)},
      {.restart_failed_locally = true});
  ASSERT_EQ(plan.failures.size(), 1u);
  EXPECT_EQ(plan.failures[0].instance, "a-0");
  ASSERT_EQ(plan.actions.size(), 1u);
  EXPECT_EQ(plan.actions[0].name, "a-0");
}

TEST(ReconcilerTest, GenerationChangeRecreates) {
  auto plan = PlanReconcile({Spec("web-0", 3)}, {Dom("web-0", DomainState::kRunning, 2)}, {});
  ASSERT_EQ(plan.actions.size(), 1u);
  EXPECT_EQ(plan.actions[0].kind, Kind::kRecreate);
  EXPECT_EQ(plan.actions[0].spec.generation, 3);
  EXPECT_EQ(plan.actions[0].reason, "generation 2 -> 3");
  EXPECT_TRUE(plan.failures.empty());
}

TEST(ReconcilerTest, ActionOrderIsDestroyRecreateCreate) {
  auto plan =
      PlanReconcile({Spec("c-0"), Spec("b-0", 2), Spec("a-0")},
                    {Dom("z-0", DomainState::kRunning), Dom("b-0", DomainState::kRunning, 1),
                     Dom("y-0", DomainState::kShutoff)},
                    {});
  std::vector<std::pair<Kind, std::string>> got;
  for (const auto& a : plan.actions) got.emplace_back(a.kind, a.name);
  std::vector<std::pair<Kind, std::string>> want = {{Kind::kDestroy, "y-0"},
                                                    {Kind::kDestroy, "z-0"},
                                                    {Kind::kRecreate, "b-0"},
                                                    {Kind::kCreate, "a-0"},
                                                    {Kind::kCreate, "c-0"}};
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace regen
