// Integration test of LibvirtHypervisor against real QEMU (TCG) through qemu:///embed: a kill -9
// of a domain's qemu is seen as a crash. One embed root per process, hence a binary of its own.
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/domain_xml.h"
#include "agent/libvirt_hypervisor.h"
#include "agent/reaper.h"
#include "tests/fakes/test_util.h"

namespace regen {

// Reaping qemu zombies: the agent's ChildReaper (agent/reaper.h). libvirt starts qemu daemonized:
// its parent exits and qemu is reparented to the nearest subreaper, else to PID 1. When qemu dies,
// libvirt sees its monitor close, then polls every 200 ms until the process is gone (kill()
// fails), and a zombie is not gone: the stop is only reported once someone reaps it. Measured with
// libvirt 9.0 (kill -9 to event):
//   - no subreaper, PID 1 reaping every ~2 s here: 1-2 s;
//   - the process is subreaper and reaps qemu zombies on SIGCHLD: 20-60 ms when the reap beats
//     libvirt's first check, else ~220 ms (one 200 ms poll); mostly the latter;
//   - subreaper that does not reap: no event at all; libvirt gives up after ~15 s and the domain
//     stays "running". A subreaper MUST reap.

namespace {

// Orphans among our descendants (qemu, once libvirt's intermediate process exits) become our
// children instead of PID 1's (ChildReaper::Start turns it on; the test also turns it off).
bool SetSubreaper(bool on) { return prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0) == 0; }

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Processes whose command line contains `needle` (and is a qemu).
std::vector<pid_t> QemuProcessesMatching(const std::string& needle) {
  std::vector<pid_t> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::string cmdline = ReadSmallFile(std::string("/proc/") + entry->d_name + "/cmdline");
    for (char& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    if (cmdline.rfind("/usr/bin/qemu-system", 0) != 0 && cmdline.rfind("qemu-system", 0) != 0) {
      continue;
    }
    if (cmdline.find(needle) != std::string::npos) {
      out.push_back(static_cast<pid_t>(std::strtol(entry->d_name, nullptr, 10)));
    }
  }
  closedir(proc);
  return out;
}

// The embed root: etc/qemu.conf written, and on destruction (also when a test fails) every qemu
// still running from it killed before the directory is removed.
class EmbedRoot {
 public:
  EmbedRoot() : dir_("regen-embed") {
    chmod(dir_.path().c_str(), 0755);  // qemu runs as libvirt-qemu and must reach its sockets
    // Without this, the driver wants virtlogd for qemu's stdout/stderr.
    testing::WriteFileOrDie(dir_.File("etc/qemu.conf"), testing::kEmbedQemuConf);
  }
  ~EmbedRoot() {
    for (pid_t pid : QemuProcessesMatching(dir_.path())) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);  // fails harmlessly when it is not our child
    }
  }
  std::string uri() const { return "qemu:///embed?root=" + dir_.path(); }
  const std::string& path() const { return dir_.path(); }

  // The qemu PID of a running domain: the driver's pidfile, else a scan of /proc.
  std::optional<pid_t> QemuPid(const std::string& domain) const {
    std::string text = ReadSmallFile(dir_.File("run/qemu/" + domain + ".pid"));
    long pid = std::strtol(text.c_str(), nullptr, 10);
    if (pid > 0) return static_cast<pid_t>(pid);
    auto found = QemuProcessesMatching("guest=" + domain + ",");
    if (!found.empty()) return found.front();
    return std::nullopt;
  }

  std::string QemuLog(const std::string& domain) const {
    return ReadSmallFile(dir_.File("log/qemu/" + domain + ".log"));
  }

 private:
  testing::TempDir dir_;
};

// Destroys and undefines the domains it was told about, even when the test fails.
class DomainCleanup {
 public:
  explicit DomainCleanup(LibvirtHypervisor& hv) : hv_(hv) {}
  ~DomainCleanup() {
    if (!hv_.Connected()) static_cast<void>(hv_.Connect());
    for (const auto& name : names_) static_cast<void>(hv_.DestroyAndUndefine(name));
  }
  void Add(const std::string& name) { names_.push_back(name); }

 private:
  LibvirtHypervisor& hv_;
  std::vector<std::string> names_;
};

struct TimedEvent {
  DomainEvent event;
  Clock::time_point at;
};

class TimedEventLog {
 public:
  void Add(const DomainEvent& e) {
    std::lock_guard lock(mu_);
    events_.push_back({e, Clock::now()});
  }
  std::optional<TimedEvent> FirstUnexpectedStop(const std::string& name) const {
    std::lock_guard lock(mu_);
    for (const auto& t : events_) {
      if (t.event.name == name && t.event.unexpected_stop) return t;
    }
    return std::nullopt;
  }
  std::string Dump() const {
    std::lock_guard lock(mu_);
    std::string out;
    for (const auto& t : events_) {
      out += t.event.name + " " + t.event.event + "/" + t.event.detail +
             (t.event.unexpected_stop ? " unexpected" : "") + "\n";
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<TimedEvent> events_;
};

InstanceSpec TinySpec(const std::string& name) {
  InstanceSpec spec;
  spec.name = name;
  spec.service = "tcg";
  spec.version = "v1";
  spec.generation = 1;
  spec.allocation.resources = Resources{1, 64, 0, 0};
  return spec;
}

std::string TinyXml(const InstanceSpec& spec) {
  DomainXmlOptions options;
  options.domain_type = "qemu";
  options.bridge = "";  // no NIC
  auto xml = BuildDomainXml(spec, options);
  EXPECT_TRUE(xml.ok()) << xml.status().ToString();
  return xml.ok() ? *xml : std::string();
}

std::string MissingComponent() {
  if (!testing::HaveProgram("qemu-system-x86_64")) return "qemu-system-x86_64 (qemu-system-x86)";
  if (getpwnam("libvirt-qemu") == nullptr) return "user libvirt-qemu (libvirt-daemon-system)";
  return "";
}

struct CrashRun {
  double start_ms = 0;
  double kill_to_event_ms = -1;
  DomainEvent event;
};

// Starts `name`, kills its qemu with SIGKILL, waits for the unexpected stop and checks the state.
void StartKillAndWatch(LibvirtHypervisor& hv, const EmbedRoot& root, TimedEventLog& log,
                       DomainCleanup& cleanup, const std::string& name, seconds event_timeout,
                       CrashRun& run) {
  InstanceSpec spec = TinySpec(name);
  cleanup.Add(name);
  auto t0 = Clock::now();
  Status started = hv.DefineAndStart(name, TinyXml(spec));
  run.start_ms = Ms(Clock::now() - t0);
  ASSERT_TRUE(started.ok()) << started.ToString() << "\nqemu log:\n" << root.QemuLog(name);
  auto pid = root.QemuPid(name);
  ASSERT_TRUE(pid.has_value()) << "no qemu process found for " << name;

  auto info = [&]() -> std::optional<DomainInfo> {
    auto list = hv.ListDomains();
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    if (list.ok()) {
      for (const auto& d : *list) {
        if (d.name == name) return d;
      }
    }
    return std::nullopt;
  };
  auto before = info();
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->state, DomainState::kRunning);
  EXPECT_TRUE(before->metadata.managed);
  EXPECT_EQ(before->metadata.instance, name);

  auto killed_at = Clock::now();
  ASSERT_EQ(kill(*pid, SIGKILL), 0) << std::strerror(errno);
  ASSERT_TRUE(testing::WaitFor([&] { return log.FirstUnexpectedStop(name).has_value(); },
                               event_timeout, milliseconds(1)))
      << "no unexpected-stop event for " << name << "; events:\n"
      << log.Dump();
  auto event = *log.FirstUnexpectedStop(name);
  run.kill_to_event_ms = Ms(event.at - killed_at);
  run.event = event.event;
  EXPECT_EQ(event.event.event, "stopped");
  EXPECT_EQ(event.event.detail, "failed");

  auto after = info();
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->state, DomainState::kCrashed) << DomainStateName(after->state);
  EXPECT_EQ(after->reason, "crashed");
  EXPECT_TRUE(after->metadata.managed);
  EXPECT_EQ(after->metadata.generation, 1);
}

// The embedded driver takes one root per process: every test here shares it.
class LibvirtEmbedTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ChildReaper::BlockSigchld();  // before any thread starts (libvirt's included)
    root_ = new EmbedRoot;
  }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
  }
  void SetUp() override {
    if (std::string missing = MissingComponent(); !missing.empty()) {
      REGEN_REQUIRE_COMPONENT(missing, "install qemu-system-x86 and libvirt-daemon-system");
    }
  }
  static EmbedRoot* root_;
};
EmbedRoot* LibvirtEmbedTest::root_ = nullptr;

TEST_F(LibvirtEmbedTest, KillNineIsACrash) {
  const bool measure_no_reap = std::getenv("REGEN_MEASURE_NO_REAP") != nullptr;
  const EmbedRoot& root = *root_;
  ChildReaper reaper;
  TimedEventLog log;
  LibvirtHypervisor hv(root.uri(), /*enable_events=*/true);
  hv.SetEventCallback([&log](const DomainEvent& e) { log.Add(e); });
  DomainCleanup cleanup(hv);
  Status connected = hv.Connect();
  ASSERT_TRUE(connected.ok()) << connected.ToString();
  auto cap = hv.Capacity();
  ASSERT_TRUE(cap.ok()) << cap.status().ToString();
  EXPECT_GT(cap->cpus, 0);
  EXPECT_GT(cap->memory_mib, 0);
  EXPECT_GT(cap->free_memory_mib, 0);

  // 1. No subreaper: qemu's orphan goes to PID 1, which reaps when it gets to it.
  ASSERT_TRUE(SetSubreaper(false));
  CrashRun plain;
  StartKillAndWatch(hv, root, log, cleanup, "tcg-plain", seconds(30), plain);
  if (HasFatalFailure()) return;

  // 2. Subreaper and reaping: we are qemu's parent and reap it at once.
  ASSERT_TRUE(reaper.Start().ok());  // subreaper, and reaping
  CrashRun reaped;
  StartKillAndWatch(hv, root, log, cleanup, "tcg-reaped", seconds(30), reaped);
  if (HasFatalFailure()) return;
  EXPECT_GE(reaper.reaped(), 1);

  // 3. (opt-in, slow) Subreaper without reaping: the zombie stays, and libvirt waits for it.
  std::string unreaped_report;
  if (measure_no_reap) {
    reaper.Stop();
    const std::string name = "tcg-unreaped";
    cleanup.Add(name);
    ASSERT_TRUE(hv.DefineAndStart(name, TinyXml(TinySpec(name))).ok());
    auto pid = root.QemuPid(name);
    ASSERT_TRUE(pid.has_value());
    auto killed_at = Clock::now();
    ASSERT_EQ(kill(*pid, SIGKILL), 0);
    bool seen = testing::WaitFor([&] { return log.FirstUnexpectedStop(name).has_value(); },
                                 seconds(20), milliseconds(5));
    std::string state = "?";
    if (auto list = hv.ListDomains(); list.ok()) {
      for (const auto& d : *list) {
        if (d.name == name) state = std::string(DomainStateName(d.state)) + "/" + d.reason;
      }
    }
    unreaped_report =
        seen ? std::to_string(static_cast<int>(Ms(log.FirstUnexpectedStop(name)->at - killed_at))) +
                   " ms"
             : "no event within 20 s, domain listed as " + state;
    reaper.ScanOnce();
    ASSERT_TRUE(reaper.Start().ok());
  }

  std::printf(
      "[measure] qemu:///embed TCG 64 MiB: start %.0f ms (first, with capability probe), "
      "%.0f ms (second)\n",
      plain.start_ms, reaped.start_ms);
  std::printf(
      "[measure] kill -9 -> unexpected-stop event: %.0f ms without subreaper (PID 1 "
      "reaps), %.0f ms with subreaper + reaping\n",
      plain.kill_to_event_ms, reaped.kill_to_event_ms);
  if (measure_no_reap) {
    std::printf("[measure] kill -9 -> event with subreaper but no reaping: %s\n",
                unreaped_report.c_str());
  }
  EXPECT_LT(reaped.kill_to_event_ms, 1000) << "reaping should make the crash visible at once";
}

TEST_F(LibvirtEmbedTest, RunningDomainIsFoundAgainAfterReconnect) {
  ChildReaper reaper;
  ASSERT_TRUE(reaper.Start().ok());  // subreaper, and reaping
  const EmbedRoot& root = *root_;
  TimedEventLog log;
  LibvirtHypervisor hv(root.uri(), true);
  hv.SetEventCallback([&log](const DomainEvent& e) { log.Add(e); });
  DomainCleanup cleanup(hv);
  ASSERT_TRUE(hv.Connect().ok());
  InstanceSpec spec = TinySpec("tcg-keep");
  cleanup.Add(spec.name);
  Status started = hv.DefineAndStart(spec.name, TinyXml(spec));
  ASSERT_TRUE(started.ok()) << started.ToString() << "\n" << root.QemuLog(spec.name);
  auto pid = root.QemuPid(spec.name);
  ASSERT_TRUE(pid.has_value());

  // Closing the last connection shuts the embedded driver down; qemu keeps running and the
  // driver picks it up again when the root is reopened.
  hv.Disconnect();
  EXPECT_EQ(kill(*pid, 0), 0) << "qemu stopped with the connection";
  auto t0 = Clock::now();
  ASSERT_TRUE(hv.Connect().ok());
  std::optional<DomainInfo> found;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto list = hv.ListDomains();
        if (!list.ok()) return false;
        for (const auto& d : *list) {
          if (d.name == spec.name && d.state == DomainState::kRunning) found = d;
        }
        return found.has_value();
      },
      seconds(30), milliseconds(10)));
  std::printf("[measure] qemu:///embed reopen: running domain listed again after %.0f ms\n",
              Ms(Clock::now() - t0));
  EXPECT_TRUE(found->metadata.managed);
  EXPECT_EQ(found->metadata.instance, "tcg-keep");
  ASSERT_TRUE(hv.DestroyAndUndefine(spec.name).ok());
  EXPECT_TRUE(testing::WaitFor([&] { return kill(*pid, 0) != 0; }, seconds(10)))
      << "qemu still running after destroy";
}

TEST_F(LibvirtEmbedTest, FailedStartIsUndefinedAndReportsLibvirtsMessage) {
  LibvirtHypervisor hv(root_->uri(), true);
  DomainCleanup cleanup(hv);
  ASSERT_TRUE(hv.Connect().ok());
  InstanceSpec spec = TinySpec("tcg-nodisk");
  cleanup.Add(spec.name);
  DomainXmlOptions options;
  options.domain_type = "qemu";
  options.bridge = "";
  options.disk_path = root_->path() + "/missing-disk.qcow2";
  auto xml = BuildDomainXml(spec, options);
  ASSERT_TRUE(xml.ok());
  Status s = hv.DefineAndStart(spec.name, *xml);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("start domain tcg-nodisk on " + root_->uri()));
  EXPECT_THAT(s.message(), HasSubstr("missing-disk.qcow2"));  // libvirt's own words
  auto list = hv.ListDomains();
  ASSERT_TRUE(list.ok());
  for (const auto& d : *list) EXPECT_NE(d.name, spec.name) << "left defined after failing";
}

}  // namespace
}  // namespace regen
