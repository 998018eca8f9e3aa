// regenctl_test's shared parts: an in-process fake AdminService on 127.0.0.1 (port 0) and the
// RegenctlTest fixture that runs RegenctlMain against it. Test threads and gRPC's threads.
#pragma once

#include "ctl/regenctl.h"

// Before grpcpp: grpcpp brings absl's legacy GUARDED_BY etc., which then replace ours quietly (as
// a system header, with the same meaning) instead of ours being an error as a redefinition.
#include "common/thread_annotations.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/admin_client.h"
#include "common/proto/regen.grpc.pb.h"
#include "tests/fakes/test_util.h"

namespace regen::ctl_test {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

// ---- the fake controller ----

inline v1::Resources MakeResources(int64_t vcpus, int64_t memory_mib, int64_t disk_gib,
                                   int64_t bandwidth_mbps) {
  v1::Resources r;
  r.set_vcpus(vcpus);
  r.set_memory_mib(memory_mib);
  r.set_disk_gib(disk_gib);
  r.set_bandwidth_mbps(bandwidth_mbps);
  return r;
}

inline v1::InstanceInfo MakeInstance(const std::string& name, const std::string& service,
                                     int64_t ud, const std::string& host, const std::string& state,
                                     int64_t gen, const std::string& ip, const std::string& mac,
                                     const std::string& reason = "") {
  v1::InstanceInfo i;
  i.set_name(name);
  i.set_service(service);
  i.set_update_domain(ud);
  i.set_version("v1");
  i.set_host(host);
  i.set_state(state);
  i.set_generation(gen);
  *i.mutable_resources() = MakeResources(1, 64, 1, 100);
  i.set_ip(ip);
  i.set_mac(mac);
  i.set_reason(reason);
  i.set_disk(service == "web" ? "overlay:/var/lib/regen/images/web-v1.qcow2" : "none");
  return i;
}

inline v1::Event MakeEvent(int64_t seq, int64_t unix_ms, const std::string& kind,
                           const std::string& instance, const std::string& host,
                           const std::string& message, const std::string& json_detail) {
  v1::Event e;
  e.set_sequence(seq);
  e.set_unix_ms(unix_ms);
  e.set_kind(kind);
  e.set_service(instance.empty() ? "" : "web");
  e.set_instance(instance);
  e.set_host(host);
  e.set_message(message);
  e.set_json(json_detail);
  return e;
}

// Canned cluster: services web (3 instances, one pending) and db; hosts host-a and host-b.
// Records every request it gets, in order, as "Rpc {short debug string}".
class FakeAdminService final : public v1::AdminService::Service {
 public:
  FakeAdminService() {
    v1::ServiceSummary web;
    web.set_name("web");
    web.set_instances(3);
    web.set_running(2);
    web.set_update_domains(3);
    web.set_version("v1");
    *web.mutable_flavor() = MakeResources(1, 64, 1, 100);
    web.set_subnet("10.10.0.0/24");
    web.set_dns_name("web.lab.example");
    services_.push_back(web);
    v1::ServiceSummary db;
    db.set_name("db");
    db.set_instances(1);
    db.set_running(1);
    db.set_update_domains(1);
    db.set_version("v7");
    *db.mutable_flavor() = MakeResources(2, 2048, 20, 0);
    services_.push_back(db);

    instances_.push_back(
        MakeInstance("web-0", "web", 0, "host-a", "running", 1, "10.10.0.2", "52:54:00:00:00:02"));
    instances_.push_back(
        MakeInstance("web-1", "web", 1, "host-b", "running", 2, "10.10.0.3", "52:54:00:00:00:03"));
    instances_.push_back(
        MakeInstance("web-2", "web", 2, "", "pending", 0, "", "", "no host has 1 vCPU free"));
    instances_.push_back(MakeInstance("db-0", "db", 0, "host-a", "running", 1, "", ""));

    v1::HostInfo a;
    a.set_name("host-a");
    a.set_address("192.168.0.11");
    a.set_state("up");
    *a.mutable_capacity() = MakeResources(8, 16384, 200, 10000);
    *a.mutable_allocated() = MakeResources(3, 2112, 21, 100);
    a.set_last_heartbeat_unix_ms(1714564800250);  // 2024-05-01T12:00:00.250Z
    a.set_applied_topology_revision(7);
    a.set_domain_type("kvm");
    a.set_domain_type_reason("auto: libvirt offers kvm and a test guest ran under KVM");
    hosts_.push_back(a);
    v1::HostInfo b;
    b.set_name("host-b");
    b.set_address("192.168.0.12");
    b.set_state("down");
    *b.mutable_capacity() = MakeResources(4, 8192, 100, 10000);
    *b.mutable_allocated() = MakeResources(1, 64, 1, 100);
    hosts_.push_back(b);

    events_.push_back(
        MakeEvent(1, 1714564800250, "host_state", "", "host-b", "host-b is down", ""));
    events_.push_back(MakeEvent(2, 1714564801000, "reallocation", "web-1", "host-c",
                                "web-1 moved from host-b to host-c",
                                R"({"from":"host-b","to":"host-c","generation":3})"));
    events_.push_back(
        MakeEvent(3, 1714564802005, "failure", "web-0", "host-a", "web-0 crashed", "not json{"));

    upgrade_.set_from_version("v1");
    upgrade_.set_to_version("v2");
    upgrade_.set_mode("auto");
    upgrade_.set_state("running");
    upgrade_.set_current_ud(1);
    upgrade_.add_upgraded_uds(0);
    upgrade_.add_healing_in_progress("web-3");
    upgrade_.set_started_at_unix_ms(1714564800250);  // 2024-05-01T12:00:00.250Z
    upgrade_.set_updated_at_unix_ms(1714564805000);  // 2024-05-01T12:00:05.000Z
  }

  std::vector<std::string> Calls() const {
    MutexLock lock(mu_);
    return calls_;
  }
  // The RPC names only, in order.
  std::vector<std::string> CallNames() const {
    std::vector<std::string> names;
    for (const std::string& c : Calls()) names.push_back(c.substr(0, c.find(' ')));
    return names;
  }
  template <typename T>
  T Last() const {
    MutexLock lock(mu_);
    T out;
    for (const auto& m : messages_) {
      if (m->GetDescriptor() == T::descriptor()) out.CopyFrom(*m);
    }
    return out;
  }

  // The next RPC fails with this status.
  void FailNext(grpc::Status status) {
    MutexLock lock(mu_);
    fail_next_ = std::move(status);
  }
  // A standby (HA) naming `active` ("" = unknown); nullopt: the active controller again.
  void SetStandby(std::optional<std::string> active) {
    MutexLock lock(mu_);
    standby_ = std::move(active);
  }
  // The RPCs answered as a standby.
  std::vector<std::string> StandbyCalls() const {
    MutexLock lock(mu_);
    return standby_calls_;
  }
  // ListServices then waits until the client gives up (for deadline tests).
  void HangListServices() { hang_list_services_ = true; }
  // Events with follow=true keeps sending new events until the client cancels.
  void FollowForever() { follow_forever_ = true; }
  // The upgrade status the Upgrade RPCs start from (see UpgradeReply).
  void SetUpgrade(const v1::UpgradeStatus& u) {
    MutexLock lock(mu_);
    upgrade_ = u;
  }

  grpc::Status ApplyService(grpc::ServerContext*, const v1::ApplyServiceRequest* request,
                            v1::ApplyServiceResponse* response) override {
    if (auto s = Record("ApplyService", *request)) return *s;
    std::string name = "web";
    if (request->spec_yaml().find("name: db") != std::string::npos) name = "db";
    response->set_service(name);
    bool created;
    {
      MutexLock lock(mu_);
      created = applied_.insert(name).second;
    }
    response->set_created(created);
    if (created) response->add_pending("web-2: no host has 1 vCPU free");
    return grpc::Status::OK;
  }

  grpc::Status ListServices(grpc::ServerContext* context, const v1::ListServicesRequest* request,
                            v1::ListServicesResponse* response) override {
    if (auto s = Record("ListServices", *request)) return *s;
    if (hang_list_services_) {
      // Waits for the client's deadline (bounded, so a broken client cannot hang the test).
      testing::WaitFor([&] { return context->IsCancelled(); }, std::chrono::seconds(10));
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "gave up");
    }
    for (const auto& s : services_) *response->add_services() = s;
    return grpc::Status::OK;
  }

  grpc::Status GetService(grpc::ServerContext*, const v1::GetServiceRequest* request,
                          v1::GetServiceResponse* response) override {
    if (auto s = Record("GetService", *request)) return *s;
    for (const auto& s : services_) {
      if (s.name() != request->name()) continue;
      *response->mutable_service() = s;
      response->set_spec_yaml("name: " + s.name() + "\ninstances: 3\n");
      for (const auto& i : instances_) {
        if (i.service() == s.name()) *response->add_instances() = i;
      }
      return grpc::Status::OK;
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "service \"" + request->name() + "\" not found");
  }

  grpc::Status ListInstances(grpc::ServerContext*, const v1::ListInstancesRequest* request,
                             v1::ListInstancesResponse* response) override {
    if (auto s = Record("ListInstances", *request)) return *s;
    for (const auto& i : instances_) {
      if (request->service().empty() || i.service() == request->service()) {
        *response->add_instances() = i;
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status ListHosts(grpc::ServerContext*, const v1::ListHostsRequest* request,
                         v1::ListHostsResponse* response) override {
    if (auto s = Record("ListHosts", *request)) return *s;
    for (const auto& h : hosts_) *response->add_hosts() = h;
    *response->mutable_maintenance() = maintenance_;
    return grpc::Status::OK;
  }

  // Maintenance: starts at 2024-05-01T12:00:00Z; end refuses when none runs.
  grpc::Status MaintenanceStart(grpc::ServerContext*, const v1::MaintenanceStartRequest* request,
                                v1::MaintenanceStatus* response) override {
    if (auto s = Record("MaintenanceStart", *request)) return *s;
    maintenance_.set_active(true);
    maintenance_.set_started_unix_ms(1714564800000);
    maintenance_.set_until_unix_ms(1714564800000 + request->duration_ms());
    maintenance_.set_holds_until_unix_ms(maintenance_.until_unix_ms());
    maintenance_.set_reason(request->reason());
    *response = maintenance_;
    return grpc::Status::OK;
  }
  grpc::Status MaintenanceEnd(grpc::ServerContext*, const v1::MaintenanceEndRequest* request,
                              v1::MaintenanceStatus* response) override {
    if (auto s = Record("MaintenanceEnd", *request)) return *s;
    if (!maintenance_.active()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no maintenance is running");
    }
    maintenance_.set_active(false);
    *response = maintenance_;
    return grpc::Status::OK;
  }
  grpc::Status MaintenanceStatusGet(grpc::ServerContext*,
                                    const v1::MaintenanceStatusRequest* request,
                                    v1::MaintenanceStatus* response) override {
    if (auto s = Record("MaintenanceStatusGet", *request)) return *s;
    *response = maintenance_;
    return grpc::Status::OK;
  }

  grpc::Status Failover(grpc::ServerContext*, const v1::FailoverRequest* request,
                        v1::FailoverResponse* response) override {
    if (auto s = Record("Failover", *request)) return *s;
    for (const auto& i : instances_) {
      if (i.name() != request->instance()) continue;
      v1::InstanceInfo moved = i;
      moved.set_host(request->to_host().empty() ? "host-c" : request->to_host());
      moved.set_generation(i.generation() + 1);
      moved.set_state("starting");
      *response->mutable_instance() = moved;
      return grpc::Status::OK;
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "instance \"" + request->instance() + "\" not found");
  }

  grpc::Status Drain(grpc::ServerContext*, const v1::DrainRequest* request,
                     v1::DrainResponse* response) override {
    if (auto s = Record("Drain", *request)) return *s;
    if (request->host() != "host-a") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "host \"" + request->host() + "\" unknown");
    }
    v1::InstanceInfo web0 = instances_[0];
    web0.set_host("host-b");
    web0.set_generation(2);
    *response->add_moved() = web0;
    v1::InstanceInfo db0 = instances_[3];
    db0.set_host("");
    db0.set_state("pending");
    db0.set_reason("no host has 64 MiB free");
    *response->add_moved() = db0;
    return grpc::Status::OK;
  }

  // DeleteService: web removes its three instances; any other service is unknown.
  grpc::Status DeleteService(grpc::ServerContext*, const v1::DeleteServiceRequest* request,
                             v1::DeleteServiceResponse* response) override {
    if (auto s = Record("DeleteService", *request)) return *s;
    if (request->service() != "web") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "service \"" + request->service() + "\" does not exist");
    }
    response->set_service("web");
    for (const char* i : {"web-0", "web-1", "web-2"}) response->add_removed(i);
    return grpc::Status::OK;
  }
  // Undrain, cordon, uncordon: host-a answers in the state the verb leads to; host-b (down) is
  // refused; others are unknown.
  grpc::Status HostVerb(const char* rpc, const v1::HostRequest* request, const char* state,
                        v1::HostInfo* response) {
    if (auto s = Record(rpc, *request)) return *s;
    if (request->host() == "host-b") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "host host-b is down, not draining: nothing to undrain");
    }
    if (request->host() != "host-a") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "host \"" + request->host() + "\" is not known");
    }
    *response = hosts_[0];
    response->set_state(state);
    return grpc::Status::OK;
  }
  grpc::Status UndrainHost(grpc::ServerContext*, const v1::HostRequest* request,
                           v1::HostInfo* response) override {
    return HostVerb("UndrainHost", request, "up", response);
  }
  grpc::Status CordonHost(grpc::ServerContext*, const v1::HostRequest* request,
                          v1::HostInfo* response) override {
    return HostVerb("CordonHost", request, "cordoned", response);
  }
  grpc::Status UncordonHost(grpc::ServerContext*, const v1::HostRequest* request,
                            v1::HostInfo* response) override {
    return HostVerb("UncordonHost", request, "up", response);
  }

  // The Upgrade RPCs answer the canned status (SetUpgrade) for the service asked about, in the
  // state the RPC leads to.
  grpc::Status UpgradeStart(grpc::ServerContext*, const v1::UpgradeStartRequest* request,
                            v1::UpgradeStatus* response) override {
    if (auto s = Record("UpgradeStart", *request)) return *s;
    *response = UpgradeReply(request->service(), "");
    response->set_to_version(request->to_version());
    response->set_mode(request->mode());
    return grpc::Status::OK;
  }
  grpc::Status UpgradeStatusGet(grpc::ServerContext*, const v1::UpgradeServiceRequest* request,
                                v1::UpgradeStatus* response) override {
    if (auto s = Record("UpgradeStatusGet", *request)) return *s;
    *response = UpgradeReply(request->service(), "");
    return grpc::Status::OK;
  }
  grpc::Status UpgradePause(grpc::ServerContext*, const v1::UpgradeServiceRequest* request,
                            v1::UpgradeStatus* response) override {
    if (auto s = Record("UpgradePause", *request)) return *s;
    *response = UpgradeReply(request->service(), "paused");
    response->set_message("paused by the operator");
    return grpc::Status::OK;
  }
  grpc::Status UpgradeResume(grpc::ServerContext*, const v1::UpgradeServiceRequest* request,
                             v1::UpgradeStatus* response) override {
    if (auto s = Record("UpgradeResume", *request)) return *s;
    *response = UpgradeReply(request->service(), "running");
    return grpc::Status::OK;
  }
  grpc::Status UpgradeNextUd(grpc::ServerContext*, const v1::UpgradeServiceRequest* request,
                             v1::UpgradeStatus* response) override {
    if (auto s = Record("UpgradeNextUd", *request)) return *s;
    *response = UpgradeReply(request->service(), "running");
    response->set_current_ud(response->current_ud() + 1);
    return grpc::Status::OK;
  }
  grpc::Status UpgradeRollback(grpc::ServerContext*, const v1::UpgradeServiceRequest* request,
                               v1::UpgradeStatus* response) override {
    if (auto s = Record("UpgradeRollback", *request)) return *s;
    *response = UpgradeReply(request->service(), "rolling_back");
    return grpc::Status::OK;
  }

  grpc::Status Events(grpc::ServerContext* context, const v1::EventsRequest* request,
                      grpc::ServerWriter<v1::Event>* writer) override {
    if (auto s = Record("Events", *request)) return *s;
    for (const auto& e : events_) {
      if (e.sequence() > request->after_sequence()) writer->Write(e);
    }
    if (!request->follow()) return grpc::Status::OK;
    // Following: one more event "happens", then the controller ends the stream (or, with
    // FollowForever, keeps producing events until the client cancels).
    int64_t seq = 4;
    do {
      if (!writer->Write(MakeEvent(seq, 1714564803000 + seq, "topology", "", "",
                                   "topology revision " + std::to_string(seq), ""))) {
        break;
      }
      ++seq;
      if (follow_forever_) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    } while (follow_forever_ && !context->IsCancelled() && seq < 100000);
    return grpc::Status::OK;
  }

 private:
  // Records the request; returns the status to fail with, if FailNext was called. A standby
  // records nothing and answers UNAVAILABLE naming the active controller.
  std::optional<grpc::Status> Record(const std::string& rpc, const google::protobuf::Message& m) {
    MutexLock lock(mu_);
    if (standby_) {
      standby_calls_.push_back(rpc);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "standby controller; the active controller is at " +
                              (standby_->empty() ? std::string("unknown") : *standby_));
    }
    calls_.push_back(rpc + " {" + m.ShortDebugString() + "}");
    std::shared_ptr<google::protobuf::Message> copy(m.New());
    copy->CopyFrom(m);
    messages_.push_back(std::move(copy));
    std::optional<grpc::Status> fail = std::move(fail_next_);
    fail_next_.reset();
    return fail;
  }

  v1::UpgradeStatus UpgradeReply(const std::string& service, const std::string& state) const {
    MutexLock lock(mu_);
    v1::UpgradeStatus u = upgrade_;
    u.set_service(service);
    if (!state.empty()) u.set_state(state);
    return u;
  }

  std::vector<v1::ServiceSummary> services_;
  std::vector<v1::InstanceInfo> instances_;
  v1::MaintenanceStatus maintenance_;
  std::vector<v1::HostInfo> hosts_;
  std::vector<v1::Event> events_;
  std::atomic<bool> hang_list_services_{false};
  std::atomic<bool> follow_forever_{false};

  mutable Mutex mu_;
  std::vector<std::string> calls_ GUARDED_BY(mu_);
  std::vector<std::shared_ptr<google::protobuf::Message>> messages_ GUARDED_BY(mu_);
  std::optional<grpc::Status> fail_next_ GUARDED_BY(mu_);
  std::set<std::string> applied_ GUARDED_BY(mu_);
  v1::UpgradeStatus upgrade_ GUARDED_BY(mu_);
  std::optional<std::string> standby_ GUARDED_BY(mu_);
  std::vector<std::string> standby_calls_ GUARDED_BY(mu_);
};

// ---- helpers ----

struct CtlResult {
  int code = -1;
  std::string out;
  std::string err;
};

// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
inline int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  return ok ? ntohs(addr.sin_port) : -1;
}

inline bool IsHex32(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

inline std::set<std::string> Keys(const json& object) {
  std::set<std::string> keys;
  for (auto it = object.begin(); it != object.end(); ++it) keys.insert(it.key());
  return keys;
}

// One more fake controller on 127.0.0.1 (HA tests): Start() then address().
class ExtraController {
 public:
  ~ExtraController() { Stop(); }
  bool Start() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&fake);
    server_ = builder.BuildAndStart();
    address_ = "127.0.0.1:" + std::to_string(port);
    return server_ != nullptr && port > 0;
  }
  void Stop() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    server_.reset();
  }
  const std::string& address() const { return address_; }
  FakeAdminService fake;

 private:
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

class RegenctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("REGEN_CONTROLLER");
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    address_ = "127.0.0.1:" + std::to_string(port);
  }

  void TearDown() override {
    ::unsetenv("REGEN_CONTROLLER");
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }

  // Runs regenctl ARGS... (with "--controller ADDRESS" put last when `controller` is set).
  CtlResult RunRaw(std::vector<std::string> args, std::optional<std::string> controller) {
    args.insert(args.begin(), "regenctl");
    if (controller) {
      args.push_back("--controller");
      args.push_back(*controller);
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::ostringstream out, err;
    CtlResult r;
    r.code = RegenctlMain(static_cast<int>(args.size()), argv.data(), out, err);
    r.out = out.str();
    r.err = err.str();
    return r;
  }
  CtlResult Run(std::vector<std::string> args) { return RunRaw(std::move(args), address_); }

  // Runs a command expected to succeed and parses its stdout as JSON.
  json RunJson(std::vector<std::string> args) {
    args.push_back("-o");
    args.push_back("json");
    CtlResult r = Run(args);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    json j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }

  FakeAdminService fake_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  testing::TempDir dir_{"regenctl-test"};
};

inline constexpr const char* kGoodSpec = R"(name: web
instances: 3
update_domains: 3
flavor:
  vcpus: 1
  memory_mib: 64
versions:
  v1: {}
version: v1
)";

}  // namespace regen::ctl_test
