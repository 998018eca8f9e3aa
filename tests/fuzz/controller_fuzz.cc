// libFuzzer target: the real controller (controller/controller.h) over an in-memory store that
// refuses the writes the input chooses (the controller stays up and re-reads the store) or dies at
// a write (kill -9: a new controller loads the store), fed a
// sequence of agent messages (Hello, Heartbeat, DomainsReport, DomainEvent, disconnect) and admin
// requests (apply, drain, failover, service delete, host undrain/cordon, upgrades, maintenance)
// and clock ticks. The input is a regen.fuzz.ControllerInput (fuzz_input.proto), mutated field by
// field by proto_mutator.h; the seeds are text protos. After every step: no instance is in the
// desired set of two hosts, no IP is held twice, memory holds what the store holds; at the end a
// second controller loads what the first one stored. Fuzzer thread only.
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <google/protobuf/stubs/logging.h>

#include "common/log.h"
#include "controller/controller.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_store.h"
#include "tests/fuzz/fuzz_input.pb.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/proto_mutator.h"

namespace regen::fuzz {
namespace {

// The controller process killed at a write (kill -9): the Driver drops the controller where it
// stood and loads a new one from the store, as the restart would.
struct ControllerDied {};

// The FakeStore, with the Nth write of the current step refused when the input says so (a full
// disk, a lost lock: nothing of that write is stored, the controller goes on) or the process
// killed there.
class FlakyStore : public testing::FakeStore {
 public:
  Status Transaction(const std::function<Status(StoreTxn&)>& body) override {
    if (++writes_ == fail_at_) {
      if (die_) throw ControllerDied{};
      return Unavailable("store: refused write (fuzz)");
    }
    return FakeStore::Transaction(body);
  }
  void FailWrite(int nth, bool die = false) {
    writes_ = 0;
    fail_at_ = nth;
    die_ = die;
  }

 private:
  int writes_ = 0;
  int fail_at_ = 0;  // 0: none
  bool die_ = false;
};

class Sink : public AgentSink {
 public:
  void Send(const v1::ControllerMessage& message) override {
    if (message.has_action() && message.action().has_desired()) last_desired = message;
  }
  v1::ControllerMessage last_desired;
};

// The hosts whose desired sets the invariants look at (the dictionary's hosts).
const char* const kHosts[] = {"host-1", "host-2", "host-3", "host-4", "", "Host_5", "h/../6"};

// What the mutator puts into string fields: the hosts, addresses, services, instances and
// versions the controller knows, and bad ones.
const std::vector<std::string>& Dictionary() {
  static const auto* words = [] {
    auto* w = new std::vector<std::string>{"host-1",    "host-2",
                                           "host-3",    "host-4",
                                           "",          "Host_5",
                                           "h/../6",    "192.0.2.1",
                                           "192.0.2.2", "192.0.2.3",
                                           "127.0.0.1", "::1",
                                           "300.1.1.1", "192.0.2.1 ",
                                           "web",       "db",
                                           "v1",        "v2",
                                           "v3",        "auto",
                                           "manual",    "../../etc",
                                           "-x",        "web-",
                                           "10.10.0.2", "52:54:00:00:00:01",
                                           "op-1",      "op-2",
                                           "crashed",   "health check failed"};
    for (int i = 0; i < 14; ++i) w->push_back("web-" + std::to_string(i));
    for (int i = 0; i < 7; ++i) w->push_back("db-" + std::to_string(i));
    return w;
  }();
  return *words;
}

// The values are drawn in statement order (the order of operands of + is unspecified).
std::string SpecYaml(const ServiceKnobs& k) {
  const bool web = k.service() == 0;
  const int instances = static_cast<int>(static_cast<uint32_t>(k.instances()) % 16);
  const int uds = 1 + static_cast<int>(static_cast<uint32_t>(k.update_domains()) % 3);
  const int vcpus = 1 + static_cast<int>(static_cast<uint32_t>(k.vcpus()) % 8);
  return std::string("name: ") + (web ? "web" : "db") +
         "\ninstances: " + std::to_string(instances) + "\nupdate_domains: " + std::to_string(uds) +
         "\nflavor:\n  vcpus: " + std::to_string(vcpus) +
         "\n  memory_mib: 256\nnetwork:\n  subnet: " + (web ? "10.10.0.0/28" : "10.20.0.0/29") +
         "\n  ip_policy: " + (k.keep_ips() ? "keep" : "new") +
         "\nversions:\n  v1: {}\n  v2: {}\nversion: " + (k.version() == "v2" ? "v2" : "v1") + "\n";
}

class Driver {
 public:
  Driver() {
    config_.heartbeat_interval = std::chrono::milliseconds(500);
    config_.fencing_lease = std::chrono::milliseconds(2000);
    config_.host_down_after = std::chrono::milliseconds(3000);
    controller_ = std::make_unique<Controller>(config_, store_, clock_);
    Check(controller_->Load().ok(), "controller: empty store does not load");
  }

  void Step(const ControllerStep& step) {
    // 1-3: that write of the step is refused; 4-6: the process dies at write 1-3.
    const int64_t f = step.fail_write();
    store_.FailWrite(f >= 1 && f <= 6 ? static_cast<int>((f - 1) % 3 + 1) : 0, f >= 4 && f <= 6);
    try {
      Dispatch(step);
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

  void Dispatch(const ControllerStep& step) {
    switch (step.op_case()) {
      case ControllerStep::kHello:
        (void)controller_->OnHello(step.hello(), &sinks_[step.hello().host()]);
        break;
      case ControllerStep::kHeartbeat:
        controller_->OnHeartbeat(step.heartbeat().host(), step.heartbeat(),
                                 &sinks_[step.heartbeat().host()]);
        break;
      case ControllerStep::kReport:
        controller_->OnDomainsReport(step.report().host(), step.report());
        break;
      case ControllerStep::kFaithfulReport:
        FaithfulReport(step.faithful_report());
        break;
      case ControllerStep::kEvent:
        controller_->OnDomainEvent(step.event().host(), step.event());
        break;
      case ControllerStep::kDisconnect:
        controller_->OnDisconnect(step.disconnect(), &sinks_[step.disconnect()]);
        break;
      case ControllerStep::kApply: {
        v1::ApplyServiceRequest req;
        req.set_spec_yaml(SpecYaml(step.apply()));
        req.set_file_name("service.yaml");
        (void)controller_->ApplyService(req);
        break;
      }
      case ControllerStep::kDrain:
        (void)controller_->Drain(step.drain());
        break;
      case ControllerStep::kFailover:
        (void)controller_->Failover(step.failover());
        break;
      case ControllerStep::kDeleteService:
        (void)controller_->DeleteService(step.delete_service());
        break;
      case ControllerStep::kHostChange: {
        const uint32_t v = step.host_change().verb();
        (void)controller_->ChangeHost(step.host_change().request(), v == 0   ? HostVerb::kUndrain
                                                                    : v == 1 ? HostVerb::kCordon
                                                                             : HostVerb::kUncordon);
        break;
      }
      default:
        DispatchMore(step);
    }
  }

  void DispatchMore(const ControllerStep& step) {
    switch (step.op_case()) {
      case ControllerStep::kUpgradeStart:
        (void)controller_->UpgradeStart(step.upgrade_start());
        break;
      case ControllerStep::kUpgradeStep: {
        const auto& req = step.upgrade_step().request();
        switch (step.upgrade_step().what()) {
          case 0:
            (void)controller_->UpgradePause(req);
            break;
          case 1:
            (void)controller_->UpgradeResume(req);
            break;
          case 2:
            (void)controller_->UpgradeNextUd(req);
            break;
          default:
            (void)controller_->UpgradeRollback(req);
        }
        break;
      }
      case ControllerStep::kMaintenanceStart:
        (void)controller_->MaintenanceStart(step.maintenance_start());
        break;
      case ControllerStep::kMaintenanceEnd:
        (void)controller_->MaintenanceEnd(step.maintenance_end());
        break;
      case ControllerStep::kTickMs:
      default:  // an empty step is a tick too
        clock_.Advance(std::chrono::milliseconds(step.tick_ms() % 10000));
        controller_->Tick();
    }
  }

  // The host's last desired set, running (but the skipped ones).
  void FaithfulReport(const regen::fuzz::FaithfulReport& f) {
    v1::DomainsReport report;
    report.set_host(f.host());
    report.set_complete(true);
    int i = 0;
    for (const auto& s : sinks_[f.host()].last_desired.action().desired().instances()) {
      if ((f.skip_mask() >> (i++ % 64)) & 1) continue;
      auto* d = report.add_domains();
      d->set_name(s.name());
      d->set_state(v1::DOMAIN_STATE_RUNNING);
      d->set_generation(s.generation());
      d->set_service(s.service());
      d->set_update_domain(s.update_domain());
      d->set_version(s.version());
    }
    controller_->OnDomainsReport(f.host(), report);
  }

  void CheckInvariants() {
    ClusterState stored(store_);
    Check(stored.Load().ok(), "controller: its store does not load");
    Check(stored.instances() == controller_->instances(),
          "controller: memory holds other instances than the store");
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

  ControllerConfig config_;
  testing::FakeClock clock_;
  FlakyStore store_;
  std::map<std::string, Sink> sinks_;
  std::unique_ptr<Controller> controller_;
};

}  // namespace
}  // namespace regen::fuzz

REGEN_FUZZ_PROTO_MUTATOR(regen::fuzz::ControllerInput)

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  regen::InitLogging("controller_fuzz",
                     "off");                 // the controller's logs would cost most of the time
  google::protobuf::SetLogHandler(nullptr);  // text-format seeds that do not parse, ...
  regen::fuzz::SetStringDictionary(&regen::fuzz::Dictionary());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  regen::fuzz::ControllerInput input;
  if (!regen::fuzz::ParseInput(data, size, &input)) return -1;  // not a ControllerInput: skip
  regen::fuzz::Driver driver;
  int steps = 0;
  for (const auto& step : input.steps()) {
    if (++steps > 64) break;
    driver.Step(step);
  }
  driver.CheckRestart();
  return 0;
}
