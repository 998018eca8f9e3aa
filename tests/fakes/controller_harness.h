// A Controller (controller/controller.h) over a real SQLite store in a temp dir and a fake clock,
// with agents replaced by recording sinks: for tests of what hangs off the controller (DNS
// wiring, notifications). Header-only; link regen_controller_lib. Test thread only.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "controller/controller.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {

// Keeps every message the controller sends to one agent session.
class MessageSink : public AgentSink {
 public:
  void Send(const v1::ControllerMessage& message) override { messages.push_back(message); }
  std::optional<std::vector<v1::InstanceSpec>> LastDesired() const {
    for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
      if (it->has_action() && it->action().has_desired()) {
        const auto& d = it->action().desired().instances();
        return std::vector<v1::InstanceSpec>(d.begin(), d.end());
      }
    }
    return std::nullopt;
  }
  std::vector<v1::InstanceNotification> Notifications() const {
    std::vector<v1::InstanceNotification> out;
    for (const auto& m : messages) {
      if (m.has_notification()) out.push_back(m.notification());
    }
    return out;
  }
  std::vector<v1::ControllerMessage> messages;
};

// "web" with `instances` instances in 2 UDs, 1 vCPU / 256 MiB each, subnet 10.10.0.0/24.
inline std::string WebSpecYaml(int instances, const std::string& ip_policy = "keep",
                               const std::string& dns_name = "") {
  std::string yaml = "name: web\ninstances: " + std::to_string(instances) +
                     "\nupdate_domains: 2\nflavor:\n  vcpus: 1\n  memory_mib: 256\nnetwork:\n"
                     "  subnet: 10.10.0.0/24\n  ip_policy: " +
                     ip_policy + "\n";
  if (!dns_name.empty()) yaml += "  dns_name: " + dns_name + "\n";
  yaml += "versions:\n  v1: {}\nversion: v1\n";
  return yaml;
}

// A host's Hello with room for anything: 64 vCPUs, 64 GiB, 100 GiB disk, 10 Gbps.
// A tunnel address of `host`'s own (hosts may not share one: controller/hello_check.h):
// 10.a.b.c from a hash of the name.
inline std::string TestAddress(const std::string& host) {
  uint32_t h = 2166136261u;
  for (unsigned char c : host) h = (h ^ c) * 16777619u;
  return "10." + std::to_string((h >> 16) & 255) + "." + std::to_string((h >> 8) & 255) + "." +
         std::to_string(h % 254 + 1);
}

inline v1::Hello TestHello(const std::string& host) {
  v1::Hello hello;
  hello.set_host(host);
  hello.set_address(TestAddress(host));
  hello.mutable_capacity()->set_vcpus(64);
  hello.mutable_capacity()->set_memory_mib(65536);
  hello.mutable_capacity()->set_disk_gib(100);
  hello.mutable_capacity()->set_bandwidth_mbps(10000);
  return hello;
}

// `host`'s report that its last desired set (in `sink`) runs, leaving out `except`.
inline v1::DomainsReport RunningReport(const std::string& host, const MessageSink& sink,
                                       const std::string& except = "") {
  v1::DomainsReport report;
  report.set_host(host);
  if (auto desired = sink.LastDesired()) {
    for (const auto& s : *desired) {
      if (s.name() == except) continue;
      auto* d = report.add_domains();
      d->set_name(s.name());
      d->set_state(v1::DOMAIN_STATE_RUNNING);
      d->set_generation(s.generation());
      d->set_service(s.service());
    }
  }
  return report;
}

class ControllerHarness {
 public:
  ControllerHarness() {
    config_.heartbeat_interval = std::chrono::milliseconds(500);
    config_.fencing_lease = std::chrono::milliseconds(2000);
    config_.host_down_after = std::chrono::milliseconds(3000);
    Open();
  }

  // A controller restart: the Controller and its store are closed, `while_down` (if any) gets
  // the database as someone editing it while the controller is down would, then a new Controller
  // loads it. Change listeners and agent sessions are gone: add them again (Hosts()).
  void Restart(const std::function<void(Store&)>& while_down = nullptr) {
    controller_.reset();
    store_.reset();
    sinks_.clear();
    if (while_down) {
      auto store = OpenSqliteStore(dir_.File("controller.db"));
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      while_down(**store);
    }
    Open();
  }

  Controller& controller() { return *controller_; }
  ControllerConfig& config() { return config_; }  // a change takes effect at Restart()
  Store& store() { return *store_; }
  FakeClock& clock() { return clock_; }

  MessageSink& Sink(const std::string& host) {
    auto& s = sinks_[host];
    if (!s) s = std::make_unique<MessageSink>();
    return *s;
  }
  const std::map<std::string, std::unique_ptr<MessageSink>>& sinks() const { return sinks_; }

  Status Hello(const std::string& host) {
    return controller_->OnHello(TestHello(host), &Sink(host));
  }

  void Hosts(int n) {
    for (int i = 1; i <= n; ++i) {
      Status s = Hello("host-" + std::to_string(i));
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }

  Result<v1::ApplyServiceResponse> Apply(const std::string& yaml) {
    v1::ApplyServiceRequest req;
    req.set_spec_yaml(yaml);
    req.set_file_name("service.yaml");
    return controller_->ApplyService(req);
  }

  // Every host reports its last desired set running.
  void AllRunning() {
    for (auto& [host, sink] : sinks_)
      controller_->OnDomainsReport(host, RunningReport(host, *sink));
  }

  // The instance's domain crashed on its host (an agent's event).
  void Crash(const std::string& instance) {
    const InstanceRecord& inst = controller_->instances().at(instance);
    v1::DomainEvent ev;
    ev.set_host(inst.allocation.host);
    ev.set_instance(instance);
    ev.set_generation(inst.generation);
    ev.set_state(v1::DOMAIN_STATE_CRASHED);
    ev.set_reason("crashed");
    ev.set_detected_by(v1::DETECTED_BY_EVENT);
    controller_->OnDomainEvent(inst.allocation.host, ev);
  }

  const InstanceRecord& Inst(const std::string& name) { return controller_->instances().at(name); }
  // The instance's IP, "" when there is no such instance.
  std::string Ip(const std::string& name) {
    auto it = controller_->instances().find(name);
    return it == controller_->instances().end() ? "" : it->second.allocation.ip;
  }

  std::vector<EventRecord> Events() {
    auto events = controller_->EventsAfter(0, 100000);
    EXPECT_TRUE(events.ok()) << events.status().ToString();
    return events.ok() ? *events : std::vector<EventRecord>{};
  }
  std::vector<EventRecord> EventsOfKind(const std::string& kind) {
    std::vector<EventRecord> out;
    for (auto& e : Events())
      if (EventKindName(e.kind) == kind) out.push_back(e);
    return out;
  }

 private:
  void Open() {
    auto store = OpenSqliteStore(dir_.File("controller.db"));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    controller_ = std::make_unique<Controller>(config_, *store_, clock_);
    Status s = controller_->Load();
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

  TempDir dir_{"regen-controller-harness"};
  ControllerConfig config_;
  FakeClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Controller> controller_;
  std::map<std::string, std::unique_ptr<MessageSink>> sinks_;
};

}  // namespace regen::testing
