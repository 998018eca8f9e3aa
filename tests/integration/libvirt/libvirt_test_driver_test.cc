// Integration tests of LibvirtHypervisor against libvirt's test driver (in-process, one
// test:///<tmp>/host.xml per simulated host) and, for connection loss, a private libvirtd.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/domain_xml.h"
#include "agent/libvirt_hypervisor.h"
#include "tests/fakes/test_util.h"

extern char** environ;

namespace regen {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

// The smallest node file the test driver accepts for an empty host: the defaults (16 CPUs,
// 3 GiB) apply to everything not given.
constexpr const char* kEmptyNodeXml = "<node/>\n";

std::string NodeXml(int cpus, int64_t memory_kib) {
  return "<node>\n"
         "  <cpu>\n"
         "    <nodes>1</nodes>\n"
         "    <sockets>1</sockets>\n"
         "    <cores>" +
         std::to_string(cpus) +
         "</cores>\n"
         "    <threads>1</threads>\n"
         "    <active>" +
         std::to_string(cpus) +
         "</active>\n"
         "    <mhz>2000</mhz>\n"
         "    <model>x86_64</model>\n"
         "  </cpu>\n"
         "  <memory>" +
         std::to_string(memory_kib) +
         "</memory>\n"
         "</node>\n";
}

// One simulated host: a node file in a temp dir.
class TestHost {
 public:
  explicit TestHost(const std::string& node_xml = kEmptyNodeXml) : dir_("regen-libvirt-host") {
    testing::WriteFileOrDie(dir_.File("host.xml"), node_xml);
  }
  std::string uri() const { return "test://" + dir_.File("host.xml"); }
  const testing::TempDir& dir() const { return dir_; }

 private:
  testing::TempDir dir_;
};

// Collects events from the event thread.
class EventLog {
 public:
  void Add(const DomainEvent& e) {
    std::lock_guard lock(mu_);
    events_.push_back(e);
  }
  std::optional<DomainEvent> Find(const std::string& name, const std::string& event,
                                  const std::string& detail = "") const {
    std::lock_guard lock(mu_);
    for (const auto& e : events_) {
      if (e.name == name && e.event == event && (detail.empty() || e.detail == detail)) return e;
    }
    return std::nullopt;
  }
  bool WaitFor(const std::string& name, const std::string& event, const std::string& detail = "",
               milliseconds timeout = milliseconds(5000)) const {
    return testing::WaitFor([&] { return Find(name, event, detail).has_value(); }, timeout);
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return events_.size();
  }
  std::string Dump() const {
    std::lock_guard lock(mu_);
    std::string out;
    for (const auto& e : events_) {
      out +=
          e.name + " " + e.event + "/" + e.detail + (e.unexpected_stop ? " unexpected" : "") + "\n";
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<DomainEvent> events_;
};

InstanceSpec Spec(const std::string& service, int index, int64_t generation = 1) {
  InstanceSpec spec;
  spec.service = service;
  spec.name = service + "-" + std::to_string(index);
  spec.update_domain = index % 2;
  spec.version = "v1";
  spec.generation = generation;
  spec.metadata = {{"image", "base.qcow2"}};
  spec.allocation.resources = Resources{1, 64, 1, 10};
  spec.allocation.ip = "10.0.0." + std::to_string(10 + index);
  char mac[32];
  std::snprintf(mac, sizeof mac, "52:54:00:00:%02x:%02x", (index >> 8) & 0xff, index & 0xff);
  spec.allocation.mac = mac;
  return spec;
}

std::string TestXml(const InstanceSpec& spec, const std::string& bridge = "br-int") {
  DomainXmlOptions options;
  options.domain_type = "test";
  options.bridge = bridge;
  // As the agent builds every domain: with its events channel.
  options.events_socket = "/tmp/regen-test-channels/" + spec.name + ".events.sock";
  auto xml = BuildDomainXml(spec, options);
  EXPECT_TRUE(xml.ok()) << xml.status().ToString();
  return xml.ok() ? *xml : std::string();
}

std::optional<DomainInfo> FindDomain(LibvirtHypervisor& hv, const std::string& name) {
  auto list = hv.ListDomains();
  EXPECT_TRUE(list.ok()) << list.status().ToString();
  if (!list.ok()) return std::nullopt;
  for (const auto& d : *list) {
    if (d.name == name) return d;
  }
  return std::nullopt;
}

class ConnectedHost {
 public:
  explicit ConnectedHost(const std::string& node_xml = kEmptyNodeXml, bool events = true)
      : host(node_xml), hv(host.uri(), events) {
    hv.SetEventCallback([this](const DomainEvent& e) { log.Add(e); });
    Status s = hv.Connect();
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  TestHost host;
  EventLog log;
  LibvirtHypervisor hv;
};

TEST(LibvirtTestDriverTest, DefineStartListEventsDestroy) {
  ConnectedHost h;
  InstanceSpec spec = Spec("web", 0, 4);
  spec.update_domain = 2;
  ASSERT_TRUE(h.hv.DefineAndStart(spec.name, TestXml(spec)).ok());

  // The NIC on br-int with an openvswitch virtualport: the test driver needs no real bridge.
  auto xml = h.hv.DomainXml(spec.name);
  ASSERT_TRUE(xml.ok()) << xml.status().ToString();
  EXPECT_THAT(*xml, HasSubstr("<source bridge='br-int'/>"));
  EXPECT_THAT(*xml, HasSubstr("name='org.regen.events.0'")) << "the events channel is accepted";
  EXPECT_THAT(*xml, HasSubstr("<virtualport type='openvswitch'>"));
  EXPECT_THAT(*xml,
              HasSubstr("<regen:instance xmlns:regen=\"https://regen.dev/xmlns/instance/1\">"));

  auto info = FindDomain(h.hv, spec.name);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->state, DomainState::kRunning);
  EXPECT_EQ(info->reason, "booted");
  EXPECT_TRUE(info->metadata.managed);
  EXPECT_EQ(info->metadata.service, "web");
  EXPECT_EQ(info->metadata.instance, "web-0");
  EXPECT_EQ(info->metadata.update_domain, 2);
  EXPECT_EQ(info->metadata.version, "v1");
  EXPECT_EQ(info->metadata.generation, 4);

  ASSERT_TRUE(h.log.WaitFor("web-0", "defined", "added")) << h.log.Dump();
  ASSERT_TRUE(h.log.WaitFor("web-0", "started", "booted")) << h.log.Dump();
  EXPECT_FALSE(h.log.Find("web-0", "started")->unexpected_stop);

  ASSERT_TRUE(h.hv.DestroyAndUndefine(spec.name).ok());
  ASSERT_TRUE(h.log.WaitFor("web-0", "stopped", "destroyed")) << h.log.Dump();
  EXPECT_FALSE(h.log.Find("web-0", "stopped")->unexpected_stop);
  ASSERT_TRUE(h.log.WaitFor("web-0", "undefined", "removed")) << h.log.Dump();
  EXPECT_FALSE(FindDomain(h.hv, spec.name).has_value());
}

TEST(LibvirtTestDriverTest, AlreadyExistsAndNotFound) {
  ConnectedHost h;
  InstanceSpec spec = Spec("db", 1);
  ASSERT_TRUE(h.hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  Status again = h.hv.DefineAndStart(spec.name, TestXml(spec));
  EXPECT_EQ(again.code(), Code::kAlreadyExists) << again.ToString();
  EXPECT_THAT(again.message(), HasSubstr("db-1"));
  EXPECT_THAT(again.message(), HasSubstr(h.host.uri()));

  Status missing = h.hv.DestroyAndUndefine("nope-0");
  EXPECT_EQ(missing.code(), Code::kNotFound) << missing.ToString();
  EXPECT_THAT(missing.message(), HasSubstr("nope-0"));
  EXPECT_THAT(missing.message(), HasSubstr(h.host.uri()));

  ASSERT_TRUE(h.hv.DestroyAndUndefine(spec.name).ok());
  EXPECT_EQ(h.hv.DestroyAndUndefine(spec.name).code(), Code::kNotFound);
}

TEST(LibvirtTestDriverTest, BadXmlIsRefusedWithLibvirtsMessage) {
  ConnectedHost h;
  Status s = h.hv.DefineAndStart("bad-0", "<domain type='test'><name>bad-0</name></domain>");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("define domain bad-0 on " + h.host.uri()));
  Status garbage = h.hv.DefineAndStart("bad-1", "<domain");
  EXPECT_EQ(garbage.code(), Code::kInvalidArgument) << garbage.ToString();
  // The XML names another domain than the caller asked for: refused before defining anything
  // (an existing web-0 would otherwise get its definition replaced).
  Status other = h.hv.DefineAndStart("web-9", TestXml(Spec("web", 0)));
  EXPECT_EQ(other.code(), Code::kInvalidArgument) << other.ToString();
  EXPECT_THAT(other.message(), HasSubstr("<name>web-9</name>"));
  auto list = h.hv.ListDomains();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST(LibvirtTestDriverTest, StoppedDomainIsDestroyedAndUndefined) {
  ConnectedHost h;
  InstanceSpec spec = Spec("web", 3);
  ASSERT_TRUE(h.hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  ASSERT_TRUE(h.hv.InjectCrash(spec.name).ok());
  ASSERT_TRUE(h.hv.DestroyAndUndefine(spec.name).ok());  // not running: only undefined
  EXPECT_FALSE(FindDomain(h.hv, spec.name).has_value());
}

TEST(LibvirtTestDriverTest, InjectedCrashIsUnexpectedStopAndCrashedState) {
  ConnectedHost h;
  InstanceSpec spec = Spec("web", 1);
  ASSERT_TRUE(h.hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  ASSERT_TRUE(h.hv.InjectCrash(spec.name).ok());
  ASSERT_TRUE(h.log.WaitFor("web-1", "stopped", "crashed")) << h.log.Dump();
  EXPECT_TRUE(h.log.Find("web-1", "stopped", "crashed")->unexpected_stop);
  auto info = FindDomain(h.hv, spec.name);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->state, DomainState::kCrashed);
  EXPECT_EQ(info->reason, "crashed");
  EXPECT_TRUE(info->metadata.managed);
  EXPECT_EQ(h.hv.InjectCrash("nope-0").code(), Code::kNotFound);
}

TEST(LibvirtTestDriverTest, TwoHostsAreIndependent) {
  ConnectedHost a;
  ConnectedHost b;
  InstanceSpec spec = Spec("web", 0);
  ASSERT_TRUE(a.hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  // The same name on the other host is no conflict, and neither host sees the other's domain.
  ASSERT_TRUE(b.hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  InstanceSpec only_b = Spec("web", 1);
  ASSERT_TRUE(b.hv.DefineAndStart(only_b.name, TestXml(only_b)).ok());
  EXPECT_FALSE(FindDomain(a.hv, only_b.name).has_value());
  EXPECT_TRUE(FindDomain(b.hv, only_b.name).has_value());
  ASSERT_TRUE(a.hv.DestroyAndUndefine(spec.name).ok());
  EXPECT_TRUE(FindDomain(b.hv, spec.name).has_value());
  ASSERT_TRUE(b.log.WaitFor("web-1", "started"));
  EXPECT_FALSE(a.log.Find("web-1", "started").has_value()) << a.log.Dump();
}

TEST(LibvirtTestDriverTest, CapacityMatchesNodeFile) {
  ConnectedHost h(NodeXml(12, 24 * 1024 * 1024));
  auto cap = h.hv.Capacity();
  ASSERT_TRUE(cap.ok()) << cap.status().ToString();
  EXPECT_EQ(cap->cpus, 12);
  EXPECT_EQ(cap->memory_mib, 24 * 1024);
  EXPECT_EQ(cap->free_memory_mib, 0);  // no NUMA cells in a node file: the driver says 0

  ConnectedHost defaults;  // <node/>: the driver's defaults
  auto def = defaults.hv.Capacity();
  ASSERT_TRUE(def.ok()) << def.status().ToString();
  EXPECT_EQ(def->cpus, 16);
  EXPECT_EQ(def->memory_mib, 3 * 1024);
}

TEST(LibvirtTestDriverTest, ForeignDomainIsListedUnmanaged) {
  ConnectedHost h;
  const std::string foreign =
      "<domain type='test'><name>legacy-vm</name><memory unit='KiB'>65536</memory>"
      "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>"
      "<metadata><other:app xmlns:other='urn:example:other'><other:x>1</other:x></other:app>"
      "</metadata></domain>";
  ASSERT_TRUE(h.hv.DefineAndStart("legacy-vm", foreign).ok());
  InstanceSpec spec = Spec("web", 0);
  ASSERT_TRUE(h.hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  auto legacy = FindDomain(h.hv, "legacy-vm");
  ASSERT_TRUE(legacy.has_value());
  EXPECT_FALSE(legacy->metadata.managed);
  EXPECT_EQ(legacy->state, DomainState::kRunning);
  EXPECT_TRUE(FindDomain(h.hv, spec.name)->metadata.managed);
}

TEST(LibvirtTestDriverTest, HostileMetadataSurvivesLibvirt) {
  ConnectedHost h;
  InstanceSpec spec = Spec("web", 0);
  spec.version = "v<1>&\"'</regen:version>";
  spec.metadata = {{"a&b\"'<>", "x < y & \"q\" 'z' </regen:meta><evil/>"}};
  ASSERT_TRUE(h.hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  auto info = FindDomain(h.hv, spec.name);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->metadata.version, spec.version);
  EXPECT_EQ(info->metadata.instance, "web-0");
  auto xml = h.hv.DomainXml(spec.name);
  ASSERT_TRUE(xml.ok());
  EXPECT_THAT(*xml, Not(HasSubstr("<evil/>")));
  EXPECT_THAT(*xml, HasSubstr("&lt;/regen:meta&gt;&lt;evil/&gt;"));
}

TEST(LibvirtTestDriverTest, NotConnectedIsUnavailableAndNamesUri) {
  TestHost host;
  LibvirtHypervisor hv(host.uri(), true);
  EXPECT_FALSE(hv.Connected());
  auto list = hv.ListDomains();
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.status().code(), Code::kUnavailable);
  EXPECT_THAT(list.status().message(), HasSubstr(host.uri()));
  EXPECT_EQ(hv.DefineAndStart("a", "<domain/>").code(), Code::kUnavailable);
  EXPECT_EQ(hv.DestroyAndUndefine("a").code(), Code::kUnavailable);
  EXPECT_EQ(hv.Capacity().status().code(), Code::kUnavailable);

  LibvirtHypervisor missing("test:///nonexistent/regen/host.xml", true);
  Status s = missing.Connect();
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("test:///nonexistent/regen/host.xml"));
  EXPECT_FALSE(missing.Connected());
}

TEST(LibvirtTestDriverTest, ConnectTwiceKeepsTheConnectionDisconnectThenReconnect) {
  ConnectedHost h;
  std::atomic<int> connected_calls{0};
  h.hv.SetConnectionCallback([&](bool up) {
    if (up) ++connected_calls;
  });
  InstanceSpec spec = Spec("web", 0);
  ASSERT_TRUE(h.hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  ASSERT_TRUE(h.hv.Connect().ok());  // alive: a no-op, the domain is still there
  EXPECT_TRUE(FindDomain(h.hv, spec.name).has_value());
  // Events still queued when a connection closes are dropped: wait for them first.
  ASSERT_TRUE(h.log.WaitFor("web-0", "started")) << h.log.Dump();

  h.hv.Disconnect();
  EXPECT_FALSE(h.hv.Connected());
  EXPECT_EQ(h.hv.ListDomains().status().code(), Code::kUnavailable);
  ASSERT_TRUE(h.hv.Connect().ok());
  EXPECT_TRUE(h.hv.Connected());
  EXPECT_TRUE(testing::WaitFor([&] { return connected_calls.load() >= 1; }, seconds(5)));
  // The test driver keeps a host's state per connection: a new connection starts from the file.
  auto list = h.hv.ListDomains();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  // Events still arrive on the new connection.
  ASSERT_TRUE(h.hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  EXPECT_TRUE(testing::WaitFor([&] { return h.log.size() >= 4; }, seconds(5))) << h.log.Dump();
}

TEST(LibvirtTestDriverTest, EventsOffDeliversNothing) {
  ConnectedHost h(kEmptyNodeXml, /*events=*/false);
  InstanceSpec spec = Spec("web", 0);
  ASSERT_TRUE(h.hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  ASSERT_TRUE(h.hv.DestroyAndUndefine(spec.name).ok());
  std::this_thread::sleep_for(milliseconds(50));  // proving an absence: nothing to wait for
  EXPECT_EQ(h.log.size(), 0u) << h.log.Dump();
}

TEST(LibvirtTestDriverTest, DestructionWhileEventsAreInFlight) {
  // Callbacks that are slow and outlive nothing: destroying the hypervisor must wait for the one
  // in flight and drop the rest (run under ASan to see a use after free if there were one).
  for (int round = 0; round < 10; ++round) {
    auto log = std::make_shared<EventLog>();
    TestHost host;
    auto hv = std::make_unique<LibvirtHypervisor>(host.uri(), true);
    hv->SetEventCallback([log](const DomainEvent& e) {
      std::this_thread::sleep_for(milliseconds(1));
      log->Add(e);
    });
    ASSERT_TRUE(hv->Connect().ok());
    for (int i = 0; i < 10; ++i) {
      InstanceSpec spec = Spec("web", i);
      ASSERT_TRUE(hv->DefineAndStart(spec.name, TestXml(spec)).ok());
    }
    hv.reset();
    size_t after = log->size();
    std::this_thread::sleep_for(milliseconds(5));
    EXPECT_EQ(log->size(), after) << "a callback ran after the hypervisor was destroyed";
  }
}

TEST(LibvirtTestDriverTest, MeasureHundredDefineAndStart) {
  ConnectedHost h;
  std::vector<std::pair<std::string, std::string>> domains;
  for (int i = 0; i < 100; ++i) {
    InstanceSpec spec = Spec("bench", i);
    domains.emplace_back(spec.name, TestXml(spec));
  }
  auto start = std::chrono::steady_clock::now();
  for (const auto& [name, xml] : domains) ASSERT_TRUE(h.hv.DefineAndStart(name, xml).ok());
  auto started = std::chrono::steady_clock::now();
  auto list = h.hv.ListDomains();
  auto listed = std::chrono::steady_clock::now();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 100u);
  ASSERT_TRUE(
      testing::WaitFor([&] { return h.log.Find("bench-99", "started").has_value(); }, seconds(10)));
  auto events = std::chrono::steady_clock::now();
  for (const auto& [name, xml] : domains) ASSERT_TRUE(h.hv.DestroyAndUndefine(name).ok());
  auto destroyed = std::chrono::steady_clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf(
      "[measure] test driver: 100 define+start %.1f ms, ListDomains(100) %.1f ms, "
      "last started event +%.1f ms, 100 destroy+undefine %.1f ms\n",
      ms(started - start), ms(listed - started), ms(events - start), ms(destroyed - events));
}

TEST(LibvirtMappingTest, EventsAndStates) {
  auto ev = [](int event, int detail) { return LibvirtHypervisor::MapEvent("x", event, detail); };
  // virDomainEventType values: 2 started, 5 stopped, 8 crashed.
  EXPECT_EQ(ev(5, 1).detail, "destroyed");
  EXPECT_FALSE(ev(5, 1).unexpected_stop);
  EXPECT_TRUE(ev(5, 0).unexpected_stop);  // shutdown (by the guest)
  EXPECT_TRUE(ev(5, 2).unexpected_stop);  // crashed
  EXPECT_TRUE(ev(5, 5).unexpected_stop);  // failed (qemu killed)
  EXPECT_EQ(ev(5, 5).detail, "failed");
  EXPECT_FALSE(ev(5, 4).unexpected_stop);  // saved
  EXPECT_TRUE(ev(8, 0).unexpected_stop);
  EXPECT_EQ(ev(8, 0).event, "crashed");
  EXPECT_FALSE(ev(2, 0).unexpected_stop);
  EXPECT_EQ(ev(2, 0).event, "started");
  EXPECT_EQ(ev(2, 0).detail, "booted");
  EXPECT_EQ(ev(99, 0).event, "unknown");
  EXPECT_EQ(ev(5, 99).detail, "unknown");
  // virDomainState values: 1 running, 3 paused, 5 shutoff, 6 crashed.
  EXPECT_EQ(LibvirtHypervisor::MapState(5, 3), DomainState::kCrashed);  // shutoff/crashed
  EXPECT_EQ(LibvirtHypervisor::MapState(5, 6), DomainState::kCrashed);  // shutoff/failed
  EXPECT_EQ(LibvirtHypervisor::MapState(5, 2), DomainState::kShutoff);  // shutoff/destroyed
  EXPECT_EQ(LibvirtHypervisor::MapState(6, 0), DomainState::kCrashed);
  EXPECT_EQ(LibvirtHypervisor::MapState(1, 1), DomainState::kRunning);
  EXPECT_EQ(LibvirtHypervisor::MapState(3, 1), DomainState::kPaused);
  EXPECT_EQ(LibvirtHypervisor::StateReasonName(5, 3), "crashed");
  EXPECT_EQ(LibvirtHypervisor::StateReasonName(1, 1), "booted");
  EXPECT_EQ(LibvirtHypervisor::StateReasonName(5, 2), "destroyed");
}

// --- Connection loss through a private libvirtd ----------------------------------------------

// A session-mode libvirtd of our own (as `nobody` when we are root), serving the test driver
// over a unix socket in a temp dir: killing it is a real connection loss.
class PrivateLibvirtd {
 public:
  explicit PrivateLibvirtd(const std::string& dir) : dir_(dir) {}
  ~PrivateLibvirtd() { Kill(); }

  std::string socket() const { return dir_ + "/run/libvirt/libvirt-sock"; }

  bool Start() {
    std::vector<std::string> argv;
    if (geteuid() == 0) {
      argv = {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"};
    }
    for (const char* a : {"/usr/bin/env", "-i"}) argv.emplace_back(a);
    argv.push_back("HOME=" + dir_);
    argv.push_back("XDG_RUNTIME_DIR=" + dir_ + "/run");
    argv.push_back("XDG_CONFIG_HOME=" + dir_ + "/config");
    argv.push_back("XDG_CACHE_HOME=" + dir_ + "/cache");
    argv.push_back("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    argv.push_back(LibvirtdPath());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string log = dir_ + "/libvirtd.log";
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    int rc = posix_spawn(&pid_, cargv[0], &actions, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      return false;
    }
    return testing::WaitFor([&] { return access(socket().c_str(), F_OK) == 0; }, seconds(20));
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  static std::string LibvirtdPath() {
    for (const char* p : {"/usr/sbin/libvirtd", "/usr/bin/libvirtd"}) {
      if (access(p, X_OK) == 0) return p;
    }
    return "";
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

TEST(LibvirtRemoteTest, ConnectionLossIsReportedAndConnectReconnects) {
  if (PrivateLibvirtd::LibvirtdPath().empty() ||
      (geteuid() == 0 && access("/usr/bin/setpriv", X_OK) != 0)) {
    REGEN_REQUIRE_COMPONENT("libvirtd", "install libvirt-daemon (and util-linux for setpriv)");
  }
  testing::TempDir dir("regen-libvirtd");
  chmod(dir.path().c_str(), 0777);  // the daemon runs as nobody
  testing::WriteFileOrDie(dir.File("host.xml"), NodeXml(4, 4 * 1024 * 1024));
  chmod(dir.File("host.xml").c_str(), 0644);
  PrivateLibvirtd daemon(dir.path());
  ASSERT_TRUE(daemon.Start()) << testing::ReadFileOrDie(dir.File("libvirtd.log"));

  const std::string uri = "test+unix://" + dir.File("host.xml") + "?socket=" + daemon.socket();
  EventLog log;
  std::mutex mu;
  std::vector<bool> connection_changes;
  LibvirtHypervisor hv(uri, true);  // after what its callbacks use: destroyed (stops them) first
  hv.SetEventCallback([&](const DomainEvent& e) { log.Add(e); });
  hv.SetConnectionCallback([&](bool up) {
    std::lock_guard lock(mu);
    connection_changes.push_back(up);
  });
  auto changes = [&] {
    std::lock_guard lock(mu);
    return connection_changes;
  };
  ASSERT_TRUE(testing::WaitFor([&] { return hv.Connect().ok(); }, seconds(10)));
  InstanceSpec spec = Spec("web", 0);
  ASSERT_TRUE(hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  ASSERT_TRUE(log.WaitFor("web-0", "started")) << log.Dump();
  auto cap = hv.Capacity();
  ASSERT_TRUE(cap.ok());
  EXPECT_EQ(cap->cpus, 4);

  daemon.Kill();
  ASSERT_TRUE(testing::WaitFor([&] { return !hv.Connected(); }, seconds(10)));
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto c = changes();
        return std::find(c.begin(), c.end(), false) != c.end();
      },
      seconds(10)));
  auto list = hv.ListDomains();
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.status().code(), Code::kUnavailable) << list.status().ToString();
  Status down = hv.Connect();
  EXPECT_EQ(down.code(), Code::kUnavailable) << down.ToString();
  EXPECT_THAT(down.message(), HasSubstr(uri));

  ASSERT_TRUE(daemon.Start()) << testing::ReadFileOrDie(dir.File("libvirtd.log"));
  ASSERT_TRUE(testing::WaitFor([&] { return hv.Connect().ok(); }, seconds(10)));
  EXPECT_TRUE(hv.Connected());
  auto again = hv.ListDomains();
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->empty());  // a new daemon: a new test-driver state from the file
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto c = changes();
        return !c.empty() && c.back();
      },
      seconds(5)));
  ASSERT_TRUE(hv.DefineAndStart(spec.name, TestXml(spec)).ok());
  // Events flow on the new connection (one "started" before the loss, one after).
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        int n = 0;
        for (const auto& line : {log.Dump()}) {
          for (size_t p = line.find("web-0 started"); p != std::string::npos;
               p = line.find("web-0 started", p + 1)) {
            ++n;
          }
        }
        return n >= 2;
      },
      seconds(5)))
      << log.Dump();
  ASSERT_TRUE(hv.DestroyAndUndefine(spec.name).ok());
}

}  // namespace
}  // namespace regen
