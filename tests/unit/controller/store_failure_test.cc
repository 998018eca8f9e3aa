// A failed write of the controller's own state is fatal (controller/cluster_state.h): the process
// exits with kExitStoreWriteFailed, and a restarted controller finds the store consistent, with
// nothing of the failed step in it, and heals on. Shown three ways: every write of a scenario
// failed in turn (FaultyStore over a real SQLite file), the write lock held by another SQLite
// connection, and a real full filesystem (a small tmpfs, mounted in a private mount namespace).
// Each failure runs in a gtest death-test child; the parent then restarts from the file.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
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
  ASSERT_TRUE(r.c().ApplyService(apply).ok());
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
  ASSERT_TRUE(r.c().Failover(failover).ok());
  r.AllRunning("web-1");  // the old host let go of web-1 ...
  r.AllRunning();         // ... and the new one runs it
  v1::UpgradeStartRequest up;
  up.set_service("web");
  up.set_to_version("v2");
  up.set_mode("manual");
  ASSERT_TRUE(r.c().UpgradeStart(up).ok());
  v1::UpgradeServiceRequest next;
  next.set_service("web");
  (void)r.c().UpgradeNextUd(next);
  r.AllRunning();
  v1::DrainRequest drain;
  drain.set_host("host-4");
  (void)r.c().Drain(drain);
  r.AllRunning("");
  std::string spec = kSpecV1V2;
  spec.replace(spec.find("instances: 4"), 12, "instances: 6");
  apply.set_spec_yaml(spec);
  apply.set_operation_id("op-scale");
  ASSERT_TRUE(r.c().ApplyService(apply).ok());
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
  ASSERT_TRUE(r.c().RecordEvent(outside).ok());
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

TEST(StoreFailureTest, EveryWriteFailingEndsTheProcessAndTheRestartIsConsistent) {
  int total = 0;
  {
    TempDir dir;
    Rig r(dir.File("c.db"), 0);
    Scenario(r);
    total = r.writes();
  }
  ASSERT_GT(total, 0);
  for (int n = 1; n <= total; ++n) {
    SCOPED_TRACE("write " + std::to_string(n) + " of " + std::to_string(total) + " fails");
    TempDir dir;
    const std::string db = dir.File("c.db");
    EXPECT_EXIT(
        {
          Rig r(db, n);
          Scenario(r);
          std::_Exit(0);  // not reached: the nth write ends the process
        },
        ::testing::ExitedWithCode(kExitStoreWriteFailed),
        "state store write failed: store: injected failure of write");
    ExpectConsistentAfterRestart(db);
  }
}

TEST(StoreFailureTest, AWriteLockHeldByAnotherConnectionEndsTheProcessCleanly) {
  TempDir dir;
  const std::string db = dir.File("c.db");
  {
    Rig r(db, 0);
    for (const char* h : {"host-1", "host-2"}) r.Hello(h);
  }
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  // The controller waits busy_timeout (10 s) for the lock, then gives up and exits.
  EXPECT_EXIT(
      {
        Rig r(db, 0);
        r.Hello("host-3");
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(kExitStoreWriteFailed),
      "state store write failed: store: BEGIN: database is locked");
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  Rig r(db, 0);
  ASSERT_TRUE(r.load_status().ok());
  EXPECT_EQ(r.c().HostState("host-3"), "") << "nothing of the failed step is stored";
  EXPECT_EQ(r.c().HostState("host-1"), "up");
  r.Hello("host-3");
  EXPECT_EQ(r.c().HostState("host-3"), "up");
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

TEST(StoreFailureTest, AFullFilesystemEndsTheProcessCleanly) {
  TempDir dir;
  const std::string mnt = dir.path();
  MountSmallTmpfs(mnt);
  const std::string db = mnt + "/c.db";
  {
    Rig r(db, 0);
    for (const char* h : {"host-1", "host-2"}) r.Hello(h);
    v1::ApplyServiceRequest apply;
    apply.set_spec_yaml(kSpecV1V2);
    ASSERT_TRUE(r.c().ApplyService(apply).ok());
  }
  EXPECT_EXIT(
      {
        Rig r(db, 0);  // opened while there is room (WAL and shared memory files exist)
        FillFilesystem(mnt + "/filler");
        r.Hello("host-3");
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(kExitStoreWriteFailed), "state store write failed: .*full");
  ASSERT_EQ(unlink((mnt + "/filler").c_str()), 0);
  Rig r(db, 0);
  ASSERT_TRUE(r.load_status().ok()) << r.load_status().ToString();
  EXPECT_EQ(r.c().HostState("host-3"), "") << "nothing of the failed step is stored";
  EXPECT_EQ(r.c().instances().size(), 4u);
  r.Hello("host-3");
  EXPECT_EQ(r.c().HostState("host-3"), "up");
  umount2(mnt.c_str(), MNT_DETACH);
}

}  // namespace
}  // namespace regen
