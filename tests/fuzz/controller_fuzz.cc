// libFuzzer target: the real controller (controller/controller.h) over an in-memory store that
// fails the writes the input chooses (the controller then dies and restarts from the store), fed a
// sequence of agent messages (Hello, Heartbeat, DomainsReport, DomainEvent, disconnect) and admin
// requests (apply, scale, drain, failover) and clock ticks, all drawn from the input with
// FuzzedDataProvider. After every step: no instance is in the desired set of two hosts, no IP is
// held twice, every instance's host is known; at the end a second controller loads what the first
// one stored (the controller restarts from its own database). Fuzzer thread only.
#include <fuzzer/FuzzedDataProvider.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/log.h"
#include "controller/controller.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_store.h"
#include "tests/fuzz/fuzz_util.h"

namespace regen::fuzz {
namespace {

// A failed state write makes the real controller exit (DieOnStoreWriteFailure, std::_Exit) and
// systemd restart it from the store. Here the failing write throws this instead, the Driver drops
// the controller where it stood and loads a new one from the store, as the restart would.
struct ControllerDied {};

// The FakeStore, with the Nth write of the current step failing when the input says so (a full
// disk, a lost lock): nothing of that write is stored.
class FlakyStore : public testing::FakeStore {
 public:
  Status Transaction(const std::function<Status(StoreTxn&)>& body) override {
    if (++writes_ == fail_at_) throw ControllerDied{};
    return FakeStore::Transaction(body);
  }
  void FailWrite(int nth) {
    writes_ = 0;
    fail_at_ = nth;
  }

 private:
  int writes_ = 0;
  int fail_at_ = 0;  // 0: none
};

class Sink : public AgentSink {
 public:
  void Send(const v1::ControllerMessage& message) override {
    if (message.has_action() && message.action().has_desired()) last_desired = message;
  }
  v1::ControllerMessage last_desired;
};

const char* const kHosts[] = {"host-1", "host-2", "host-3", "host-4", "", "Host_5", "h/../6"};
const char* const kAddresses[] = {"192.0.2.1", "192.0.2.2", "192.0.2.3", "127.0.0.1",
                                  "",          "::1",       "300.1.1.1", "192.0.2.1 "};
const char* const kServices[] = {"web", "db"};

std::string Pick(FuzzedDataProvider& in, const char* const* list, size_t n) {
  return list[in.ConsumeIntegralInRange<size_t>(0, n - 1)];
}
#define PICK(in, list) Pick(in, list, sizeof(list) / sizeof(list[0]))

// The values are drawn in statement order (the order of operands of + is unspecified).
std::string SpecYaml(FuzzedDataProvider& in) {
  const std::string service = PICK(in, kServices);
  const int instances = in.ConsumeIntegralInRange(0, 12);
  const int uds = in.ConsumeIntegralInRange(1, 3);
  const int vcpus = in.ConsumeIntegralInRange(1, 8);
  const bool keep = in.ConsumeBool();
  const bool v1 = in.ConsumeBool();
  std::string subnet = service == "web" ? "10.10.0.0/28" : "10.20.0.0/29";
  return "name: " + service + "\ninstances: " + std::to_string(instances) +
         "\nupdate_domains: " + std::to_string(uds) +
         "\nflavor:\n  vcpus: " + std::to_string(vcpus) +
         "\n  memory_mib: 256\nnetwork:\n  subnet: " + subnet +
         "\n  ip_policy: " + (keep ? "keep" : "new") +
         "\nversions:\n  v1: {}\n  v2: {}\nversion: " + (v1 ? "v1" : "v2") + "\n";
}

class Driver {
 public:
  explicit Driver(FuzzedDataProvider& in) : in_(in) {
    config_.heartbeat_interval = std::chrono::milliseconds(500);
    config_.fencing_lease = std::chrono::milliseconds(2000);
    config_.host_down_after = std::chrono::milliseconds(3000);
    controller_ = std::make_unique<Controller>(config_, store_, clock_);
    Check(controller_->Load().ok(), "controller: empty store does not load");
  }

  void Step() {
    const int fail = in_.ConsumeIntegralInRange(0, 15);
    store_.FailWrite(fail < 3 ? fail + 1 : 0);
    try {
      Dispatch();
    } catch (const ControllerDied&) {
      Restart();
    }
    store_.FailWrite(0);
    CheckInvariants();
  }

  // A second controller loads the first one's store.
  void CheckRestart() {
    Controller again(config_, store_, clock_);
    Status s = again.Load();
    Check(s.ok(), "controller: cannot load its own store: " + s.ToString());
  }

 private:
  // The controller process died in the middle of a step: a new one loads the store. Agents
  // reconnect with a new Hello (when the input sends one).
  void Restart() {
    store_.FailWrite(0);
    controller_.reset();
    sinks_.clear();
    controller_ = std::make_unique<Controller>(config_, store_, clock_);
    Status s = controller_->Load();
    Check(s.ok(), "controller: cannot restart from its own store: " + s.ToString());
  }

  void Dispatch() {
    switch (in_.ConsumeIntegralInRange(0, 10)) {
      case 0:
        Hello();
        break;
      case 1: {
        v1::Heartbeat hb;
        hb.set_host(PICK(in_, kHosts));
        hb.set_sequence(++sequence_);
        hb.set_sent_unix_ms(clock_.WallMillis());
        controller_->OnHeartbeat(hb.host(), hb, &sinks_[hb.host()]);
        break;
      }
      case 2:
        Report(/*faithful=*/true);
        break;
      case 3:
        Report(/*faithful=*/false);
        break;
      case 4:
        Event();
        break;
      case 5: {
        std::string host = PICK(in_, kHosts);
        controller_->OnDisconnect(host, &sinks_[host]);
        break;
      }
      case 6:
      case 7: {
        v1::ApplyServiceRequest req;
        req.set_spec_yaml(SpecYaml(in_));
        req.set_file_name("service.yaml");
        (void)controller_->ApplyService(req);
        break;
      }
      case 8: {
        v1::DrainRequest req;
        req.set_host(PICK(in_, kHosts));
        (void)controller_->Drain(req);
        break;
      }
      case 9: {
        v1::FailoverRequest req;
        req.set_instance(AnInstance());
        if (in_.ConsumeBool()) req.set_to_host(PICK(in_, kHosts));
        (void)controller_->Failover(req);
        break;
      }
      default:
        clock_.Advance(std::chrono::milliseconds(in_.ConsumeIntegralInRange(0, 5000)));
        controller_->Tick();
    }
  }

  void Hello() {
    v1::Hello hello;
    hello.set_host(PICK(in_, kHosts));
    hello.set_address(PICK(in_, kAddresses));
    auto* cap = hello.mutable_capacity();
    cap->set_vcpus(in_.ConsumeIntegralInRange<int64_t>(-4, 64));
    cap->set_memory_mib(in_.ConsumeIntegralInRange<int64_t>(-1, 65536));
    cap->set_disk_gib(in_.ConsumeIntegralInRange<int64_t>(0, 100));
    cap->set_bandwidth_mbps(in_.ConsumeIntegralInRange<int64_t>(0, 10000));
    (void)controller_->OnHello(hello, &sinks_[hello.host()]);
  }

  std::string AnInstance() {
    const auto& all = controller_->instances();
    if (all.empty() || in_.ConsumeIntegralInRange(0, 7) == 0) {
      return "web-" + std::to_string(in_.ConsumeIntegralInRange(0, 20));
    }
    auto it = all.begin();
    std::advance(it, in_.ConsumeIntegralInRange<size_t>(0, all.size() - 1));
    return it->first;
  }

  // faithful: the host's last desired set, running; otherwise arbitrary domains in any state.
  void Report(bool faithful) {
    std::string host = PICK(in_, kHosts);
    v1::DomainsReport report;
    report.set_host(host);
    if (faithful) {
      for (const auto& s : sinks_[host].last_desired.action().desired().instances()) {
        if (in_.ConsumeIntegralInRange(0, 5) == 0) continue;
        auto* d = report.add_domains();
        d->set_name(s.name());
        d->set_state(v1::DOMAIN_STATE_RUNNING);
        d->set_generation(s.generation());
        d->set_service(s.service());
        d->set_update_domain(s.update_domain());
        d->set_version(s.version());
      }
    } else {
      int n = in_.ConsumeIntegralInRange(0, 4);
      for (int i = 0; i < n; ++i) {
        auto* d = report.add_domains();
        d->set_name(AnInstance());
        d->set_state(static_cast<v1::DomainState>(in_.ConsumeIntegralInRange(0, 5)));
        d->set_generation(in_.ConsumeIntegralInRange<int64_t>(-1, 5));
        d->set_service(PICK(in_, kServices));
        d->set_health(static_cast<v1::HealthState>(in_.ConsumeIntegralInRange(0, 3)));
      }
    }
    controller_->OnDomainsReport(host, report);
  }

  void Event() {
    v1::DomainEvent ev;
    ev.set_host(PICK(in_, kHosts));
    ev.set_instance(AnInstance());
    ev.set_generation(in_.ConsumeIntegralInRange<int64_t>(-1, 5));
    ev.set_state(static_cast<v1::DomainState>(in_.ConsumeIntegralInRange(0, 5)));
    ev.set_reason("crashed");
    ev.set_detected_by(v1::DETECTED_BY_EVENT);
    controller_->OnDomainEvent(ev.host(), ev);
  }

  void CheckInvariants() {
    std::map<std::string, std::string> where;  // instance -> host whose desired set has it
    for (const char* host : kHosts) {
      for (const auto& spec : controller_->DesiredFor(host)) {
        auto [it, fresh] = where.emplace(spec.name(), host);
        Check(fresh, "instance " + spec.name() + " desired on " + it->second + " and " + host);
      }
    }
    std::map<std::string, std::string> ips;  // ip -> instance
    for (const auto& [name, inst] : controller_->instances()) {
      if (inst.allocation.ip.empty()) continue;
      auto [it, fresh] = ips.emplace(inst.allocation.ip, name);
      Check(fresh, "ip " + inst.allocation.ip + " held by " + it->second + " and " + name);
    }
  }

  FuzzedDataProvider& in_;
  ControllerConfig config_;
  testing::FakeClock clock_;
  FlakyStore store_;
  std::map<std::string, Sink> sinks_;
  std::unique_ptr<Controller> controller_;
  uint64_t sequence_ = 0;
};

}  // namespace
}  // namespace regen::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  regen::InitLogging("controller_fuzz",
                     "off");  // the controller's logs would cost most of the time
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  regen::fuzz::Driver driver(in);
  for (int step = 0; step < 64 && in.remaining_bytes() > 0; ++step) driver.Step();
  driver.CheckRestart();
  return 0;
}
