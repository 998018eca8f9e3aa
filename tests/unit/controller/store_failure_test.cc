// A write the state store refuses does not stop the controller (issue 15; rule: no VM is stopped
// for something that happened to the controller alone): nothing of the refused write is applied,
// memory stays what the store holds, agents are still served and their leases renewed, admin
// requests get UNAVAILABLE naming the store's error, and once the store writes again the
// controller carries on from what the agents last said. A controller restarted at any moment
// finds the store consistent. Shown three ways: every write of a scenario refused in turn
// (FaultyStore over a real SQLite file), the write lock held by another SQLite connection, and a
// real full filesystem (a small tmpfs, mounted in a private mount namespace).
#include <errno.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "controller/cluster_state.h"
#include "controller/controller.h"
#include "tests/fakes/controller_harness.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_store.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using testing::FakeClock;
using testing::MessageSink;
using testing::TempDir;
using testing::TestHello;

constexpr char kSpecV1V2[] =
    "name: web\ninstances: 4\nupdate_domains: 2\nflavor:\n  vcpus: 1\n  memory_mib: 256\n"
    "network:\n  subnet: 10.10.0.0/24\nversions:\n  v1: {}\n  v2: {}\nversion: v1\n";

bool Refused(const Status& s) { return s.code() == Code::kUnavailable; }
template <typename T>
bool Refused(const Result<T>& r) {
  return !r.ok() && r.status().code() == Code::kUnavailable;
}

// A controller over the SQLite file `db`, optionally failing its `fail_at`th write.
class Rig {
 public:
  Rig(const std::string& db, int fail_at) {
    auto store = OpenSqliteStore(db);
    if (!store.ok()) {
      ADD_FAILURE() << store.status().ToString();
      std::_Exit(3);
    }
    sqlite_ = std::move(store).value();
    faulty_ = std::make_unique<testing::FaultyStore>(*sqlite_, fail_at);
    config_.heartbeat_interval = std::chrono::milliseconds(500);
    config_.fencing_lease = std::chrono::milliseconds(2000);
    config_.host_down_after = std::chrono::milliseconds(3000);
    controller_ = std::make_unique<Controller>(config_, *faulty_, clock_);
    load_ = controller_->Load();
  }

  Controller& c() { return *controller_; }
  const Status& load_status() const { return load_; }
  int writes() const { return faulty_->transactions(); }
  FakeClock& clock() { return clock_; }

  void Hello(const std::string& host) {
    auto& sink = sinks_[host];
    if (!sink) sink = std::make_unique<MessageSink>();
    Status s = controller_->OnHello(TestHello(host), sink.get());
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  void Heartbeat(const std::string& host) {
    v1::Heartbeat hb;
    controller_->OnHeartbeat(host, hb, sinks_[host].get());
  }
  // Lease renewals the controller sent `host` so far (the agent keeps its VMs while they come).
  size_t Leases(const std::string& host) {
    size_t n = 0;
    for (const auto& m : sinks_[host]->messages) n += m.has_heartbeat_ack() ? 1 : 0;
    return n;
  }
  // An admin request, sent once more after the controller re-read its store when the store
  // refused a write of it (an operator retrying on UNAVAILABLE).
  template <typename F>
  auto Admin(F request) {
    auto result = request();
    if (Refused(result)) {
      Retick();
      result = request();
    }
    return result;
  }
  // 500 ms later, a Tick: the controller re-reads a store that refused a write.
  void Retick() {
    clock_.Advance(std::chrono::milliseconds(500));
    controller_->Tick();
  }
  // Every host heartbeats and reports what it was last told, until all runs.
  void Settle() {
    for (int i = 0; i < 3; ++i) {
      for (auto& [host, sink] : sinks_) Heartbeat(host);
      Retick();
      for (int j = 0; j < 3; ++j) AllRunning();
    }
  }
  testing::FaultyStore& faulty() { return *faulty_; }
  const MessageSink& Sink(const std::string& host) { return *sinks_[host]; }
  // Every host reports its last desired set running; `except` reports nothing of that instance.
  void AllRunning(const std::string& except = "") {
    for (auto& [host, sink] : sinks_) {
      controller_->OnDomainsReport(host, testing::RunningReport(host, *sink, except));
    }
  }
  // Hosts whose last desired set holds `instance`.
  std::set<std::string> HostsRunning(const std::string& instance) {
    std::set<std::string> out;
    for (auto& [host, sink] : sinks_) {
      for (const auto& s : sink->LastDesired().value_or(std::vector<v1::InstanceSpec>{})) {
        if (s.name() == instance) out.insert(host);
      }
    }
    return out;
  }

 private:
  std::unique_ptr<Store> sqlite_;
  std::unique_ptr<testing::FaultyStore> faulty_;
  ControllerConfig config_;
  FakeClock clock_;
  std::unique_ptr<Controller> controller_;
  Status load_;
  std::map<std::string, std::unique_ptr<MessageSink>> sinks_;
};

// Every kind of write: hosts join, a deploy, instances running, a crash healed, a failover, an
// upgrade started and stepped, a drain, a scale-up, a host lost and healed, an outside event.
void Scenario(Rig& r) {
  for (const char* h : {"host-1", "host-2", "host-3", "host-4"}) r.Hello(h);
  v1::ApplyServiceRequest apply;
  apply.set_spec_yaml(kSpecV1V2);
  apply.set_operation_id("op-deploy");
  ASSERT_TRUE(r.Admin([&] { return r.c().ApplyService(apply); }).ok());
  r.AllRunning();
  const std::string crashed_on = r.c().instances().at("web-0").allocation.host;
  v1::DomainEvent ev;
  ev.set_host(crashed_on);
  ev.set_instance("web-0");
  ev.set_generation(1);
  ev.set_state(v1::DOMAIN_STATE_CRASHED);
  ev.set_detected_by(v1::DETECTED_BY_EVENT);
  r.c().OnDomainEvent(crashed_on, ev);
  r.AllRunning();
  v1::FailoverRequest failover;
  failover.set_instance("web-1");
  failover.set_operation_id("op-failover");
  ASSERT_TRUE(r.Admin([&] { return r.c().Failover(failover); }).ok());
  r.AllRunning("web-1");  // the old host let go of web-1 ...
  r.AllRunning();         // ... and the new one runs it
  v1::UpgradeStartRequest up;
  up.set_service("web");
  up.set_to_version("v2");
  up.set_mode("manual");
  ASSERT_TRUE(r.Admin([&] { return r.c().UpgradeStart(up); }).ok());
  v1::UpgradeServiceRequest next;
  next.set_service("web");
  (void)r.Admin([&] { return r.c().UpgradeNextUd(next); });
  r.AllRunning();
  v1::DrainRequest drain;
  drain.set_host("host-4");
  (void)r.Admin([&] { return r.c().Drain(drain); });
  r.AllRunning("");
  std::string spec = kSpecV1V2;
  spec.replace(spec.find("instances: 4"), 12, "instances: 6");
  apply.set_spec_yaml(spec);
  apply.set_operation_id("op-scale");
  ASSERT_TRUE(r.Admin([&] { return r.c().ApplyService(apply); }).ok());
  r.AllRunning();
  // host-2 goes silent; the others heartbeat on until it is down and healed.
  for (int i = 0; i < 8; ++i) {
    r.clock().Advance(std::chrono::milliseconds(500));
    for (const char* h : {"host-1", "host-3", "host-4"}) r.Heartbeat(h);
    r.c().Tick();
  }
  r.AllRunning();
  EventRecord outside;
  outside.kind = EventKind::kDnsUpdateFailed;
  outside.message = "dns down";
  ASSERT_TRUE(r.Admin([&] { return r.c().RecordEvent(outside); }).ok());
}

// What a restarted controller must find, whatever write failed.
void ExpectConsistentAfterRestart(const std::string& db) {
  Rig r(db, 0);
  ASSERT_TRUE(r.load_status().ok()) << r.load_status().ToString();
  auto events = r.c().EventsAfter(0, 100000);
  ASSERT_TRUE(events.ok());
  // An instance's record and the event that gave it its generation are one write: never one
  // without the other.
  for (const auto& [name, inst] : r.c().instances()) {
    if (inst.generation == 0) continue;
    const std::string gen = "generation " + std::to_string(inst.generation);
    bool found = false;
    for (const auto& e : *events) {
      if (e.instance != name) continue;
      found |=
          e.message.find(gen) != std::string::npos ||
          e.json.find("\"generation\":" + std::to_string(inst.generation)) != std::string::npos;
    }
    EXPECT_TRUE(found) << name << " has " << gen << " but no stored event gave it";
  }
  // No address is held twice.
  std::set<std::string> ips, macs;
  for (const auto& [name, inst] : r.c().instances()) {
    if (inst.state == InstanceState::kPending || inst.allocation.host.empty()) continue;
    EXPECT_TRUE(ips.insert(inst.allocation.ip).second) << name << " " << inst.allocation.ip;
    EXPECT_TRUE(macs.insert(inst.allocation.mac).second) << name << " " << inst.allocation.mac;
  }
  // The stored topology revision is the latest one announced.
  int64_t announced = 0;
  for (const auto& e : *events) {
    if (e.kind == EventKind::kTopology) ++announced;
  }
  EXPECT_EQ(r.c().topology_revision(), announced);
  // And it heals on: every host back, everything ends running, each instance on one host.
  for (const char* h : {"host-1", "host-2", "host-3", "host-4"}) {
    if (!r.c().HostState(h).empty()) r.Hello(h);
  }
  for (int i = 0; i < 4; ++i) r.AllRunning();
  for (const auto& [name, inst] : r.c().instances()) {
    EXPECT_EQ(inst.state, InstanceState::kRunning) << name << ": " << inst.reason;
    EXPECT_EQ(r.HostsRunning(name).size(), 1u) << name << " must run exactly once";
  }
}

TEST(StoreFailureTest, TheScenarioRunsCleanWithoutFailures) {
  TempDir dir;
  Rig r(dir.File("c.db"), 0);
  Scenario(r);
  EXPECT_GT(r.writes(), 20) << "the scenario should exercise many writes";
  std::printf("the scenario makes %d writes\n", r.writes());
  for (const auto& [name, inst] : r.c().instances()) {
    EXPECT_EQ(inst.state, InstanceState::kRunning) << name;
  }
}

// What the controller holds in memory is what the store holds: a controller loaded from it now
// sees the same instances, hosts (but the fields kept in memory only) and revision.
void ExpectMemoryIsTheStore(Rig& live, const std::string& db) {
  Rig loaded(db, 0);
  ASSERT_TRUE(loaded.load_status().ok()) << loaded.load_status().ToString();
  EXPECT_EQ(live.c().instances(), loaded.c().instances());
  EXPECT_EQ(live.c().topology_revision(), loaded.c().topology_revision());
  for (const char* h : {"host-1", "host-2", "host-3", "host-4"}) {
    EXPECT_EQ(live.c().HostState(h), loaded.c().HostState(h)) << h;
  }
}

// Everything runs, each instance on exactly one host.
void ExpectAllRunningOnce(Rig& r) {
  for (const auto& [name, inst] : r.c().instances()) {
    EXPECT_EQ(inst.state, InstanceState::kRunning) << name << ": " << inst.reason;
    EXPECT_EQ(r.HostsRunning(name).size(), 1u) << name << " must run exactly once";
  }
}

TEST(StoreFailureTest, EveryRefusedWriteLeavesTheControllerUpConsistentAndHealing) {
  int total = 0;
  {
    TempDir dir;
    Rig r(dir.File("c.db"), 0);
    Scenario(r);
    total = r.writes();
  }
  ASSERT_GT(total, 0);
  for (int n = 1; n <= total; ++n) {
    SCOPED_TRACE("write " + std::to_string(n) + " of " + std::to_string(total) + " is refused");
    TempDir dir;
    const std::string db = dir.File("c.db");
    {
      Rig r(db, n);  // the process goes on past the refusal: no exit, nothing to restart
      Scenario(r);
      ExpectMemoryIsTheStore(r, db);
      r.Settle();
      ExpectAllRunningOnce(r);
      ExpectMemoryIsTheStore(r, db);
    }
    ExpectConsistentAfterRestart(db);
    if (::testing::Test::HasFailure()) break;  // one write's story is enough to read
  }
}

TEST(StoreFailureTest, AWriteLockHeldByAnotherConnectionIsWaitedOut) {
  TempDir dir;
  const std::string db = dir.File("c.db");
  Rig r(db, 0);
  for (const char* h : {"host-1", "host-2"}) r.Hello(h);
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  // The controller waits busy_timeout (10 s) for the lock, then gives up on the write; the
  // agent is served (its session is open and its heartbeats renew its lease) all the same.
  r.Hello("host-3");
  EXPECT_EQ(r.c().HostState("host-3"), "") << "not stored, so not known";
  size_t leases = r.Leases("host-3");
  r.Heartbeat("host-3");
  EXPECT_GT(r.Leases("host-3"), leases) << "the lease is renewed while the store is locked";
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  r.Retick();  // re-read, then the Hello that was not stored is
  EXPECT_EQ(r.c().HostState("host-3"), "up");
  ExpectMemoryIsTheStore(r, db);
}

// A tmpfs of 2 MiB at `path`, in this process's own mount namespace (gone with the process).
void MountSmallTmpfs(const std::string& path) {
  ASSERT_EQ(unshare(CLONE_NEWNS), 0) << "unshare(CLONE_NEWNS) needs root: " << strerror(errno);
  ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0) << strerror(errno);
  ASSERT_EQ(mount("regen-test", path.c_str(), "tmpfs", 0, "size=2m"), 0) << strerror(errno);
}

// Writes a file at `path` until the filesystem is full.
void FillFilesystem(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) std::_Exit(4);
  std::string block(64 * 1024, 'x');
  while (write(fd, block.data(), block.size()) > 0) {
  }
  std::string byte(1, 'x');
  while (write(fd, byte.data(), 1) > 0) {
  }
  close(fd);
}

// A crashed domain's report, as the agent sends it: every other domain of its desired set runs.
v1::DomainsReport CrashedReport(const std::string& host, const MessageSink& sink,
                                const std::string& crashed) {
  v1::DomainsReport report = testing::RunningReport(host, sink);
  for (auto& d : *report.mutable_domains()) {
    if (d.name() == crashed) d.set_state(v1::DOMAIN_STATE_CRASHED);
  }
  report.set_complete(true);
  return report;
}

TEST(StoreFailureTest, AFullFilesystemKeepsTheControllerUpAndItHealsWhenThereIsRoom) {
  TempDir dir;
  const std::string mnt = dir.path();
  MountSmallTmpfs(mnt);
  const std::string db = mnt + "/c.db";
  Rig r(db, 0);
  for (const char* h : {"host-1", "host-2"}) r.Hello(h);
  v1::ApplyServiceRequest apply;
  apply.set_spec_yaml(kSpecV1V2);
  ASSERT_TRUE(r.c().ApplyService(apply).ok());
  r.AllRunning();
  ExpectAllRunningOnce(r);
  FillFilesystem(mnt + "/filler");
  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(2000);
  spdlog::default_logger()->sinks().push_back(ring);
  struct RemoveSink {
    ~RemoveSink() { spdlog::default_logger()->sinks().pop_back(); }
  } remove_sink;

  // A change refused: UNAVAILABLE naming the store's error, nothing applied.
  std::string scaled = kSpecV1V2;
  scaled.replace(scaled.find("instances: 4"), 12, "instances: 6");
  apply.set_spec_yaml(scaled);
  auto refused = r.c().ApplyService(apply);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kUnavailable);
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("full"));
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("nothing of the request"));
  EXPECT_EQ(r.c().instances().size(), 4u);
  // A crash reported while the disk is full: not healed yet (the heal cannot be stored), and
  // no other instance is touched.
  const std::string host = r.c().instances().at("web-0").allocation.host;
  r.Retick();
  r.c().OnDomainsReport(host, CrashedReport(host, r.Sink(host), "web-0"));
  EXPECT_EQ(r.c().instances().at("web-0").generation, 1);
  // A new host is served and its heartbeats acknowledged; a known one stays up.
  r.Hello("host-3");
  EXPECT_EQ(r.c().HostState("host-3"), "");
  for (int i = 0; i < 8; ++i) {  // 4 s: over the lease and host_down_after
    for (const char* h : {"host-1", "host-2", "host-3"}) {
      size_t before = r.Leases(h);
      r.Heartbeat(h);
      EXPECT_GT(r.Leases(h), before) << h << " gets its lease while the disk is full";
    }
    r.Retick();
  }
  EXPECT_EQ(r.c().HostState("host-1"), "up");
  EXPECT_EQ(r.c().HostState("host-2"), "up");
  ExpectMemoryIsTheStore(r, db);

  // Room again: the next Tick re-reads the store and replays the last reports and Hellos.
  ASSERT_EQ(unlink((mnt + "/filler").c_str()), 0);
  // (Re-read every 500 ms at first, then less often while the store refuses: at most 2 s.)
  for (int i = 0; i < 5 && r.c().HostState("host-3") != "up"; ++i) {
    for (const char* h : {"host-1", "host-2", "host-3"}) r.Heartbeat(h);
    r.Retick();
  }
  EXPECT_EQ(r.c().HostState("host-3"), "up");
  EXPECT_EQ(r.c().instances().at("web-0").generation, 2) << "healed once the heal could be stored";
  // The failure was decided again by the replay that stored the heal, but logged once.
  int failed_lines = 0;
  for (const auto& line : ring->last_formatted()) {
    failed_lines += line.find("instance web-0 generation 1 failed:") != std::string::npos;
  }
  EXPECT_EQ(failed_lines, 1);
  apply.set_operation_id("op-scale-again");
  ASSERT_TRUE(r.c().ApplyService(apply).ok());
  r.Settle();
  EXPECT_EQ(r.c().instances().size(), 6u);
  ExpectAllRunningOnce(r);
  ExpectMemoryIsTheStore(r, db);
  umount2(mnt.c_str(), MNT_DETACH);
}

}  // namespace
}  // namespace regen
