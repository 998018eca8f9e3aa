// Each host's slice of the topology and its deltas (common/topology_slices.h): what a host gets is
// exactly what its flows need, and snapshot + deltas always equal the slice cut afresh.
#include "common/topology_slices.h"

#include <gtest/gtest.h>

#include <random>

namespace regen {
namespace {

struct Entry {
  std::string name, service, host;
  int64_t generation = 1;
};

std::shared_ptr<const v1::TopologyRevision> Topo(int64_t revision, const std::vector<Entry>& in,
                                                 const std::map<std::string, std::string>& hosts) {
  auto t = std::make_shared<v1::TopologyRevision>();
  t->set_revision(revision);
  std::map<std::string, Entry> sorted;
  for (const auto& e : in) sorted[e.name] = e;
  std::set<std::string> used;
  for (const auto& [name, e] : sorted) {
    auto* i = t->add_instances();
    i->set_name(e.name);
    i->set_service(e.service);
    i->set_host(e.host);
    i->set_ip("10.0.0." + std::to_string(std::hash<std::string>{}(e.name) % 250 + 1));
    i->set_mac("52:54:00:00:00:01");
    i->set_generation(e.generation);
    used.insert(e.host);
  }
  for (const auto& h : used) {
    auto* th = t->add_hosts();
    th->set_name(h);
    auto a = hosts.find(h);
    th->set_address(a == hosts.end() ? "" : a->second);
  }
  return t;
}

std::set<std::string> Names(const v1::TopologyRevision& t) {
  std::set<std::string> out;
  for (const auto& i : t.instances()) out.insert(i.name());
  return out;
}

// The slice without its revision (what the flows are built from).
std::string Content(v1::TopologyRevision t) {
  t.set_revision(0);
  t.set_base_revision(0);
  return t.SerializeAsString();
}

TEST(TopologySlicesTest, AHostGetsTheServicesItRunsAndTheirHostsOnly) {
  TopologyIndex idx(Topo(
      3,
      {{"web-0", "web", "h1"}, {"web-1", "web", "h2"}, {"db-0", "db", "h3"}, {"db-1", "db", "h2"}},
      {{"h1", "192.0.2.1"}, {"h2", "192.0.2.2"}, {"h3", "192.0.2.3"}}));
  v1::TopologyRevision h1 = idx.SliceFor("h1");
  EXPECT_EQ(h1.revision(), 3);
  EXPECT_EQ(h1.base_revision(), 0);
  EXPECT_EQ(Names(h1), (std::set<std::string>{"web-0", "web-1"}));
  ASSERT_EQ(h1.hosts_size(), 2);
  EXPECT_EQ(h1.hosts(0).name(), "h1");
  EXPECT_EQ(h1.hosts(1).address(), "192.0.2.2");
  // h2 runs both: everything, with all three hosts.
  EXPECT_EQ(Names(idx.SliceFor("h2")).size(), 4u);
  EXPECT_EQ(idx.SliceFor("h2").hosts_size(), 3);
  // A host that runs nothing: an empty slice (still the revision).
  EXPECT_EQ(idx.SliceFor("h9").instances_size(), 0);
  EXPECT_EQ(idx.SliceFor("h9").revision(), 3);
}

TEST(TopologySlicesTest, AHealReachesOnlyTheHostsOfItsServiceAsADelta) {
  std::map<std::string, std::string> addr{
      {"h1", "192.0.2.1"}, {"h2", "192.0.2.2"}, {"h3", "192.0.2.3"}, {"h4", "192.0.2.4"}};
  TopologyIndex before(
      Topo(5, {{"web-0", "web", "h1"}, {"web-1", "web", "h2"}, {"db-0", "db", "h3"}}, addr));
  // web-1 is healed on h4 (generation 2).
  TopologyIndex after(
      Topo(6, {{"web-0", "web", "h1"}, {"web-1", "web", "h4", 2}, {"db-0", "db", "h3"}}, addr));
  auto deltas = SliceDeltas(before, after);
  EXPECT_EQ(deltas.size(), 3u) << "h1 (runs web), h2 (lost web-1), h4 (got it); never h3";
  EXPECT_FALSE(deltas.count("h3"));
  const v1::TopologyRevision& h1 = deltas.at("h1");
  EXPECT_EQ(h1.revision(), 6);
  EXPECT_EQ(h1.base_revision(), 5);
  ASSERT_EQ(h1.instances_size(), 1);  // only what changed
  EXPECT_EQ(h1.instances(0).name(), "web-1");
  EXPECT_EQ(h1.instances(0).host(), "h4");
  ASSERT_EQ(h1.hosts_size(), 1);
  EXPECT_EQ(h1.hosts(0).address(), "192.0.2.4");
  // h2 runs no web instance any more: web leaves its slice.
  EXPECT_EQ(deltas.at("h2").instances_size(), 0);
  EXPECT_EQ(deltas.at("h2").removed_instances_size(), 2);
  // h4 is new to web: the whole service.
  EXPECT_EQ(Names(deltas.at("h4")), (std::set<std::string>{"web-0", "web-1"}));
  // Applied on top of what each had, every delta gives the slice cut afresh.
  for (const auto& [host, d] : deltas) {
    EXPECT_EQ(Content(ApplyTopologyDelta(before.SliceFor(host), d)), Content(after.SliceFor(host)))
        << host;
  }
  EXPECT_EQ(ApplyTopologyDelta(before.SliceFor("h2"), deltas.at("h2")).hosts_size(), 0)
      << "hosts no instance names are dropped";
}

TEST(TopologySlicesTest, ANewTunnelAddressReachesEveryHostThatNamesIt) {
  TopologyIndex before(Topo(1, {{"web-0", "web", "h1"}, {"web-1", "web", "h2"}},
                            {{"h1", "192.0.2.1"}, {"h2", "192.0.2.2"}}));
  TopologyIndex after(Topo(2, {{"web-0", "web", "h1"}, {"web-1", "web", "h2"}},
                           {{"h1", "192.0.2.1"}, {"h2", "192.0.2.99"}}));
  auto deltas = SliceDeltas(before, after);
  ASSERT_EQ(deltas.size(), 2u);
  for (const auto& [host, d] : deltas) {
    EXPECT_EQ(Content(ApplyTopologyDelta(before.SliceFor(host), d)), Content(after.SliceFor(host)))
        << host;
  }
}

TEST(TopologySlicesTest, NothingChangedNoDelta) {
  auto t = Topo(1, {{"web-0", "web", "h1"}}, {{"h1", "192.0.2.1"}});
  EXPECT_TRUE(SliceDeltas(TopologyIndex(t), TopologyIndex(t)).empty());
}

// Random clusters changing at random (heals, moves, new and removed instances and services, new
// tunnel addresses): each host's slice kept from its first snapshot plus every delta it was sent
// is, after every step, the slice cut afresh; a host sent nothing has an unchanged slice.
TEST(TopologySlicesTest, SnapshotPlusDeltasIsAlwaysTheSliceCutAfresh) {
  std::mt19937 rng(17);
  auto pick = [&](int n) { return std::uniform_int_distribution<>(0, n - 1)(rng); };
  const int kHosts = 12;
  std::map<std::string, Entry> cluster;
  std::map<std::string, std::string> addr;
  for (int h = 0; h < kHosts; ++h) addr["h" + std::to_string(h)] = "192.0.2." + std::to_string(h);
  for (int i = 0; i < 30; ++i) {
    std::string service = "s" + std::to_string(pick(5));
    std::string name = service + "-" + std::to_string(i);
    cluster[name] = {name, service, "h" + std::to_string(pick(kHosts))};
  }
  auto snapshot = [&](int64_t revision) {
    std::vector<Entry> v;
    for (const auto& [n, e] : cluster) v.push_back(e);
    return TopologyIndex(Topo(revision, v, addr));
  };
  TopologyIndex current = snapshot(1);
  std::map<std::string, v1::TopologyRevision> agent;  // what each host has
  for (const auto& [h, a] : addr) agent[h] = current.SliceFor(h);
  for (int64_t revision = 2; revision < 400; ++revision) {
    for (int k = pick(3) + 1; k > 0; --k) {
      int what = pick(10);
      auto it = std::next(cluster.begin(), pick(static_cast<int>(cluster.size())));
      if (what < 5) {  // healed or moved elsewhere
        it->second.host = "h" + std::to_string(pick(kHosts));
        it->second.generation += 1;
      } else if (what < 7 && cluster.size() > 3) {  // removed
        cluster.erase(it);
      } else if (what < 9) {  // added
        std::string service = "s" + std::to_string(pick(7));
        std::string name = service + "-n" + std::to_string(revision);
        cluster[name] = {name, service, "h" + std::to_string(pick(kHosts))};
      } else {  // a host's tunnel address changed
        addr["h" + std::to_string(pick(kHosts))] = "198.51.100." + std::to_string(revision % 250);
      }
    }
    TopologyIndex next = snapshot(revision);
    auto deltas = SliceDeltas(current, next);
    for (auto& [h, slice] : agent) {
      auto d = deltas.find(h);
      if (d == deltas.end()) {
        ASSERT_EQ(Content(slice), Content(next.SliceFor(h)))
            << "revision " << revision << ": " << h << " changed but was sent nothing";
        continue;
      }
      d->second.set_base_revision(slice.revision());  // what the controller sent it last
      slice = ApplyTopologyDelta(slice, d->second);
      ASSERT_EQ(slice.revision(), revision);
      ASSERT_EQ(Content(slice), Content(next.SliceFor(h))) << "revision " << revision << ": " << h;
    }
    current = std::move(next);
  }
}

}  // namespace
}  // namespace regen
