// The controller's decisions over a real SQLite store and a fake clock, with agents replaced by
// recording sinks: deploy and spread, healing of failed domains and down hosts, pending
// placements, failover and drain (destroy first), refused specs, restart and scaling; health
// checks (ControllerHealthTest): carried to agents, shown, healed, and gating upgrades.
#include "controller/controller.h"
#include "common/topology_slices.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "controller/domain_report.h"
#include "tests/fakes/controller_harness.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/test_util.h"

namespace regen {

// Readable failure output for EXPECT_EQ on instance maps.
static void PrintTo(const InstanceRecord& i, std::ostream* os) {
  *os << "{" << i.name << " " << i.state << " host=" << i.allocation.host << " gen=" << i.generation
      << " ip=" << i.allocation.ip << " mac=" << i.allocation.mac
      << " moving_from=" << i.moving_from << " reason=\"" << i.reason << "\"}";
}

namespace {

using std::chrono::milliseconds;
using testing::FakeClock;
using testing::TempDir;
using testing::TestAddress;

// Keeps every message the controller sends to one agent session (MessageSink), with lookups.
class RecordingSink : public testing::MessageSink {
 public:
  // Names in the last desired set ({"<none sent>"} when none was sent, so it never matches).
  std::set<std::string> LastDesiredNames() const {
    auto d = LastDesired();
    if (!d) return {"<none sent>"};
    std::set<std::string> names;
    for (const auto& s : *d) names.insert(s.name());
    return names;
  }
  std::optional<v1::InstanceSpec> LastDesiredSpec(const std::string& name) const {
    auto d = LastDesired();
    if (!d) return std::nullopt;
    for (const auto& s : *d)
      if (s.name() == name) return s;
    return std::nullopt;
  }
  int HeartbeatAcks() const {
    int n = 0;
    for (const auto& m : messages) n += m.has_heartbeat_ack() ? 1 : 0;
    return n;
  }
};

constexpr char kWeb6[] = R"(name: web
instances: 6
update_domains: 3
flavor:
  vcpus: 2
  memory_mib: 2048
network:
  subnet: 10.10.0.0/24
versions:
  v1: {}
version: v1
)";

std::string WebSpec(int instances, int update_domains = 3, int vcpus = 2, int memory = 2048) {
  return "name: web\ninstances: " + std::to_string(instances) +
         "\nupdate_domains: " + std::to_string(update_domains) +
         "\nflavor:\n  vcpus: " + std::to_string(vcpus) +
         "\n  memory_mib: " + std::to_string(memory) +
         "\nnetwork:\n  subnet: 10.10.0.0/24\nversions:\n  v1: {}\nversion: v1\n";
}

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.heartbeat_interval = milliseconds(500);
    config_.fencing_lease = milliseconds(2000);
    config_.host_down_after = milliseconds(3000);
    OpenStoreAndController();
  }

  void OpenStoreAndController() {
    auto store = OpenSqliteStore(dir_.File("controller.db"));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    controller_ = std::make_unique<Controller>(config_, *store_, clock_);
    Status s = controller_->Load();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // A controller restart: the old one is gone, a new one loads the same database file.
  void Restart() {
    controller_.reset();
    store_.reset();
    for (auto& [host, sink] : sinks_) {
      retired_sinks_.push_back(std::move(sink));  // the old sessions died with the controller
    }
    sinks_.clear();
    OpenStoreAndController();
  }

  RecordingSink& Sink(const std::string& host) {
    auto& s = sinks_[host];
    if (!s) s = std::make_unique<RecordingSink>();
    return *s;
  }

  Status Hello(const std::string& host, int64_t vcpus = 8, int64_t memory_mib = 8192,
               const std::vector<v1::DomainStatus>& domains = {}) {
    v1::Hello hello;
    hello.set_host(host);
    hello.set_address(TestAddress(host));
    hello.mutable_capacity()->set_vcpus(vcpus);
    hello.mutable_capacity()->set_memory_mib(memory_mib);
    hello.mutable_capacity()->set_disk_gib(100);
    hello.mutable_capacity()->set_bandwidth_mbps(10000);
    hello.set_topology_deltas(true);  // as regen-agent says
    for (const auto& d : domains) *hello.add_domains() = d;
    return controller_->OnHello(hello, &Sink(host));
  }

  void ThreeHosts() {
    for (const char* h : {"host-a", "host-b", "host-c"}) {
      Status s = Hello(h);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }

  Result<v1::ApplyServiceResponse> Apply(const std::string& yaml, const std::string& op = "") {
    v1::ApplyServiceRequest req;
    req.set_spec_yaml(yaml);
    req.set_file_name("service.yaml");
    req.set_operation_id(op);
    return controller_->ApplyService(req);
  }

  void Heartbeat(const std::string& host) {
    v1::Heartbeat hb;
    hb.set_host(host);
    hb.set_sequence(++heartbeat_sequence_);
    controller_->OnHeartbeat(host, hb, &Sink(host));
  }

  const InstanceRecord& Inst(const std::string& name) {
    static const InstanceRecord kMissing = [] {
      InstanceRecord r;
      r.name = "<missing>";
      return r;
    }();
    auto it = controller_->instances().find(name);
    return it == controller_->instances().end() ? kMissing : it->second;
  }

  static v1::DomainStatus Domain(const std::string& name, int64_t generation,
                                 v1::DomainState state = v1::DOMAIN_STATE_RUNNING) {
    v1::DomainStatus d;
    d.set_name(name);
    d.set_state(state);
    d.set_generation(generation);
    d.set_service("web");
    d.set_reason(state == v1::DOMAIN_STATE_CRASHED ? "crashed" : "booted");
    return d;
  }

  void Report(const std::string& host, const std::vector<v1::DomainStatus>& domains) {
    v1::DomainsReport report;
    report.set_host(host);
    for (const auto& d : domains) *report.add_domains() = d;
    controller_->OnDomainsReport(host, report);
  }

  // The host's agent created what it was told last: every instance of its last desired set runs.
  void ReportDesiredRunning(const std::string& host) {
    std::vector<v1::DomainStatus> domains;
    auto desired = Sink(host).LastDesired();
    if (desired) {
      for (const auto& s : *desired) domains.push_back(Domain(s.name(), s.generation()));
    }
    Report(host, domains);
  }

  void AllRunning() {
    for (auto& [host, sink] : sinks_) ReportDesiredRunning(host);
  }

  std::vector<std::string> HostsWithSinks() {
    std::vector<std::string> out;
    for (auto& [host, sink] : sinks_) out.push_back(host);
    return out;
  }

  // Instances the controller places on `host` (by their records).
  std::set<std::string> InstancesOn(const std::string& host) {
    std::set<std::string> out;
    for (const auto& [name, inst] : controller_->instances())
      if (inst.allocation.host == host) out.insert(name);
    return out;
  }

  std::vector<EventRecord> Events(int64_t after = 0) {
    auto events = controller_->EventsAfter(after, 100000);
    EXPECT_TRUE(events.ok()) << events.status().ToString();
    return events.ok() ? *events : std::vector<EventRecord>{};
  }
  int64_t LastEventSequence() {
    auto e = Events();
    return e.empty() ? 0 : e.back().sequence;
  }
  bool HasEvent(const std::string& kind, const std::string& instance, int64_t after = 0) {
    for (const auto& e : Events(after))
      if (EventKindName(e.kind) == kind && e.instance == instance) return true;
    return false;
  }
  size_t MessagesSent() {
    size_t n = 0;
    for (auto& [host, sink] : sinks_) n += sink->messages.size();
    return n;
  }

  void ExpectDistinctAddresses() {
    std::set<std::string> ips, macs;
    for (const auto& [name, inst] : controller_->instances()) {
      if (inst.allocation.mac.empty()) continue;
      EXPECT_TRUE(ips.insert(inst.allocation.ip).second) << "IP held twice: " << name;
      EXPECT_TRUE(macs.insert(inst.allocation.mac).second) << "MAC held twice: " << name;
    }
  }

  // Deploys kWeb6 on three hosts and reports every instance running.
  void DeployRunning() {
    ThreeHosts();
    auto resp = Apply(kWeb6);
    ASSERT_TRUE(resp.ok()) << resp.status().ToString();
    AllRunning();
    for (const auto& [name, inst] : controller_->instances()) {
      ASSERT_EQ(inst.state, InstanceState::kRunning) << name;
    }
  }

  TempDir dir_{"regen-controller-test"};
  ControllerConfig config_;
  FakeClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Controller> controller_;
  std::map<std::string, std::unique_ptr<RecordingSink>> sinks_;
  std::vector<std::unique_ptr<RecordingSink>> retired_sinks_;
  uint64_t heartbeat_sequence_ = 0;
};

TEST_F(ControllerTest, TheServicesDnsNameTravelsWithEachInstance) {
  ThreeHosts();
  std::string yaml = kWeb6;
  yaml.replace(yaml.find("  subnet: 10.10.0.0/24\n"), 23,
               "  subnet: 10.10.0.0/24\n  dns_name: frontend.lab.example\n");
  auto resp = Apply(yaml);
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  auto spec = Sink(Inst("web-0").allocation.host).LastDesiredSpec("web-0");
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->dns_name(), "frontend.lab.example") << "the agent's DNS watch resolves it";
}

TEST_F(ControllerTest, DeploySpreadsInstancesAndSendsEachHostItsSet) {
  ThreeHosts();
  auto resp = Apply(kWeb6, "op-deploy");
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_TRUE(resp->created());
  EXPECT_EQ(resp->pending_size(), 0);
  ASSERT_EQ(controller_->instances().size(), 6u);

  std::map<std::string, std::set<int64_t>> uds_on_host;
  for (const auto& [name, inst] : controller_->instances()) {
    EXPECT_FALSE(inst.allocation.host.empty()) << name;
    EXPECT_EQ(inst.state, InstanceState::kCreating) << name;
    EXPECT_EQ(inst.generation, 1) << name;
    EXPECT_EQ(inst.update_domain, inst.index % 3) << name;
    EXPECT_EQ(inst.allocation.resources.vcpus, 2) << name;
    EXPECT_EQ(inst.allocation.resources.memory_mib, 2048) << name;
    EXPECT_EQ(inst.allocation.ip.rfind("10.10.0.", 0), 0u) << name << " " << inst.allocation.ip;
    EXPECT_TRUE(uds_on_host[inst.allocation.host].insert(inst.update_domain).second)
        << "two instances of update domain " << inst.update_domain << " on "
        << inst.allocation.host;
  }
  ExpectDistinctAddresses();
  for (const char* h : {"host-a", "host-b", "host-c"}) {
    EXPECT_EQ(InstancesOn(h).size(), 2u) << h;
    EXPECT_EQ(Sink(h).LastDesiredNames(), InstancesOn(h)) << h;
    // The desired set carries the allocation.
    auto desired = Sink(h).LastDesired();
    ASSERT_TRUE(desired.has_value()) << h;
    for (const auto& spec : *desired) {
      const InstanceRecord& inst = Inst(spec.name());
      EXPECT_EQ(spec.allocation().host(), h);
      EXPECT_EQ(spec.allocation().ip(), inst.allocation.ip);
      EXPECT_EQ(spec.allocation().mac(), inst.allocation.mac);
      EXPECT_EQ(spec.generation(), 1);
      EXPECT_EQ(spec.version(), "v1");
    }
  }

  // A report with the wrong generation, or a domain not yet running, does not make it running.
  std::string host = Inst("web-0").allocation.host;
  Report(host, {Domain("web-0", 7)});
  EXPECT_EQ(Inst("web-0").state, InstanceState::kCreating);
  Report(host, {Domain("web-0", 1, v1::DOMAIN_STATE_STARTING)});
  EXPECT_EQ(Inst("web-0").state, InstanceState::kCreating);
  // Another host reporting it does not count either.
  std::string other = host == "host-a" ? "host-b" : "host-a";
  Report(other, {Domain("web-0", 1)});
  EXPECT_EQ(Inst("web-0").state, InstanceState::kCreating);

  Report(host, {Domain("web-0", 1)});
  EXPECT_EQ(Inst("web-0").state, InstanceState::kRunning);
  EXPECT_TRUE(HasEvent("running", "web-0"));
  EXPECT_EQ(Inst("web-3").state, InstanceState::kCreating);
  AllRunning();
  for (const auto& [name, inst] : controller_->instances())
    EXPECT_EQ(inst.state, InstanceState::kRunning);
  auto services = controller_->ListServices();
  ASSERT_EQ(services.services_size(), 1);
  EXPECT_EQ(services.services(0).running(), 6);

  // The same operation id again does nothing twice.
  auto before = controller_->instances();
  int64_t seq = LastEventSequence();
  auto again = Apply(kWeb6, "op-deploy");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(controller_->instances(), before);
  EXPECT_TRUE(Events(seq).empty());
}

TEST_F(ControllerTest, CrashedDomainEventHealsOnAnotherHost) {
  DeployRunning();
  const InstanceRecord old = Inst("web-1");
  const std::string old_host = old.allocation.host;

  v1::DomainEvent ev;
  ev.set_host(old_host);
  ev.set_instance("web-1");
  ev.set_generation(1);
  ev.set_state(v1::DOMAIN_STATE_CRASHED);
  ev.set_reason("crashed");
  ev.set_detected_by(v1::DETECTED_BY_EVENT);
  ev.set_detected_unix_ms(clock_.WallMillis());
  int64_t seq = LastEventSequence();
  controller_->OnDomainEvent(old_host, ev);

  const InstanceRecord& now = Inst("web-1");
  EXPECT_NE(now.allocation.host, old_host);
  EXPECT_FALSE(now.allocation.host.empty());
  EXPECT_EQ(now.generation, 2);
  EXPECT_EQ(now.state, InstanceState::kCreating);
  EXPECT_EQ(now.allocation.ip, old.allocation.ip);
  EXPECT_EQ(now.allocation.mac, old.allocation.mac);
  EXPECT_EQ(now.allocation.resources, old.allocation.resources);
  EXPECT_EQ(Sink(old_host).LastDesiredNames().count("web-1"), 0u);
  auto spec = Sink(now.allocation.host).LastDesiredSpec("web-1");
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->generation(), 2);
  EXPECT_EQ(spec->allocation().host(), now.allocation.host);
  EXPECT_EQ(spec->allocation().ip(), old.allocation.ip);
  EXPECT_EQ(spec->allocation().mac(), old.allocation.mac);
  EXPECT_TRUE(HasEvent("failure", "web-1", seq));
  EXPECT_TRUE(HasEvent("reallocation", "web-1", seq));
  ExpectDistinctAddresses();
  // The other instances did not move.
  for (const auto& [name, inst] : controller_->instances()) {
    if (name != "web-1") {
      EXPECT_EQ(inst.generation, 1) << name;
    }
  }

  // Stale failures change nothing: the old generation on the old host, the current generation
  // on a host it does not run on, the old generation on its new host.
  auto before = controller_->instances();
  size_t sent = MessagesSent();
  seq = LastEventSequence();
  controller_->OnDomainEvent(old_host, ev);
  ev.set_generation(2);
  controller_->OnDomainEvent(old_host, ev);
  ev.set_host(now.allocation.host);
  ev.set_generation(1);
  controller_->OnDomainEvent(now.allocation.host, ev);
  ev.set_instance("web-99");
  controller_->OnDomainEvent(now.allocation.host, ev);
  EXPECT_EQ(controller_->instances(), before);
  EXPECT_EQ(MessagesSent(), sent);
  EXPECT_TRUE(Events(seq).empty());

  // The healed instance comes up at generation 2.
  ReportDesiredRunning(Inst("web-1").allocation.host);
  EXPECT_EQ(Inst("web-1").state, InstanceState::kRunning);
}

TEST_F(ControllerTest, CrashedDomainInReportHeals) {
  DeployRunning();
  const InstanceRecord old = Inst("web-2");
  const std::string host = old.allocation.host;
  std::vector<v1::DomainStatus> domains;
  for (const auto& name : InstancesOn(host)) {
    domains.push_back(
        Domain(name, 1, name == "web-2" ? v1::DOMAIN_STATE_CRASHED : v1::DOMAIN_STATE_RUNNING));
  }
  int64_t seq = LastEventSequence();
  Report(host, domains);
  EXPECT_NE(Inst("web-2").allocation.host, host);
  EXPECT_EQ(Inst("web-2").generation, 2);
  EXPECT_EQ(Inst("web-2").allocation.ip, old.allocation.ip);
  EXPECT_EQ(Inst("web-2").allocation.mac, old.allocation.mac);
  EXPECT_TRUE(HasEvent("failure", "web-2", seq));
  EXPECT_TRUE(HasEvent("reallocation", "web-2", seq));
  EXPECT_EQ(Sink(host).LastDesiredNames().count("web-2"), 0u);
  EXPECT_EQ(Sink(Inst("web-2").allocation.host).LastDesiredNames().count("web-2"), 1u);

  // The same report again (the crashed generation-1 domain is still listed) heals nothing more.
  auto before = controller_->instances();
  Report(host, domains);
  EXPECT_EQ(controller_->instances(), before);
}

TEST_F(ControllerTest, SilentHostTurnsSuspectThenDownAndItsInstancesAreHealed) {
  DeployRunning();
  const std::set<std::string> lost = InstancesOn("host-a");
  ASSERT_EQ(lost.size(), 2u);
  std::map<std::string, InstanceRecord> before_down(controller_->instances());

  // host-a's heartbeats come on a sink that is not its session: they do not count.
  RecordingSink impostor;
  auto step = [&](milliseconds d) {
    clock_.Advance(d);
    Heartbeat("host-b");
    Heartbeat("host-c");
    v1::Heartbeat hb;
    hb.set_host("host-a");
    controller_->OnHeartbeat("host-a", hb, &impostor);
    controller_->Tick();
  };
  for (int i = 0; i < 7; ++i) step(milliseconds(100));  // 700 ms < 1.5 x 500 ms
  EXPECT_EQ(controller_->HostState("host-a"), "up");
  step(milliseconds(100));  // 800 ms
  EXPECT_EQ(controller_->HostState("host-a"), "suspect");
  EXPECT_EQ(controller_->HostState("host-b"), "up");
  EXPECT_EQ(controller_->HostState("host-c"), "up");
  EXPECT_TRUE(impostor.messages.empty());
  EXPECT_GT(Sink("host-b").HeartbeatAcks(), 0);
  // The ack tells the agent its lease.
  EXPECT_EQ(Sink("host-b").messages.back().heartbeat_ack().fencing_lease_ms(), 2000);
  // Suspect is not down: nothing moved yet.
  for (const auto& name : lost) EXPECT_EQ(Inst(name).allocation.host, "host-a") << name;

  for (int elapsed_ms = 800; elapsed_ms < 3000; elapsed_ms += 100) {
    step(milliseconds(100));  // up to 3000 ms: not yet down (needs more than host_down_after)
  }
  EXPECT_EQ(controller_->HostState("host-a"), "suspect");
  step(milliseconds(100));
  EXPECT_EQ(controller_->HostState("host-a"), "down");
  for (const auto& name : lost) {
    const InstanceRecord& inst = Inst(name);
    EXPECT_NE(inst.allocation.host, "host-a") << name;
    EXPECT_FALSE(inst.allocation.host.empty()) << name;
    EXPECT_EQ(inst.generation, 2) << name;
    EXPECT_EQ(inst.state, InstanceState::kCreating) << name;
    EXPECT_EQ(inst.allocation.ip, before_down[name].allocation.ip) << name;
    EXPECT_EQ(inst.allocation.mac, before_down[name].allocation.mac) << name;
    EXPECT_EQ(Sink(inst.allocation.host).LastDesiredNames().count(name), 1u) << name;
    EXPECT_TRUE(HasEvent("failure", name)) << name;
    EXPECT_TRUE(HasEvent("reallocation", name)) << name;
  }
  EXPECT_TRUE(InstancesOn("host-a").empty());
  EXPECT_TRUE(controller_->DesiredFor("host-a").empty());
  ExpectDistinctAddresses();
  EXPECT_EQ(InstancesOn("host-b").size(), 3u);
  EXPECT_EQ(InstancesOn("host-c").size(), 3u);

  // Later placements never land on the down host (scale up by one).
  ASSERT_TRUE(Apply(WebSpec(7)).ok());
  EXPECT_NE(Inst("web-6").allocation.host, "host-a");
  EXPECT_FALSE(Inst("web-6").allocation.host.empty());

  // Its agent comes back (after fencing itself) and says Hello: the host is up, its set empty.
  ASSERT_TRUE(Hello("host-a").ok());
  EXPECT_EQ(controller_->HostState("host-a"), "up");
  EXPECT_EQ(Sink("host-a").LastDesiredNames(), std::set<std::string>{});
}

TEST_F(ControllerTest, HeartbeatsKeepAHostUp) {
  ThreeHosts();
  for (int i = 0; i < 100; ++i) {
    clock_.Advance(milliseconds(400));
    for (const char* h : {"host-a", "host-b", "host-c"}) Heartbeat(h);
    controller_->Tick();
  }
  for (const char* h : {"host-a", "host-b", "host-c"}) {
    EXPECT_EQ(controller_->HostState(h), "up") << h;
    EXPECT_EQ(Sink(h).HeartbeatAcks(), 100) << h;
  }
  // A suspect host whose heartbeats resume is up again.
  clock_.Advance(milliseconds(1000));
  controller_->Tick();
  EXPECT_EQ(controller_->HostState("host-a"), "suspect");
  Heartbeat("host-a");
  EXPECT_EQ(controller_->HostState("host-a"), "up");
}

TEST_F(ControllerTest, NothingFitsStaysPendingUntilAHostCanTakeIt) {
  ASSERT_TRUE(Hello("host-a", 1, 8192).ok());
  ASSERT_TRUE(Hello("host-b", 1, 8192).ok());
  auto resp = Apply(WebSpec(2, 1));
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_EQ(resp->pending_size(), 2);
  for (const char* name : {"web-0", "web-1"}) {
    const InstanceRecord& inst = Inst(name);
    EXPECT_EQ(inst.state, InstanceState::kPending) << name;
    EXPECT_TRUE(inst.allocation.host.empty()) << name;
    EXPECT_NE(inst.reason.find("vCPU"), std::string::npos) << inst.reason;
    EXPECT_TRUE(HasEvent("pending", name));
  }
  EXPECT_NE(resp->pending(0).find("vCPU"), std::string::npos) << resp->pending(0);
  EXPECT_EQ(Sink("host-a").LastDesiredNames(), std::set<std::string>{});
  // Ticks do not place them and do not repeat the pending event.
  int64_t seq = LastEventSequence();
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(milliseconds(100));
    Heartbeat("host-a");
    Heartbeat("host-b");
    controller_->Tick();
  }
  EXPECT_EQ(Inst("web-0").state, InstanceState::kPending);
  EXPECT_TRUE(Events(seq).empty());

  // Memory is the missing resource on this one.
  ASSERT_TRUE(Hello("host-m", 8, 1024).ok());
  EXPECT_EQ(Inst("web-0").state, InstanceState::kPending);
  EXPECT_NE(Inst("web-0").reason.find("memory"), std::string::npos) << Inst("web-0").reason;

  ASSERT_TRUE(Hello("host-big", 8, 8192).ok());
  for (const char* name : {"web-0", "web-1"}) {
    EXPECT_EQ(Inst(name).state, InstanceState::kCreating) << name;
    EXPECT_EQ(Inst(name).allocation.host, "host-big") << name;
  }
  EXPECT_EQ(Sink("host-big").LastDesiredNames(), (std::set<std::string>{"web-0", "web-1"}));
  ExpectDistinctAddresses();
}

TEST_F(ControllerTest, SecondAgentForAHostAndBadHostNamesAreRefused) {
  ASSERT_TRUE(Hello("host-a").ok());
  RecordingSink second;
  v1::Hello hello;
  hello.set_host("host-a");
  hello.set_address("192.0.2.99");
  hello.mutable_capacity()->set_vcpus(64);
  hello.mutable_capacity()->set_memory_mib(65536);
  Status s = controller_->OnHello(hello, &second);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("host-a"), std::string::npos) << s.message();
  EXPECT_TRUE(second.messages.empty());
  // The refused Hello changed nothing: capacity is the first agent's.
  auto hosts = controller_->ListHosts();
  ASSERT_EQ(hosts.hosts_size(), 1);
  EXPECT_EQ(hosts.hosts(0).capacity().vcpus(), 8);

  // The same session saying Hello again is fine; after a disconnect another session may speak.
  EXPECT_TRUE(Hello("host-a").ok());
  controller_->OnDisconnect("host-a", &second);  // not its session: ignored
  EXPECT_EQ(controller_->OnHello(hello, &second).code(), Code::kFailedPrecondition);
  controller_->OnDisconnect("host-a", &Sink("host-a"));
  EXPECT_TRUE(controller_->OnHello(hello, &second).ok());

  for (const char* bad : {"", "Host_A", "host a", "-host", "../etc"}) {
    v1::Hello h;
    h.set_host(bad);
    h.mutable_capacity()->set_vcpus(8);
    h.mutable_capacity()->set_memory_mib(8192);
    RecordingSink sink;
    Status r = controller_->OnHello(h, &sink);
    EXPECT_EQ(r.code(), Code::kInvalidArgument) << "\"" << bad << "\": " << r.ToString();
    EXPECT_TRUE(sink.messages.empty());
  }
  EXPECT_EQ(controller_->ListHosts().hosts_size(), 1);
}

TEST_F(ControllerTest, FailoverDestroysFirstThenCreates) {
  DeployRunning();
  const InstanceRecord old = Inst("web-0");
  const std::string from = old.allocation.host;
  std::string to;
  for (const char* h : {"host-a", "host-b", "host-c"})
    if (h != from && to.empty()) to = h;

  v1::FailoverRequest req;
  req.set_instance("web-0");
  req.set_to_host(to);
  req.set_operation_id("op-failover-1");
  auto resp = controller_->Failover(req);
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_EQ(resp->instance().host(), to);
  EXPECT_EQ(resp->instance().state(), "moving");

  const InstanceRecord& inst = Inst("web-0");
  EXPECT_EQ(inst.state, InstanceState::kMoving);
  EXPECT_EQ(inst.allocation.host, to);
  EXPECT_EQ(inst.moving_from, from);
  EXPECT_EQ(inst.allocation.ip, old.allocation.ip);
  EXPECT_EQ(inst.allocation.mac, old.allocation.mac);
  // The old host is told to destroy it; the new host is not yet told to create it.
  EXPECT_EQ(Sink(from).LastDesiredNames().count("web-0"), 0u);
  EXPECT_EQ(Sink(to).LastDesiredNames().count("web-0"), 0u);
  for (const auto& s : controller_->DesiredFor(to)) EXPECT_NE(s.name(), "web-0");

  // The new host's reports and an old-host report still listing it change nothing.
  ReportDesiredRunning(to);
  std::vector<v1::DomainStatus> from_domains;
  for (const auto& name : InstancesOn(from)) from_domains.push_back(Domain(name, 1));
  from_domains.push_back(Domain("web-0", 1));
  Report(from, from_domains);
  EXPECT_EQ(Inst("web-0").state, InstanceState::kMoving);
  EXPECT_EQ(Sink(to).LastDesiredNames().count("web-0"), 0u);
  // Ticks do not finish the move either while the old host is alive.
  clock_.Advance(milliseconds(100));
  controller_->Tick();
  EXPECT_EQ(Inst("web-0").state, InstanceState::kMoving);

  // The old host reports it gone: now the new host creates it.
  from_domains.pop_back();
  Report(from, from_domains);
  EXPECT_EQ(Inst("web-0").state, InstanceState::kCreating);
  EXPECT_TRUE(Inst("web-0").moving_from.empty());
  auto spec = Sink(to).LastDesiredSpec("web-0");
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->generation(), 2);
  EXPECT_EQ(spec->allocation().mac(), old.allocation.mac);
  EXPECT_TRUE(HasEvent("moved", "web-0"));
  EXPECT_TRUE(HasEvent("reallocation", "web-0"));
  ReportDesiredRunning(to);
  EXPECT_EQ(Inst("web-0").state, InstanceState::kRunning);

  // The same operation id again does nothing.
  auto before = controller_->instances();
  int64_t seq = LastEventSequence();
  size_t sent = MessagesSent();
  req.set_to_host(from);
  auto replay = controller_->Failover(req);
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  EXPECT_EQ(replay->instance().host(), to);
  EXPECT_EQ(controller_->instances(), before);
  EXPECT_TRUE(Events(seq).empty());
  EXPECT_EQ(MessagesSent(), sent);
}

// The target of a planned move dies before the old host has let the instance go: once the old
// copy is gone, the instance must be created on a live host, not on the down one.
TEST_F(ControllerTest, MoveWhoseTargetHostGoesDownEndsOnALiveHost) {
  DeployRunning();
  const InstanceRecord old = Inst("web-0");
  const std::string from = old.allocation.host;
  std::string to, third;
  for (const char* h : {"host-a", "host-b", "host-c"}) {
    if (h == from) continue;
    (to.empty() ? to : third) = h;
  }
  v1::FailoverRequest req;
  req.set_instance("web-0");
  req.set_to_host(to);
  ASSERT_TRUE(controller_->Failover(req).ok());
  ASSERT_EQ(Inst("web-0").state, InstanceState::kMoving);

  // `to` goes silent until it is down; the others keep beating.
  for (int elapsed_ms = 0; elapsed_ms <= 3100; elapsed_ms += 100) {
    clock_.Advance(milliseconds(100));
    Heartbeat(from);
    Heartbeat(third);
    controller_->Tick();
  }
  ASSERT_EQ(controller_->HostState(to), "down");
  // Not created anywhere while the old copy may still run.
  EXPECT_EQ(Sink(third).LastDesiredNames().count("web-0"), 0u);

  std::vector<v1::DomainStatus> domains;
  for (const auto& name : InstancesOn(from)) domains.push_back(Domain(name, 1));
  Report(from, domains);  // web-0 is gone from its old host
  const InstanceRecord& inst = Inst("web-0");
  EXPECT_NE(inst.allocation.host, to);
  EXPECT_TRUE(inst.moving_from.empty());
  EXPECT_EQ(inst.state, InstanceState::kCreating);
  EXPECT_EQ(inst.allocation.ip, old.allocation.ip);
  EXPECT_EQ(inst.allocation.mac, old.allocation.mac);
  EXPECT_EQ(Sink(inst.allocation.host).LastDesiredNames().count("web-0"), 1u);
  EXPECT_TRUE(controller_->DesiredFor(to).empty());
  ExpectDistinctAddresses();
}

// As above, but the old host goes down too before it reports: its fencing destroyed the old
// copy, so the instance is healed onto the one live host.
TEST_F(ControllerTest, MoveWhoseHostsBothGoDownEndsOnTheLiveHost) {
  ThreeHosts();  // three instances: the last host can hold them all
  ASSERT_TRUE(Apply(WebSpec(3)).ok());
  AllRunning();
  const InstanceRecord old = Inst("web-0");
  const std::string from = old.allocation.host;
  std::string to, third;
  for (const char* h : {"host-a", "host-b", "host-c"}) {
    if (h == from) continue;
    (to.empty() ? to : third) = h;
  }
  v1::FailoverRequest req;
  req.set_instance("web-0");
  req.set_to_host(to);
  ASSERT_TRUE(controller_->Failover(req).ok());
  for (int elapsed_ms = 0; elapsed_ms <= 3100; elapsed_ms += 100) {
    clock_.Advance(milliseconds(100));
    Heartbeat(from);
    Heartbeat(third);
    controller_->Tick();
  }
  ASSERT_EQ(controller_->HostState(to), "down");
  ASSERT_EQ(Inst("web-0").state, InstanceState::kMoving);
  for (int elapsed_ms = 0; elapsed_ms <= 3100; elapsed_ms += 100) {
    clock_.Advance(milliseconds(100));
    Heartbeat(third);
    controller_->Tick();
  }
  ASSERT_EQ(controller_->HostState(from), "down");
  const InstanceRecord& inst = Inst("web-0");
  EXPECT_EQ(inst.allocation.host, third);
  EXPECT_EQ(inst.state, InstanceState::kCreating);
  EXPECT_TRUE(inst.moving_from.empty());
  EXPECT_EQ(inst.allocation.mac, old.allocation.mac);
  EXPECT_EQ(Sink(third).LastDesiredNames().count("web-0"), 1u);
}

TEST_F(ControllerTest, FailoverRefusals) {
  DeployRunning();
  auto before = controller_->instances();
  int64_t seq = LastEventSequence();
  v1::FailoverRequest req;
  req.set_instance("web-0");
  req.set_to_host(Inst("web-0").allocation.host);
  auto same = controller_->Failover(req);
  ASSERT_FALSE(same.ok());
  EXPECT_EQ(same.status().code(), Code::kInvalidArgument) << same.status().ToString();
  EXPECT_NE(same.status().message().find(req.to_host()), std::string::npos);

  req.set_instance("web-42");
  req.set_to_host("");
  auto unknown = controller_->Failover(req);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Code::kNotFound) << unknown.status().ToString();
  EXPECT_NE(unknown.status().message().find("web-42"), std::string::npos);

  req.set_instance("Web 0!");
  auto invalid = controller_->Failover(req);
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.status().code(), Code::kInvalidArgument) << invalid.status().ToString();

  req.set_instance("web-0");
  req.set_to_host("no-such-host");
  auto nowhere = controller_->Failover(req);
  EXPECT_FALSE(nowhere.ok());

  EXPECT_EQ(controller_->instances(), before);
  EXPECT_TRUE(Events(seq).empty());

  // Without a target the allocator chooses another host.
  req.set_to_host("");
  std::string from = Inst("web-0").allocation.host;
  auto any = controller_->Failover(req);
  ASSERT_TRUE(any.ok()) << any.status().ToString();
  EXPECT_NE(Inst("web-0").allocation.host, from);
  EXPECT_EQ(Inst("web-0").state, InstanceState::kMoving);
  // A moving instance cannot fail over again.
  auto twice = controller_->Failover(req);
  EXPECT_EQ(twice.status().code(), Code::kFailedPrecondition);
}

TEST_F(ControllerTest, DrainEmptiesTheHostAndNothingNewLandsThere) {
  DeployRunning();
  const std::set<std::string> on_a = InstancesOn("host-a");
  ASSERT_EQ(on_a.size(), 2u);
  v1::DrainRequest req;
  req.set_host("host-a");
  auto resp = controller_->Drain(req);
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_EQ(resp->moved_size(), 2);
  EXPECT_EQ(controller_->HostState("host-a"), "draining");
  EXPECT_TRUE(InstancesOn("host-a").empty());
  EXPECT_EQ(Sink("host-a").LastDesiredNames(), std::set<std::string>{});
  for (const auto& name : on_a) {
    EXPECT_EQ(Inst(name).state, InstanceState::kMoving) << name;
    EXPECT_EQ(Inst(name).moving_from, "host-a") << name;
    EXPECT_EQ(Sink(Inst(name).allocation.host).LastDesiredNames().count(name), 0u) << name;
  }
  // host-a's agent destroyed them: they are created on their new hosts.
  Report("host-a", {});
  for (const auto& name : on_a) {
    EXPECT_EQ(Inst(name).state, InstanceState::kCreating) << name;
    EXPECT_EQ(Sink(Inst(name).allocation.host).LastDesiredNames().count(name), 1u) << name;
  }
  AllRunning();
  // Scale up: new instances avoid the draining host; heartbeats keep it draining.
  ASSERT_TRUE(Apply(WebSpec(8)).ok());
  for (const char* name : {"web-6", "web-7"}) {
    EXPECT_FALSE(Inst(name).allocation.host.empty()) << name;
    EXPECT_NE(Inst(name).allocation.host, "host-a") << name;
  }
  Heartbeat("host-a");
  controller_->Tick();
  EXPECT_EQ(controller_->HostState("host-a"), "draining");
  EXPECT_TRUE(InstancesOn("host-a").empty());
  ExpectDistinctAddresses();

  req.set_host("no-such-host");
  EXPECT_EQ(controller_->Drain(req).status().code(), Code::kNotFound);
}

TEST_F(ControllerTest, BadServiceSpecsAreRefusedAndChangeNothing) {
  DeployRunning();
  auto before = controller_->instances();
  int64_t seq = LastEventSequence();
  size_t sent = MessagesSent();

  struct Case {
    std::string yaml;
    std::string expected_in_message;
  };
  std::string unknown_key = std::string(kWeb6) + "colour: red\n";
  std::string bad_count = WebSpec(6);
  bad_count.replace(bad_count.find("instances: 6"), 12, "instances: -3");
  std::vector<Case> cases = {
      {"name: web\ninstances: [6\n", "service.yaml"},
      {unknown_key, "colour"},
      {bad_count, "instances"},
      {WebSpec(6, 3, 4, 2048), "flavor"},
      {WebSpec(6, 2), "update_domains"},
  };
  for (const auto& c : cases) {
    auto r = Apply(c.yaml);
    ASSERT_FALSE(r.ok()) << c.yaml;
    EXPECT_NE(r.status().message().find(c.expected_in_message), std::string::npos)
        << r.status().ToString();
  }
  EXPECT_EQ(controller_->instances(), before);
  EXPECT_TRUE(Events(seq).empty());
  EXPECT_EQ(MessagesSent(), sent);
  auto svc = controller_->GetService("web");
  ASSERT_TRUE(svc.ok());
  EXPECT_EQ(svc->spec_yaml(), kWeb6);
}

TEST_F(ControllerTest, RestartResumesFromTheStore) {
  // Two hosts with room for exactly two instances each: a failure cannot be healed yet.
  ASSERT_TRUE(Hello("host-a", 4, 8192).ok());
  ASSERT_TRUE(Hello("host-b", 4, 8192).ok());
  ASSERT_TRUE(Apply(WebSpec(4, 2)).ok());
  AllRunning();
  for (const auto& [name, inst] : controller_->instances())
    ASSERT_EQ(inst.state, InstanceState::kRunning);
  const InstanceRecord crashed = Inst("web-0");
  v1::DomainEvent ev;
  ev.set_instance("web-0");
  ev.set_generation(1);
  ev.set_state(v1::DOMAIN_STATE_CRASHED);
  controller_->OnDomainEvent(crashed.allocation.host, ev);
  EXPECT_EQ(Inst("web-0").state, InstanceState::kPending);
  EXPECT_FALSE(Inst("web-0").reason.empty());
  EXPECT_TRUE(HasEvent("failure", "web-0"));
  auto before = controller_->instances();
  auto hosts_before = controller_->ListHosts();
  int64_t seq = LastEventSequence();

  Restart();
  EXPECT_EQ(controller_->instances(), before);
  auto hosts_after = controller_->ListHosts();
  ASSERT_EQ(hosts_after.hosts_size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(hosts_after.hosts(i).name(), hosts_before.hosts(i).name());
    EXPECT_EQ(hosts_after.hosts(i).capacity().vcpus(), hosts_before.hosts(i).capacity().vcpus());
  }
  EXPECT_EQ(LastEventSequence(), seq);

  // The hosts come back with what runs there; web-0 still fits nowhere but on a new host.
  for (const char* h : {"host-a", "host-b"}) {
    std::vector<v1::DomainStatus> domains;
    for (const auto& name : InstancesOn(h))
      if (name != "web-0") domains.push_back(Domain(name, 1));
    ASSERT_TRUE(Hello(h, 4, 8192, domains).ok());
  }
  EXPECT_EQ(Inst("web-0").state, InstanceState::kPending);
  EXPECT_EQ(Inst("web-1").state, InstanceState::kRunning);
  ASSERT_TRUE(Hello("host-c", 4, 8192).ok());
  EXPECT_EQ(Inst("web-0").state, InstanceState::kCreating);
  EXPECT_EQ(Inst("web-0").allocation.host, "host-c");
  EXPECT_EQ(Inst("web-0").generation, 2);
  EXPECT_EQ(Inst("web-0").allocation.ip, crashed.allocation.ip);
  EXPECT_EQ(Inst("web-0").allocation.mac, crashed.allocation.mac);
  EXPECT_EQ(Sink("host-c").LastDesiredNames(), std::set<std::string>{"web-0"});
  for (const char* h : {"host-a", "host-b"})
    EXPECT_EQ(Sink(h).LastDesiredNames(), InstancesOn(h)) << h;

  // New instances after the restart get fresh addresses.
  ASSERT_TRUE(Hello("host-d", 16, 16384).ok());
  ASSERT_TRUE(Apply(WebSpec(6, 2)).ok());
  EXPECT_EQ(Inst("web-5").state, InstanceState::kCreating);
  ExpectDistinctAddresses();
  EXPECT_EQ(controller_->instances().size(), 6u);
}

TEST_F(ControllerTest, RestartPlacesInstancesLeftPending) {
  // Deployed while no host could take it, then the controller restarts.
  ASSERT_TRUE(Hello("host-a", 1, 1024).ok());
  ASSERT_TRUE(Apply(WebSpec(3, 3)).ok());
  for (const auto& [name, inst] : controller_->instances())
    ASSERT_EQ(inst.state, InstanceState::kPending);
  auto before = controller_->instances();
  Restart();
  EXPECT_EQ(controller_->instances(), before);
  // host_down_after from the restart, host-a never comes back: down, nothing placed there.
  clock_.Advance(milliseconds(3100));
  controller_->Tick();
  EXPECT_EQ(controller_->HostState("host-a"), "down");
  ASSERT_TRUE(Hello("host-b").ok());
  ASSERT_TRUE(Hello("host-c").ok());
  for (const auto& [name, inst] : controller_->instances()) {
    EXPECT_EQ(inst.state, InstanceState::kCreating) << name;
    EXPECT_TRUE(inst.allocation.host == "host-b" || inst.allocation.host == "host-c") << name;
  }
  ExpectDistinctAddresses();
}

// A planned move in flight when the controller restarts must still complete destroy-first.
// DISABLED: controller/sqlite_store.cc ToJson(InstanceRecord) does not write "moving_from"
// (InstanceFrom reads it), so after a restart the instance is stuck in "moving" with no old
// host and is never created anywhere. Enable once the store persists moving_from.
TEST_F(ControllerTest, RestartDuringAMoveKeepsTheMove) {
  DeployRunning();
  const std::string from = Inst("web-0").allocation.host;
  v1::FailoverRequest req;
  req.set_instance("web-0");
  ASSERT_TRUE(controller_->Failover(req).ok());
  const std::string to = Inst("web-0").allocation.host;
  ASSERT_EQ(Inst("web-0").moving_from, from);
  auto before = controller_->instances();

  Restart();
  EXPECT_EQ(controller_->instances(), before);
  EXPECT_EQ(Inst("web-0").moving_from, from);
  ThreeHosts();
  // The old host's Hello lists no domains: the old copy is gone, so the move finishes (destroy
  // first held across the restart) and only the new host is told to create it.
  EXPECT_EQ(Inst("web-0").moving_from, "");
  EXPECT_EQ(Inst("web-0").state, InstanceState::kCreating);
  EXPECT_EQ(Inst("web-0").allocation.host, to);
  EXPECT_EQ(Sink(to).LastDesiredNames().count("web-0"), 1u);
  EXPECT_EQ(Sink(from).LastDesiredNames().count("web-0"), 0u);
}

TEST_F(ControllerTest, ScaleUpAndDownByReapplying) {
  DeployRunning();
  int64_t seq = LastEventSequence();
  auto down = Apply(WebSpec(4));
  ASSERT_TRUE(down.ok()) << down.status().ToString();
  EXPECT_FALSE(down->created());
  EXPECT_EQ(controller_->instances().size(), 4u);
  EXPECT_EQ(controller_->instances().count("web-4"), 0u);
  EXPECT_EQ(controller_->instances().count("web-5"), 0u);
  for (auto& [host, sink] : sinks_) {
    EXPECT_EQ(sink->LastDesiredNames().count("web-4"), 0u) << host;
    EXPECT_EQ(sink->LastDesiredNames().count("web-5"), 0u) << host;
    EXPECT_EQ(sink->LastDesiredNames(), InstancesOn(host)) << host;
  }
  bool updated = false;
  for (const auto& e : Events(seq)) updated |= e.kind == EventKind::kService;
  EXPECT_TRUE(updated);
  auto svc = controller_->ListServices();
  ASSERT_EQ(svc.services_size(), 1);
  EXPECT_EQ(svc.services(0).instances(), 4);

  auto up = Apply(WebSpec(9));
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  EXPECT_EQ(up->pending_size(), 0);
  EXPECT_EQ(controller_->instances().size(), 9u);
  for (int i = 4; i < 9; ++i) {
    const InstanceRecord& inst = Inst("web-" + std::to_string(i));
    EXPECT_EQ(inst.state, InstanceState::kCreating) << inst.name;
    EXPECT_EQ(inst.update_domain, i % 3) << inst.name;
    EXPECT_FALSE(inst.allocation.host.empty()) << inst.name;
    EXPECT_EQ(Sink(inst.allocation.host).LastDesiredNames().count(inst.name), 1u) << inst.name;
  }
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(Inst("web-" + std::to_string(i)).state, InstanceState::kRunning);
  for (const char* h : {"host-a", "host-b", "host-c"}) EXPECT_EQ(InstancesOn(h).size(), 3u) << h;
  ExpectDistinctAddresses();

  // Persisted: a restart sees 9 instances and the new spec.
  auto before = controller_->instances();
  Restart();
  EXPECT_EQ(controller_->instances(), before);
  EXPECT_EQ(controller_->ListServices().services(0).instances(), 9);
}

// ---------------------------------------------------------------------------------------------
// Health checks: the check travels to the agents, health shows in the instance list, a failed
// probe verdict heals like a crash, and an upgrade counts an upgraded instance only once a probe
// of its new generation passed; health-check failures of upgraded instances fail the upgrade (or
// roll it back with auto_rollback).

constexpr char kWebChecked[] = R"(name: web
instances: 2
update_domains: 2
flavor:
  vcpus: 2
  memory_mib: 2048
network:
  subnet: 10.10.0.0/24
versions:
  v1: {}
  v2: {}
version: v1
health_check: {type: http, port: 8080, path: /healthz, interval: 1s, timeout: 500ms, max_failed: 3}
)";

constexpr char kWebUnchecked[] = R"(name: web
instances: 2
update_domains: 2
flavor:
  vcpus: 2
  memory_mib: 2048
network:
  subnet: 10.10.0.0/24
versions:
  v1: {}
  v2: {}
version: v1
)";

class ControllerHealthTest : public ControllerTest {
 protected:
  struct Health {
    v1::HealthState state = v1::HEALTH_STATE_PASSING;
    bool passed = true;
  };
  static constexpr Health kUnknown{v1::HEALTH_STATE_UNKNOWN, false};
  static constexpr Health kPassing{v1::HEALTH_STATE_PASSING, true};
  static constexpr Health kFailingNeverPassed{v1::HEALTH_STATE_FAILING, false};

  // `host` reports every instance of its last desired set running, with `health` for the named
  // ones and passing for the others.
  void ReportHealth(const std::string& host, const std::map<std::string, Health>& health = {}) {
    std::vector<v1::DomainStatus> domains;
    auto desired = Sink(host).LastDesired();
    if (desired) {
      for (const auto& s : *desired) {
        v1::DomainStatus d = Domain(s.name(), s.generation());
        auto h = health.find(s.name());
        Health value = h == health.end() ? kPassing : h->second;
        d.set_health(value.state);
        d.set_health_passed(value.passed);
        d.set_health_failures(value.state == v1::HEALTH_STATE_FAILING ? 1 : 0);
        domains.push_back(d);
      }
    }
    Report(host, domains);
  }
  void ReportAllHealthy() {
    for (const auto& host : HostsWithSinks()) ReportHealth(host);
  }

  void DeployChecked(const std::string& yaml = kWebChecked) {
    ThreeHosts();
    auto resp = Apply(yaml);
    ASSERT_TRUE(resp.ok()) << resp.status().ToString();
    ReportAllHealthy();
    for (const auto& [name, inst] : controller_->instances())
      ASSERT_EQ(inst.state, InstanceState::kRunning);
  }

  v1::UpgradeStatus StartUpgrade() {
    v1::UpgradeStartRequest r;
    r.set_service("web");
    r.set_to_version("v2");
    r.set_mode("auto");
    auto st = controller_->UpgradeStart(r);
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? *st : v1::UpgradeStatus();
  }
  v1::UpgradeStatus UpgradeStatus() {
    auto st = controller_->UpgradeGet("web");
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? *st : v1::UpgradeStatus();
  }

  // The agent of `instance`'s host reports max_failed failed probes in a row. The domain still
  // runs there: unless `stop_there`, that host then destroys it (its desired set no longer has
  // it) and reports, which lets the new host create it.
  void HealthCheckFails(const std::string& instance, bool stop_there = false) {
    const InstanceRecord inst = Inst(instance);
    v1::DomainEvent ev;
    ev.set_host(inst.allocation.host);
    ev.set_instance(instance);
    ev.set_generation(inst.generation);
    ev.set_state(v1::DOMAIN_STATE_RUNNING);
    ev.set_reason("health check failed 3 times in a row: http GET " + inst.allocation.ip +
                  ":8080/healthz: Connection refused");
    ev.set_detected_by(v1::DETECTED_BY_HEALTH_CHECK);
    ev.set_detected_unix_ms(clock_.WallMillis());
    controller_->OnDomainEvent(inst.allocation.host, ev);
    if (!stop_there) ReportHealth(inst.allocation.host);
  }

  // The messages of the upgrade's events after `after`, one a line.
  std::string UpgradeMessages(int64_t after) {
    std::string out;
    for (const auto& e : Events(after))
      if (e.kind == EventKind::kUpgrade || e.kind == EventKind::kUpgradePreempted)
        out += e.message + "\n";
    return out;
  }

  std::string InfoHealth(const std::string& instance) {
    auto list = controller_->ListInstances("web");
    EXPECT_TRUE(list.ok());
    if (!list.ok()) return "<error>";
    for (const auto& i : list->instances())
      if (i.name() == instance) return i.health();
    return "<missing>";
  }
};

TEST_F(ControllerHealthTest, TheCheckTravelsToTheAgentAndHealthShowsInTheInstanceList) {
  ThreeHosts();
  auto resp = Apply(kWebChecked);
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  const std::string host = Inst("web-0").allocation.host;
  auto spec = Sink(host).LastDesiredSpec("web-0");
  ASSERT_TRUE(spec.has_value());
  ASSERT_TRUE(spec->has_health_check());
  EXPECT_EQ(spec->health_check().type(), "http");
  EXPECT_EQ(spec->health_check().port(), 8080);
  EXPECT_EQ(spec->health_check().path(), "/healthz");
  EXPECT_EQ(spec->health_check().interval_ms(), 1000);
  EXPECT_EQ(spec->health_check().timeout_ms(), 500);
  EXPECT_EQ(spec->health_check().max_failed(), 3);
  // The subnet 10.10.0.0/24 as the guest's network config needs it (issue 16: NoCloud seed).
  EXPECT_EQ(spec->prefix_len(), 24);
  EXPECT_EQ(spec->gateway(), "10.10.0.1");
  EXPECT_EQ(spec->allocation().ip().rfind("10.10.0.", 0), 0u) << spec->allocation().ip();

  EXPECT_EQ(InfoHealth("web-0"), "unknown");  // nothing reported yet
  ReportHealth(host, {{"web-0", kUnknown}});
  EXPECT_EQ(Inst("web-0").state, InstanceState::kRunning);
  EXPECT_EQ(InfoHealth("web-0"), "unknown");
  ReportHealth(host, {{"web-0", kPassing}});
  EXPECT_EQ(InfoHealth("web-0"), "passing");
  ReportHealth(host, {{"web-0", {v1::HEALTH_STATE_FAILING, true}}});
  EXPECT_EQ(InfoHealth("web-0"), "failing");
  EXPECT_EQ(Inst("web-0").state, InstanceState::kRunning)
      << "a failing probe alone is not a failure";
}

TEST_F(ControllerHealthTest, AServiceWithoutACheckShowsNoneAndSendsNoCheck) {
  DeployRunning();
  EXPECT_EQ(InfoHealth("web-0"), "none");
  auto spec = Sink(Inst("web-0").allocation.host).LastDesiredSpec("web-0");
  ASSERT_TRUE(spec.has_value());
  EXPECT_FALSE(spec->has_health_check());
}

TEST_F(ControllerHealthTest, AHealthCheckFailureHealsLikeACrashButDestroysFirst) {
  DeployChecked();
  const InstanceRecord old = Inst("web-1");
  int64_t seq = LastEventSequence();
  HealthCheckFails("web-1", /*stop_there=*/true);
  const InstanceRecord& now = Inst("web-1");
  EXPECT_NE(now.allocation.host, old.allocation.host);
  EXPECT_EQ(now.generation, old.generation + 1);
  EXPECT_EQ(now.allocation.ip, old.allocation.ip);
  // Its domain still runs on the old host: the new host creates it only once that one is gone.
  EXPECT_EQ(now.state, InstanceState::kMoving);
  EXPECT_EQ(now.moving_from, old.allocation.host);
  EXPECT_EQ(Sink(old.allocation.host).LastDesiredNames().count("web-1"), 0u);
  EXPECT_EQ(Sink(now.allocation.host).LastDesiredNames().count("web-1"), 0u);
  ReportHealth(old.allocation.host, {});  // destroyed there
  EXPECT_EQ(now.state, InstanceState::kCreating);
  EXPECT_EQ(Sink(now.allocation.host).LastDesiredNames().count("web-1"), 1u);
  ReportHealth(now.allocation.host, {{"web-1", kUnknown}});
  EXPECT_EQ(now.state, InstanceState::kRunning);
  bool found = false;
  for (const auto& e : Events(seq)) {
    if (e.kind == EventKind::kFailure && e.instance == "web-1") {
      found = true;
      EXPECT_NE(e.message.find("detected by health check"), std::string::npos) << e.message;
      EXPECT_NE(e.message.find("health check failed 3 times"), std::string::npos) << e.message;
    }
  }
  EXPECT_TRUE(found);
  // The old generation's verdict arriving again is stale.
  auto before = controller_->instances();
  v1::DomainEvent ev;
  ev.set_host(old.allocation.host);
  ev.set_instance("web-1");
  ev.set_generation(old.generation);
  ev.set_detected_by(v1::DETECTED_BY_HEALTH_CHECK);
  controller_->OnDomainEvent(old.allocation.host, ev);
  EXPECT_EQ(controller_->instances(), before);
}

TEST_F(ControllerHealthTest, AnUpgradedInstanceCountsForItsUdOnlyAfterAProbePassed) {
  DeployChecked();
  auto st = StartUpgrade();
  EXPECT_EQ(st.state(), "running");
  EXPECT_EQ(st.current_ud(), 0);
  const std::string host0 = Inst("web-0").allocation.host;
  EXPECT_EQ(Inst("web-0").version, "v2");
  EXPECT_EQ(Inst("web-0").generation, 2);
  EXPECT_EQ(Inst("web-1").version, "v1");

  // The old generation's pass (the domain not yet re-created) does not count.
  Report(host0, [&] {
    v1::DomainStatus d = Domain("web-0", 1);
    d.set_health(v1::HEALTH_STATE_PASSING);
    d.set_health_passed(true);
    return std::vector<v1::DomainStatus>{d};
  }());
  EXPECT_EQ(UpgradeStatus().current_ud(), 0);
  // Running at generation 2, not probed yet: running, but UD 0 is not done.
  ReportHealth(host0, {{"web-0", kUnknown}});
  EXPECT_EQ(Inst("web-0").state, InstanceState::kRunning);
  EXPECT_EQ(UpgradeStatus().current_ud(), 0);
  EXPECT_EQ(UpgradeStatus().upgraded_uds_size(), 0);
  EXPECT_EQ(Inst("web-1").version, "v1") << "UD 1 must wait for UD 0's probe";
  EXPECT_EQ(InfoHealth("web-0"), "unknown");
  // A failed probe (fewer than max_failed): still waiting.
  ReportHealth(host0, {{"web-0", kFailingNeverPassed}});
  EXPECT_EQ(UpgradeStatus().current_ud(), 0);
  EXPECT_EQ(Inst("web-1").version, "v1");
  // The first pass: UD 0 is done and UD 1 starts.
  ReportHealth(host0, {{"web-0", kPassing}});
  st = UpgradeStatus();
  EXPECT_EQ(st.current_ud(), 1);
  ASSERT_EQ(st.upgraded_uds_size(), 1);
  EXPECT_EQ(st.upgraded_uds(0), 0);
  EXPECT_EQ(Inst("web-1").version, "v2");
  EXPECT_EQ(Inst("web-1").generation, 2);

  const std::string host1 = Inst("web-1").allocation.host;
  ReportHealth(host1, {{"web-1", kUnknown}});
  EXPECT_EQ(UpgradeStatus().state(), "running");
  ReportHealth(host1, {{"web-1", kPassing}});
  EXPECT_EQ(UpgradeStatus().state(), "completed");
  EXPECT_EQ(controller_->ListServices().services(0).version(), "v2");
}

// ha_e2e_test (CI, issue 15): an upgrade started on a controller elected a moment before, with no
// agent connected yet, and killed at once. The next controller finds UD 0's instance re-created in
// its records (generation 2, not yet running) while its agent still runs generation 1: the agent's
// Hello must bring it generation 2, and the upgrade must go on to completed.
TEST_F(ControllerHealthTest, AnUpgradeStartedBeforeAnyAgentConnectedSurvivesAFailover) {
  DeployChecked(kWebUnchecked);
  std::map<std::string, std::vector<v1::DomainStatus>> running;  // what each host really runs
  for (const auto& [name, inst] : controller_->instances())
    running[inst.allocation.host].push_back(Domain(name, inst.generation));
  Restart();  // elected: nobody connected yet
  StartUpgrade();
  ASSERT_EQ(Inst("web-0").generation, 2);
  ASSERT_EQ(Inst("web-0").state, InstanceState::kCreating);
  Restart();  // killed at once; the next one loads the upgrade
  ASSERT_EQ(UpgradeStatus().state(), "running");
  for (const auto& [host, domains] : running) ASSERT_TRUE(Hello(host, 8, 8192, domains).ok());
  const std::string host0 = Inst("web-0").allocation.host;
  ASSERT_TRUE(Sink(host0).LastDesiredSpec("web-0").has_value()) << "no desired set after the Hello";
  EXPECT_EQ(Sink(host0).LastDesiredSpec("web-0")->generation(), 2);
  for (int round = 0; round < 4 && UpgradeStatus().state() != "completed"; ++round) {
    ReportAllHealthy();  // each agent runs what it was last sent
    clock_.Advance(milliseconds(500));
    controller_->Tick();
  }
  EXPECT_EQ(UpgradeStatus().state(), "completed") << UpgradeStatus().DebugString();
  EXPECT_EQ(Inst("web-0").version, "v2");
  EXPECT_EQ(Inst("web-1").version, "v2");
}

// The controller died between ApplyReport's two commits: the healed instance's "running" was
// stored, the upgrade's HealingDone was not. The next controller sees that the heal is over
// (level-triggered) instead of holding the upgrade pre-empted forever.
TEST_F(ControllerHealthTest, AHealWhoseEndTheUpgradeMissedDoesNotHoldItForever) {
  DeployChecked(kWebUnchecked);
  const InstanceRecord web1 = Inst("web-1");
  v1::DomainEvent ev;
  ev.set_host(web1.allocation.host);
  ev.set_instance("web-1");
  ev.set_generation(web1.generation);
  ev.set_state(v1::DOMAIN_STATE_CRASHED);
  ev.set_reason("crashed");
  ev.set_detected_by(v1::DETECTED_BY_EVENT);
  controller_->OnDomainEvent(web1.allocation.host, ev);
  ASSERT_NE(Inst("web-1").state, InstanceState::kRunning);
  StartUpgrade();
  ASSERT_EQ(UpgradeStatus().state(), "preempted");
  InstanceRecord healed = Inst("web-1");  // runs on its new host; the upgrade never hears of it
  healed.state = InstanceState::kRunning;
  healed.reason.clear();
  controller_.reset();
  ASSERT_TRUE(store_->Transaction([&](StoreTxn& txn) { return txn.PutInstance(healed); }).ok());
  Restart();
  ASSERT_EQ(UpgradeStatus().healing_in_progress_size(), 1) << "the window is not reproduced";
  std::map<std::string, std::vector<v1::DomainStatus>> running;
  for (const auto& [name, inst] : controller_->instances())
    running[inst.allocation.host].push_back(Domain(name, inst.generation));
  for (const auto& [host, domains] : running) ASSERT_TRUE(Hello(host, 8, 8192, domains).ok());
  controller_->Tick();
  EXPECT_EQ(UpgradeStatus().healing_in_progress_size(), 0) << UpgradeStatus().DebugString();
  EXPECT_NE(UpgradeStatus().state(), "preempted");
  for (int round = 0; round < 4 && UpgradeStatus().state() != "completed"; ++round) {
    ReportAllHealthy();
    controller_->Tick();
  }
  EXPECT_EQ(UpgradeStatus().state(), "completed") << UpgradeStatus().DebugString();
}

TEST_F(ControllerHealthTest, WithoutACheckRunningIsEnoughForTheUpgrade) {
  DeployChecked(kWebUnchecked);
  StartUpgrade();
  Report(Inst("web-0").allocation.host, {Domain("web-0", 2)});
  EXPECT_EQ(UpgradeStatus().current_ud(), 1);
  Report(Inst("web-1").allocation.host, {Domain("web-1", 2)});
  EXPECT_EQ(UpgradeStatus().state(), "completed");
}

// During a maintenance nothing is healed, so the failing instance keeps its generation: the
// agent's event and the verdict in its next report are one failure, counted once.
TEST_F(ControllerHealthTest, InAMaintenanceOneHealthFailureCountsOnceAgainstTheUpgrade) {
  config_.max_failed_health_checks = 2;
  Restart();
  DeployChecked();
  StartUpgrade();
  // web-0 (UD 0) runs v2, its probe has not passed: UD 0 is not done.
  ReportHealth(Inst("web-0").allocation.host, {{"web-0", kFailingNeverPassed}});
  ASSERT_EQ(Inst("web-0").version, "v2");
  ASSERT_EQ(UpgradeStatus().state(), "running");
  v1::MaintenanceStartRequest m;
  m.set_duration_ms(600000);
  m.set_reason("switch firmware");
  ASSERT_TRUE(controller_->MaintenanceStart(m).ok());
  int64_t seq = LastEventSequence();
  const std::string host = Inst("web-0").allocation.host;
  HealthCheckFails("web-0", /*stop_there=*/true);
  // Its report says the same (level-triggered: health_failed), twice.
  for (int i = 0; i < 2; ++i) {
    v1::DomainStatus d = Domain("web-0", Inst("web-0").generation);
    d.set_health(v1::HEALTH_STATE_FAILING);
    d.set_health_failed(true);
    d.set_health_failures(3);
    std::vector<v1::DomainStatus> domains{d};
    const auto desired = Sink(host).LastDesired();
    ASSERT_TRUE(desired.has_value());
    for (const auto& s : *desired) {
      if (s.name() != "web-0") domains.push_back(Domain(s.name(), s.generation()));
    }
    Report(host, domains);
  }
  const v1::UpgradeStatus st = UpgradeStatus();
  EXPECT_EQ(st.message(), "web-0 failed its health check (1 of max_failed 2)") << st.DebugString();
  EXPECT_NE(st.state(), "failed") << "one failure counted twice failed the upgrade";
  EXPECT_EQ(UpgradeMessages(seq).find("upgrade failed"), std::string::npos) << UpgradeMessages(seq);
  EXPECT_EQ(Inst("web-0").generation, 2) << "maintenance: not healed";
}

// What the controller keeps per instance goes when the instance does: web-0's failure counted
// at generation 2 in an upgrade of a service that is then deleted must not hide the failure of
// the new web-0 at generation 2 in the next upgrade of the re-created service.
TEST_F(ControllerHealthTest, AFailureCountedForADeletedInstanceDoesNotHideItsNamesakes) {
  config_.max_failed_health_checks = 2;
  Restart();
  DeployChecked();
  StartUpgrade();
  ReportHealth(Inst("web-0").allocation.host, {{"web-0", kFailingNeverPassed}});
  ASSERT_EQ(Inst("web-0").generation, 2);
  int64_t seq = LastEventSequence();
  HealthCheckFails("web-0");
  ASSERT_NE(UpgradeMessages(seq).find("web-0 failed its health check (1 of max_failed 2)"),
            std::string::npos)
      << UpgradeMessages(seq);
  v1::DeleteServiceRequest del;
  del.set_service("web");
  del.set_force(true);
  ASSERT_TRUE(controller_->DeleteService(del).ok());
  ASSERT_TRUE(controller_->instances().empty());
  ReportAllHealthy();

  DeployChecked();
  StartUpgrade();
  ReportHealth(Inst("web-0").allocation.host, {{"web-0", kFailingNeverPassed}});
  ASSERT_EQ(Inst("web-0").version, "v2");
  ASSERT_EQ(Inst("web-0").generation, 2);
  seq = LastEventSequence();
  HealthCheckFails("web-0");
  EXPECT_NE(UpgradeMessages(seq).find("web-0 failed its health check (1 of max_failed 2)"),
            std::string::npos)
      << UpgradeMessages(seq);
}

TEST_F(ControllerHealthTest, UpgradedInstanceFailingItsHealthChecksFailsTheUpgradeThenRollsBack) {
  config_.max_failed_health_checks = 2;
  Restart();
  DeployChecked();
  StartUpgrade();
  // An instance not upgraded (UD 1, v1) failing its check is healed but does not count.
  int64_t seq = LastEventSequence();
  HealthCheckFails("web-1");
  EXPECT_EQ(Inst("web-1").version, "v1");
  EXPECT_EQ(Inst("web-1").generation, 2);
  EXPECT_EQ(UpgradeMessages(seq).find("failed its health check"), std::string::npos)
      << UpgradeMessages(seq);
  ReportHealth(Inst("web-1").allocation.host, {{"web-1", kPassing}});
  EXPECT_EQ(Inst("web-1").state, InstanceState::kRunning);
  EXPECT_EQ(UpgradeStatus().state(), "running");

  // web-0 runs v2 but its probe never passes: 1 of 2.
  ReportHealth(Inst("web-0").allocation.host, {{"web-0", kFailingNeverPassed}});
  seq = LastEventSequence();
  HealthCheckFails("web-0");
  auto st = UpgradeStatus();
  EXPECT_NE(UpgradeMessages(seq).find("web-0 failed its health check (1 of max_failed 2)"),
            std::string::npos)
      << UpgradeMessages(seq);
  EXPECT_EQ(st.state(), "preempted") << "healing web-0 pre-empts the upgrade";
  // Healed (UD being upgraded: with v2) elsewhere; runs, never passes: 2 of 2 -> failed.
  EXPECT_EQ(Inst("web-0").version, "v2");
  EXPECT_EQ(Inst("web-0").generation, 3);
  ReportHealth(Inst("web-0").allocation.host, {{"web-0", kFailingNeverPassed}});
  EXPECT_EQ(UpgradeStatus().state(), "running");
  EXPECT_EQ(UpgradeStatus().current_ud(), 0) << "not passed: UD 0 is not done";
  seq = LastEventSequence();
  HealthCheckFails("web-0");
  st = UpgradeStatus();
  EXPECT_EQ(st.state(), "failed") << st.DebugString();
  EXPECT_NE(UpgradeMessages(seq).find("upgrade failed at UD 0"), std::string::npos)
      << UpgradeMessages(seq);
  EXPECT_EQ(Inst("web-1").version, "v1") << "UD 1 was never upgraded";
  EXPECT_EQ(Inst("web-1").generation, 2);

  // Healed again (still v2, the upgrade stopped where it was); the operator rolls back.
  EXPECT_EQ(Inst("web-0").version, "v2");
  ReportHealth(Inst("web-0").allocation.host, {{"web-0", kUnknown}});
  v1::UpgradeServiceRequest rb;
  rb.set_service("web");
  auto rolled = controller_->UpgradeRollback(rb);
  ASSERT_TRUE(rolled.ok()) << rolled.status().ToString();
  EXPECT_EQ(Inst("web-0").version, "v1");
  EXPECT_EQ(Inst("web-0").state, InstanceState::kCreating);
  ReportHealth(Inst("web-0").allocation.host, {{"web-0", kUnknown}});
  EXPECT_EQ(UpgradeStatus().state(), "rolled_back")
      << "a rollback does not wait for probes: the old version ran before";
  EXPECT_EQ(controller_->ListServices().services(0).version(), "v1");
}

TEST_F(ControllerHealthTest, AutoRollbackOnAHealthCheckFailure) {
  config_.max_failed_health_checks = 1;
  config_.auto_rollback = true;
  Restart();
  DeployChecked();
  StartUpgrade();
  ReportHealth(Inst("web-0").allocation.host, {{"web-0", kFailingNeverPassed}});
  int64_t seq = LastEventSequence();
  HealthCheckFails("web-0");
  auto st = UpgradeStatus();
  EXPECT_EQ(st.state(), "preempted") << st.DebugString();  // rolling back once web-0 is healed
  EXPECT_NE(UpgradeMessages(seq).find("auto_rollback"), std::string::npos) << UpgradeMessages(seq);
  // Healed with the version the rollback goes to (UD 0 is being rolled back: v1).
  EXPECT_EQ(Inst("web-0").version, "v1");
  ReportHealth(Inst("web-0").allocation.host, {{"web-0", kUnknown}});
  EXPECT_EQ(UpgradeStatus().state(), "rolled_back") << UpgradeStatus().DebugString();
  EXPECT_EQ(Inst("web-1").version, "v1");
  EXPECT_EQ(Inst("web-1").generation, 1);
}

// Image staging (issue 6): the upgrade's version image is staged on a host before any instance
// there is re-created with it; a healed instance's new host gets the same stage list.
constexpr char kWebImages[] = R"(name: web
instances: 2
update_domains: 2
flavor:
  vcpus: 2
  memory_mib: 2048
network:
  subnet: 10.10.0.0/24
versions:
  v1: {image: /images/web-v1.qcow2}
  v2: {image: /images/web-v2.qcow2}
version: v1
)";

class ControllerStagingTest : public ControllerHealthTest {
 protected:
  // The stage list of the last desired set sent to `host` ("<none sent>" when none was sent).
  std::vector<std::string> LastStage(const std::string& host) {
    const auto& messages = Sink(host).messages;
    for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
      if (!it->has_action() || !it->action().has_desired()) continue;
      std::vector<std::string> out;
      for (const auto& s : it->action().desired().stage())
        out.push_back(s.service() + "/" + s.version() + "=" + s.image());
      return out;
    }
    return {"<none sent>"};
  }
  // `host` reports its desired domains running and `staged` (version -> error, "" = staged).
  void ReportStaged(const std::string& host, const std::map<std::string, std::string>& staged) {
    v1::DomainsReport report;
    report.set_host(host);
    auto desired = Sink(host).LastDesired();
    if (desired) {
      for (const auto& s : *desired) *report.add_domains() = Domain(s.name(), s.generation());
    }
    for (const auto& [version, error] : staged) {
      auto* s = report.add_staged();
      s->set_service("web");
      s->set_version(version);
      s->set_image("/images/web-" + version + ".qcow2");
      s->set_error(error);
    }
    controller_->OnDomainsReport(host, report);
  }
};

TEST_F(ControllerStagingTest, NoInstanceIsRecreatedBeforeItsHostHasTheImageStaged) {
  DeployChecked(kWebImages);
  const std::string host0 = Inst("web-0").allocation.host;
  const std::string host1 = Inst("web-1").allocation.host;
  ASSERT_NE(host0, host1);
  EXPECT_TRUE(LastStage(host0).empty()) << "nothing staged before an upgrade";

  StartUpgrade();
  const std::vector<std::string> v2{"web/v2=/images/web-v2.qcow2"};
  EXPECT_EQ(LastStage(host0), v2);
  EXPECT_EQ(LastStage(host1), v2) << "every host of the service stages at once, UD 1 included";
  EXPECT_EQ(Inst("web-0").version, "v1") << "re-created before its image was staged";
  EXPECT_EQ(Inst("web-0").generation, 1);

  // Staging fails: reported once as an event naming the error; the upgrade waits.
  int64_t seq = LastEventSequence();
  ReportStaged(host0, {{"v2", "image /images/web-v2.qcow2 does not exist on this host"}});
  ReportStaged(host0, {{"v2", "image /images/web-v2.qcow2 does not exist on this host"}});
  int failed_events = 0;
  for (const auto& e : Events(seq)) {
    if (e.kind != EventKind::kStagingFailed) continue;
    ++failed_events;
    EXPECT_EQ(e.host, host0);
    EXPECT_NE(e.message.find("/images/web-v2.qcow2 does not exist"), std::string::npos)
        << e.message;
  }
  EXPECT_EQ(failed_events, 1);
  EXPECT_EQ(Inst("web-0").version, "v1");

  // Another host's staging does not count for host0.
  ReportStaged(host1, {{"v2", ""}});
  EXPECT_EQ(Inst("web-0").version, "v1");
  EXPECT_EQ(Inst("web-1").version, "v1") << "UD 1 waits for UD 0 even when staged";

  // Staged: web-0 is re-created with v2, then UD 1 (already staged) follows.
  ReportStaged(host0, {{"v2", ""}});
  EXPECT_EQ(Inst("web-0").version, "v2");
  EXPECT_EQ(Inst("web-0").generation, 2);
  ReportStaged(host0, {{"v2", ""}});  // running at generation 2
  EXPECT_EQ(UpgradeStatus().current_ud(), 1);
  EXPECT_EQ(Inst("web-1").version, "v2");
  ReportStaged(host1, {{"v2", ""}});
  EXPECT_EQ(UpgradeStatus().state(), "completed");
  EXPECT_TRUE(LastStage(host0).empty()) << "the staged copy is released when the upgrade ends";
  EXPECT_TRUE(LastStage(host1).empty());
}

TEST_F(ControllerStagingTest, AHealedInstanceOfAPendingUdHasTheStagingOnItsNewHost) {
  DeployChecked(kWebImages);
  const std::string host1 = Inst("web-1").allocation.host;
  StartUpgrade();
  ReportStaged(host1, {{"v2", ""}});
  // web-1 (UD 1, not yet reached) crashes: healed with v1 on another host, which stages v2.
  Report(host1, {Domain("web-1", 1, v1::DOMAIN_STATE_CRASHED)});
  const std::string now = Inst("web-1").allocation.host;
  ASSERT_NE(now, host1);
  EXPECT_EQ(Inst("web-1").version, "v1");
  const std::vector<std::string> v2{"web/v2=/images/web-v2.qcow2"};
  EXPECT_EQ(LastStage(now), v2);
  // The upgrade reaches UD 1 only once the new host has staged it.
  const std::string host0 = Inst("web-0").allocation.host;
  ReportStaged(now, {});  // web-1 runs there: healing is over and the upgrade resumes
  EXPECT_EQ(UpgradeStatus().state(), "running");
  ReportStaged(host0, {{"v2", ""}});
  ReportStaged(host0, {{"v2", ""}});
  EXPECT_EQ(UpgradeStatus().current_ud(), 1) << UpgradeStatus().DebugString();
  EXPECT_EQ(Inst("web-1").version, "v1");
  ReportStaged(now, {{"v2", ""}});
  EXPECT_EQ(Inst("web-1").version, "v2");
}

TEST_F(ControllerStagingTest, VersionsWithoutAnImageNeedNoStaging) {
  DeployChecked(kWebUnchecked);
  StartUpgrade();
  EXPECT_TRUE(LastStage(Inst("web-0").allocation.host).empty());
  EXPECT_EQ(Inst("web-0").version, "v2");
}

// ---------------------------------------------------------------------------------------------
// Topology revisions: bumped on every location change, pushed to every connected agent before the
// desired sets, the latest one to an agent that says Hello, acks recorded per host.

class ControllerTopologyTest : public ControllerTest {
 protected:
  // The host's slice as its agent has it after each topology message it received, in order
  // (whole slices and deltas applied as the network agent does).
  static std::vector<v1::TopologyRevision> Topologies(const RecordingSink& sink) {
    std::vector<v1::TopologyRevision> out;
    v1::TopologyRevision have;
    for (const auto& m : sink.messages) {
      if (!m.has_topology()) continue;
      const v1::TopologyRevision& t = m.topology();
      if (t.base_revision() != 0) {
        EXPECT_EQ(t.base_revision(), have.revision()) << "a delta on a revision it does not have";
        have = ApplyTopologyDelta(have, t);
      } else {
        have = t;
      }
      out.push_back(have);
    }
    return out;
  }
  // The topology messages themselves, as sent.
  static std::vector<v1::TopologyRevision> Sent(const RecordingSink& sink) {
    std::vector<v1::TopologyRevision> out;
    for (const auto& m : sink.messages)
      if (m.has_topology()) out.push_back(m.topology());
    return out;
  }
  static int64_t LastRevision(const RecordingSink& sink) {
    auto t = Topologies(sink);
    return t.empty() ? 0 : t.back().revision();
  }
  static const v1::TopologyInstance* Find(const v1::TopologyRevision& t, const std::string& name) {
    for (const auto& i : t.instances())
      if (i.name() == name) return &i;
    return nullptr;
  }
  // Index of the first message after `from` that is a topology / a desired set (-1: none).
  static int FirstIndex(const RecordingSink& sink, size_t from, bool topology) {
    for (size_t i = from; i < sink.messages.size(); ++i) {
      const auto& m = sink.messages[i];
      if (topology ? m.has_topology() : (m.has_action() && m.action().has_desired()))
        return static_cast<int>(i);
    }
    return -1;
  }
  void CrashEvent(const std::string& instance) {
    const InstanceRecord& inst = Inst(instance);
    v1::DomainEvent ev;
    ev.set_host(inst.allocation.host);
    ev.set_instance(instance);
    ev.set_generation(inst.generation);
    ev.set_state(v1::DOMAIN_STATE_CRASHED);
    ev.set_reason("crashed");
    ev.set_detected_by(v1::DETECTED_BY_EVENT);
    controller_->OnDomainEvent(inst.allocation.host, ev);
  }
  int64_t AppliedOf(const std::string& host) {
    const v1::ListHostsResponse hosts = controller_->ListHosts();
    for (const auto& h : hosts.hosts())
      if (h.name() == host) return h.applied_topology_revision();
    return -1;
  }
};

TEST_F(ControllerTopologyTest, DeployPushesRevisionOneWithEveryInstanceAndHostToEveryAgent) {
  EXPECT_EQ(controller_->topology_revision(), 0);
  DeployRunning();
  EXPECT_EQ(controller_->topology_revision(), 1);  // running reports change no location
  for (const char* host : {"host-a", "host-b", "host-c"}) {
    auto t = Topologies(Sink(host));
    ASSERT_EQ(t.size(), 1u) << host;
    EXPECT_EQ(t[0].revision(), 1);
    EXPECT_EQ(t[0].instances_size(), 6);
    ASSERT_EQ(t[0].hosts_size(), 3);
    for (const auto& h : t[0].hosts()) EXPECT_EQ(h.address(), TestAddress(h.name())) << h.name();
    for (const auto& i : t[0].instances()) {
      const InstanceRecord& rec = Inst(i.name());
      EXPECT_EQ(i.service(), "web");
      EXPECT_EQ(i.host(), rec.allocation.host);
      EXPECT_EQ(i.ip(), rec.allocation.ip);
      EXPECT_EQ(i.mac(), rec.allocation.mac);
      EXPECT_EQ(i.generation(), 1);
    }
  }
  auto events = Events();
  EXPECT_EQ(std::count_if(events.begin(), events.end(),
                          [](const EventRecord& e) { return e.kind == EventKind::kTopology; }),
            1);
}

TEST_F(ControllerTopologyTest, HealPushesTheNewLocationToEveryAgentWhileTheInstanceIsCreated) {
  DeployRunning();
  const std::string old_host = Inst("web-1").allocation.host;
  std::map<std::string, size_t> before;
  for (const char* host : {"host-a", "host-b", "host-c"}) before[host] = Sink(host).messages.size();
  CrashEvent("web-1");
  const InstanceRecord now = Inst("web-1");
  ASSERT_NE(now.allocation.host, old_host);
  EXPECT_EQ(now.state, InstanceState::kCreating);
  EXPECT_EQ(controller_->topology_revision(), 2);
  for (const char* host : {"host-a", "host-b", "host-c"}) {
    EXPECT_EQ(LastRevision(Sink(host)), 2) << host;
    const v1::TopologyRevision last = Topologies(Sink(host)).back();
    const v1::TopologyInstance* ti = Find(last, "web-1");
    ASSERT_NE(ti, nullptr);
    EXPECT_EQ(ti->host(), now.allocation.host);
    EXPECT_EQ(ti->generation(), 2);
    EXPECT_EQ(ti->mac(), now.allocation.mac);
    EXPECT_EQ(ti->ip(), now.allocation.ip);
  }
  // The new host learns the topology before it is told to create the domain.
  int topo = FirstIndex(Sink(now.allocation.host), before[now.allocation.host], true);
  int desired = FirstIndex(Sink(now.allocation.host), before[now.allocation.host], false);
  ASSERT_GE(topo, 0);
  ASSERT_GE(desired, 0);
  EXPECT_LT(topo, desired);
  // Coming up there changes no location: no new revision.
  ReportDesiredRunning(now.allocation.host);
  EXPECT_EQ(Inst("web-1").state, InstanceState::kRunning);
  EXPECT_EQ(controller_->topology_revision(), 2);
}

TEST_F(ControllerTopologyTest, FailoverDrainAndScaleDownEachBumpTheRevision) {
  DeployRunning();
  v1::FailoverRequest f;
  f.set_instance("web-0");
  ASSERT_TRUE(controller_->Failover(f).ok());
  EXPECT_EQ(controller_->topology_revision(), 2);
  for (auto& host : HostsWithSinks()) EXPECT_EQ(LastRevision(Sink(host)), 2) << host;
  AllRunning();
  AllRunning();
  int64_t rev = controller_->topology_revision();
  v1::DrainRequest d;
  d.set_host("host-c");
  ASSERT_TRUE(controller_->Drain(d).ok());
  EXPECT_GT(controller_->topology_revision(), rev);
  rev = controller_->topology_revision();
  for (auto& host : HostsWithSinks()) EXPECT_EQ(LastRevision(Sink(host)), rev) << host;
  AllRunning();
  AllRunning();
  rev = controller_->topology_revision();
  ASSERT_TRUE(Apply(WebSpec(4)).ok());
  EXPECT_EQ(controller_->topology_revision(), rev + 1);
  auto t = Topologies(Sink("host-a")).back();
  EXPECT_EQ(t.instances_size(), 4);
  EXPECT_EQ(Find(t, "web-5"), nullptr);
}

TEST_F(ControllerTopologyTest, AcksAreRecordedPerHostAndHelloGetsTheLatestRevision) {
  DeployRunning();
  CrashEvent("web-2");
  ASSERT_EQ(controller_->topology_revision(), 2);
  v1::TopologyApplied a;
  a.set_revision(2);
  controller_->OnTopologyApplied("host-a", a, &Sink("host-a"));
  a.set_revision(1);
  controller_->OnTopologyApplied("host-b", a, &Sink("host-b"));
  RecordingSink stranger;  // not the host's session: ignored
  a.set_revision(7);
  controller_->OnTopologyApplied("host-c", a, &stranger);
  EXPECT_EQ(AppliedOf("host-a"), 2);
  EXPECT_EQ(AppliedOf("host-b"), 1);
  EXPECT_EQ(AppliedOf("host-c"), 0);

  // A host that joins (no instance, so no new revision) gets revision 2 before anything else.
  ASSERT_TRUE(Hello("host-d").ok());
  EXPECT_EQ(controller_->topology_revision(), 2);
  ASSERT_FALSE(Sink("host-d").messages.empty());
  EXPECT_TRUE(Sink("host-d").messages.front().has_topology());
  EXPECT_EQ(LastRevision(Sink("host-d")), 2);
}

TEST_F(ControllerTopologyTest, TheRevisionSurvivesARestartAndKeepsGrowing) {
  DeployRunning();
  CrashEvent("web-3");
  ASSERT_EQ(controller_->topology_revision(), 2);
  // The domains each agent runs (a Hello lists them all: missing ones would be gone).
  std::map<std::string, std::vector<v1::DomainStatus>> listed;
  for (const auto& [name, inst] : controller_->instances()) {
    if (inst.state == InstanceState::kRunning) {
      listed[inst.allocation.host].push_back(Domain(name, inst.generation));
    }
  }
  Restart();
  EXPECT_EQ(controller_->topology_revision(), 2);  // same state: same revision
  for (const char* host : {"host-a", "host-b", "host-c"}) {
    ASSERT_TRUE(Hello(host, 8, 8192, listed[host]).ok());
  }
  for (const char* host : {"host-a", "host-b", "host-c"}) EXPECT_EQ(LastRevision(Sink(host)), 2);
  AllRunning();
  CrashEvent("web-4");
  EXPECT_EQ(controller_->topology_revision(), 3);
  for (const char* host : {"host-a", "host-b", "host-c"}) EXPECT_EQ(LastRevision(Sink(host)), 3);
}

// Issue 17: a heal reaches only the hosts that run its service, as a delta of what changed; a
// host that runs nothing of it hears nothing; a host new to the service gets all of it.
TEST_F(ControllerTopologyTest, AHealSendsOnlyItsChangeToTheHostsOfItsService) {
  for (const char* h : {"host-a", "host-b", "host-c", "host-d"}) ASSERT_TRUE(Hello(h).ok());
  ASSERT_TRUE(Apply(WebSpec(2, 2)).ok());
  AllRunning();
  const std::string h0 = Inst("web-0").allocation.host;
  const std::string h1 = Inst("web-1").allocation.host;
  std::map<std::string, size_t> before;
  for (auto& host : HostsWithSinks()) before[host] = Sent(Sink(host)).size();
  CrashEvent("web-0");
  const std::string now = Inst("web-0").allocation.host;
  ASSERT_NE(now, h0);
  ASSERT_NE(now, h1);
  const int64_t rev = controller_->topology_revision();
  for (auto& host : HostsWithSinks()) {
    auto sent = Sent(Sink(host));
    if (host != h0 && host != h1 && host != now) {
      EXPECT_EQ(sent.size(), before[host]) << host << " runs no web instance, before or after";
      continue;
    }
    ASSERT_EQ(sent.size(), before[host] + 1) << host;
    EXPECT_EQ(sent.back().revision(), rev);
    if (host != now) {  // `now` was sent nothing before (it ran nothing): its whole slice
      EXPECT_NE(sent.back().base_revision(), 0) << host << ": a delta, not the whole slice";
    }
  }
  // web-1's host: only web-0's new entry.
  ASSERT_EQ(Sent(Sink(h1)).back().instances_size(), 1);
  EXPECT_EQ(Sent(Sink(h1)).back().instances(0).host(), now);
  // The failed host runs nothing any more: web leaves its slice.
  EXPECT_EQ(Topologies(Sink(h0)).back().instances_size(), 0);
  // The new host: the whole service.
  EXPECT_EQ(Topologies(Sink(now)).back().instances_size(), 2);
}

// An agent whose delta did not apply asks for its whole slice, and gets it at once.
TEST_F(ControllerTopologyTest, AnAgentThatAsksGetsItsWholeSlice) {
  DeployRunning();
  CrashEvent("web-2");
  const std::string host = Inst("web-2").allocation.host;
  size_t n = Sent(Sink(host)).size();
  v1::TopologyApplied ask;
  ask.set_revision(1);
  ask.set_snapshot_needed(true);
  controller_->OnTopologyApplied(host, ask, &Sink(host));
  auto sent = Sent(Sink(host));
  ASSERT_EQ(sent.size(), n + 1);
  EXPECT_EQ(sent.back().base_revision(), 0);
  EXPECT_EQ(sent.back().revision(), controller_->topology_revision());
  EXPECT_EQ(sent.back().instances_size(), 6);
}

TEST_F(ControllerTopologyTest, EachUpgradeStepBumpsTheRevision) {
  ThreeHosts();
  ASSERT_TRUE(Apply(kWebUnchecked).ok());
  AllRunning();
  const int64_t deployed = controller_->topology_revision();
  ASSERT_EQ(deployed, 1);
  v1::UpgradeStartRequest r;
  r.set_service("web");
  r.set_to_version("v2");
  r.set_mode("auto");
  ASSERT_TRUE(controller_->UpgradeStart(r).ok());
  // UD 0 is re-created with v2 at generation 2: a new revision, on every agent of the service
  // (web's two instances are on two of the three hosts; the third hears of none of this).
  EXPECT_EQ(controller_->topology_revision(), deployed + 1);
  const std::string h0 = Inst("web-0").allocation.host;
  const std::string h1 = Inst("web-1").allocation.host;
  for (auto& host : HostsWithSinks()) {
    EXPECT_EQ(LastRevision(Sink(host)), host == h0 || host == h1 ? deployed + 1 : 0) << host;
  }
  EXPECT_EQ(Find(Topologies(Sink(h1)).back(), "web-0")->generation(), 2);
  AllRunning();  // UD 0 done: UD 1 next
  EXPECT_EQ(controller_->topology_revision(), deployed + 2);
  AllRunning();
  EXPECT_EQ(controller_->topology_revision(), deployed + 2);  // done: nothing moved
  for (const std::string& host : {h0, h1}) {
    const v1::TopologyRevision last = Topologies(Sink(host)).back();
    EXPECT_EQ(last.instances_size(), 2) << host;
    for (const auto& i : last.instances()) EXPECT_EQ(i.generation(), 2) << i.name();
  }
}

}  // namespace
}  // namespace regen

namespace regen {
namespace {

// Issue 15 finding 6: the controller acts on the current state a report gives. A running
// instance missing from a complete report is gone and healed once; a partial report says
// nothing of what it leaves out.
TEST_F(ControllerTest, ADomainMissingFromACompleteReportIsHealedOnce) {
  DeployRunning();
  const InstanceRecord old = Inst("web-2");
  const std::string host = old.allocation.host;
  v1::DomainsReport report;
  report.set_host(host);
  for (const auto& name : InstancesOn(host)) {
    if (name != "web-2") *report.add_domains() = Domain(name, 1);
  }
  int64_t seq = LastEventSequence();
  auto before = controller_->instances();
  controller_->OnDomainsReport(host, report);  // partial: not declared complete
  EXPECT_EQ(controller_->instances(), before);

  report.set_complete(true);
  controller_->OnDomainsReport(host, report);
  EXPECT_NE(Inst("web-2").allocation.host, host);
  EXPECT_EQ(Inst("web-2").generation, 2);
  EXPECT_EQ(Inst("web-2").allocation.ip, old.allocation.ip);
  EXPECT_TRUE(HasEvent("failure", "web-2", seq));
  EXPECT_EQ(Sink(host).LastDesiredNames().count("web-2"), 0u);
  int failures = 0;
  for (const auto& e : Events(seq)) failures += e.kind == EventKind::kFailure;
  EXPECT_EQ(failures, 1);

  // The same report again, and a Hello after a reconnect listing the same: no second heal.
  before = controller_->instances();
  seq = LastEventSequence();
  controller_->OnDomainsReport(host, report);
  EXPECT_EQ(controller_->instances(), before);
  EXPECT_TRUE(Events(seq).empty());
  // Its new host has not created it yet (creating): missing there is not gone.
  v1::DomainsReport other;
  other.set_host(Inst("web-2").allocation.host);
  other.set_complete(true);
  for (const auto& name : InstancesOn(other.host())) {
    if (name != "web-2") *other.add_domains() = Domain(name, 1);
  }
  controller_->OnDomainsReport(other.host(), other);
  EXPECT_EQ(controller_->instances(), before);
}

// A health verdict whose DomainEvent was lost (the link was down) still heals: the report after
// the reconnect carries the domain's current health. Once.
TEST_F(ControllerHealthTest, AHealthVerdictInAReportHealsOnceWithoutItsEvent) {
  DeployChecked();
  const InstanceRecord old = Inst("web-0");
  const std::string host = old.allocation.host;
  v1::DomainsReport report;
  report.set_host(host);
  report.set_complete(true);
  const auto desired = Sink(host).LastDesired();
  ASSERT_TRUE(desired.has_value());
  for (const auto& s : *desired) {
    v1::DomainStatus d = Domain(s.name(), s.generation());
    d.set_health(v1::HEALTH_STATE_PASSING);
    d.set_health_passed(true);
    if (s.name() == "web-0") {
      d.set_health(v1::HEALTH_STATE_FAILING);
      d.set_health_failures(4);
      d.set_health_failed(true);
      d.set_health_detail("http GET " + old.allocation.ip + ":8080/healthz: not an HTTP answer");
    }
    *report.add_domains() = d;
  }
  int64_t seq = LastEventSequence();
  controller_->OnDomainsReport(host, report);
  EXPECT_NE(Inst("web-0").allocation.host, host);
  EXPECT_EQ(Inst("web-0").generation, old.generation + 1);
  EXPECT_TRUE(HasEvent("failure", "web-0", seq));
  bool named = false;
  for (const auto& e : Events(seq)) {
    named = named || e.message.find("not an HTTP answer") != std::string::npos;
  }
  EXPECT_TRUE(named);

  // Reported again, then its (late) event: nothing more.
  auto before = controller_->instances();
  seq = LastEventSequence();
  controller_->OnDomainsReport(host, report);
  v1::DomainEvent ev = HealthFailureEvent(host, report.domains(0));
  for (const auto& d : report.domains()) {
    if (d.name() == "web-0") ev = HealthFailureEvent(host, d);
  }
  controller_->OnDomainEvent(host, ev);
  EXPECT_EQ(controller_->instances(), before);
  EXPECT_TRUE(Events(seq).empty());
}

}  // namespace
}  // namespace regen
