// regenctl and AdminClient against an in-process fake AdminService on 127.0.0.1 (port 0).
#include "ctl/regenctl.h"

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
#include <mutex>
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

namespace regen {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

// ---- the fake controller ----

v1::Resources MakeResources(int64_t vcpus, int64_t memory_mib, int64_t disk_gib,
                            int64_t bandwidth_mbps) {
  v1::Resources r;
  r.set_vcpus(vcpus);
  r.set_memory_mib(memory_mib);
  r.set_disk_gib(disk_gib);
  r.set_bandwidth_mbps(bandwidth_mbps);
  return r;
}

v1::InstanceInfo MakeInstance(const std::string& name, const std::string& service, int64_t ud,
                              const std::string& host, const std::string& state, int64_t gen,
                              const std::string& ip, const std::string& mac,
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
  return i;
}

v1::Event MakeEvent(int64_t seq, int64_t unix_ms, const std::string& kind,
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
    std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
    T out;
    for (const auto& m : messages_) {
      if (m->GetDescriptor() == T::descriptor()) out.CopyFrom(*m);
    }
    return out;
  }

  // The next RPC fails with this status.
  void FailNext(grpc::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_next_ = std::move(status);
  }
  // ListServices then waits until the client gives up (for deadline tests).
  void HangListServices() { hang_list_services_ = true; }
  // Events with follow=true keeps sending new events until the client cancels.
  void FollowForever() { follow_forever_ = true; }
  // The upgrade status the Upgrade RPCs start from (see UpgradeReply).
  void SetUpgrade(const v1::UpgradeStatus& u) {
    std::lock_guard<std::mutex> lock(mu_);
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
      std::lock_guard<std::mutex> lock(mu_);
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
  // Records the request; returns the status to fail with, if FailNext was called.
  std::optional<grpc::Status> Record(const std::string& rpc, const google::protobuf::Message& m) {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(rpc + " {" + m.ShortDebugString() + "}");
    std::shared_ptr<google::protobuf::Message> copy(m.New());
    copy->CopyFrom(m);
    messages_.push_back(std::move(copy));
    std::optional<grpc::Status> fail = std::move(fail_next_);
    fail_next_.reset();
    return fail;
  }

  v1::UpgradeStatus UpgradeReply(const std::string& service, const std::string& state) const {
    std::lock_guard<std::mutex> lock(mu_);
    v1::UpgradeStatus u = upgrade_;
    u.set_service(service);
    if (!state.empty()) u.set_state(state);
    return u;
  }

  std::vector<v1::ServiceSummary> services_;
  std::vector<v1::InstanceInfo> instances_;
  std::vector<v1::HostInfo> hosts_;
  std::vector<v1::Event> events_;
  std::atomic<bool> hang_list_services_{false};
  std::atomic<bool> follow_forever_{false};

  mutable std::mutex mu_;
  std::vector<std::string> calls_;
  std::vector<std::shared_ptr<google::protobuf::Message>> messages_;
  std::optional<grpc::Status> fail_next_;
  std::set<std::string> applied_;
  v1::UpgradeStatus upgrade_;
};

// ---- helpers ----

struct CtlResult {
  int code = -1;
  std::string out;
  std::string err;
};

// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
int ClosedPort() {
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

bool IsHex32(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::set<std::string> Keys(const json& object) {
  std::set<std::string> keys;
  for (auto it = object.begin(); it != object.end(); ++it) keys.insert(it.key());
  return keys;
}

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

constexpr const char* kGoodSpec = R"(name: web
instances: 3
update_domains: 3
flavor:
  vcpus: 1
  memory_mib: 64
versions:
  v1: {}
version: v1
)";

// ---- service ----

TEST_F(RegenctlTest, ServiceApplySendsTheFileAndSaysCreatedThenUpdated) {
  std::string path = dir_.File("web.yaml");
  testing::WriteFileOrDie(path, kGoodSpec);

  CtlResult r = Run({"service", "apply", "-f", path});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "service web created\n1 instance pending:\n  web-2: no host has 1 vCPU free\n");
  auto request = fake_.Last<v1::ApplyServiceRequest>();
  EXPECT_EQ(request.spec_yaml(), kGoodSpec);
  EXPECT_EQ(request.file_name(), path);
  EXPECT_TRUE(IsHex32(request.operation_id())) << request.operation_id();
  std::string first_id = request.operation_id();

  // The file may also be given without -f.
  r = Run({"service", "apply", path});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "service web updated\n");
  EXPECT_NE(fake_.Last<v1::ApplyServiceRequest>().operation_id(), first_id);
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"ApplyService", "ApplyService"}));
}

TEST_F(RegenctlTest, ServiceApplyJson) {
  std::string path = dir_.File("web.yaml");
  testing::WriteFileOrDie(path, kGoodSpec);
  json j = RunJson({"service", "apply", "-f", path});
  EXPECT_EQ(j, json::parse(R"({"service":"web","created":true,
                              "pending":["web-2: no host has 1 vCPU free"]})"));
}

TEST_F(RegenctlTest, BadServiceYamlIsRefusedLocallyWithFileLineColumn) {
  std::string path = dir_.File("bad.yaml");
  testing::WriteFileOrDie(path, "name: web\ninstances: many\n");
  CtlResult r = Run({"service", "apply", "-f", path});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("regenctl: service apply: " + path + ":2:"));
  EXPECT_THAT(r.err, HasSubstr("instances"));
  EXPECT_TRUE(fake_.Calls().empty());

  r = Run({"service", "apply", "-f", dir_.File("missing.yaml")});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("cannot read " + dir_.File("missing.yaml")));
  EXPECT_TRUE(fake_.Calls().empty());
}

TEST_F(RegenctlTest, ServiceApplyRefusedByTheControllerExitsOne) {
  std::string path = dir_.File("web.yaml");
  testing::WriteFileOrDie(path, kGoodSpec);
  fake_.FailNext(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              path + ":9:10: version: \"v1\" is running an upgrade"));
  CtlResult r = Run({"service", "apply", "-f", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: " + path + ":9:10: version: \"v1\" is running an upgrade\n");
}

TEST_F(RegenctlTest, ServiceListText) {
  CtlResult r = Run({"service", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(
      r.out,
      "NAME  INSTANCES  RUNNING  UDS  VERSION  VCPUS  MEMORY_MIB  DISK_GIB  SUBNET        DNS\n"
      "web   3          2        3    v1       1      64          1         10.10.0.0/24  "
      "web.lab.example\n"
      "db    1          1        1    v7       2      2048        20        -             -\n");
  EXPECT_EQ(fake_.CallNames(), std::vector<std::string>{"ListServices"});
}

TEST_F(RegenctlTest, ServiceListJson) {
  json j = RunJson({"service", "list"});
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0], json::parse(R"({"name":"web","instances":3,"running":2,"update_domains":3,
      "version":"v1","flavor":{"vcpus":1,"memory_mib":64,"disk_gib":1,"bandwidth_mbps":100},
      "subnet":"10.10.0.0/24","dns_name":"web.lab.example"})"));
  EXPECT_EQ(j[1]["name"], "db");
}

TEST_F(RegenctlTest, ServiceShowText) {
  CtlResult r = Run({"service", "show", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("name:            web\n"));
  EXPECT_THAT(r.out, HasSubstr("instances:       3 (2 running)\n"));
  EXPECT_THAT(r.out, HasSubstr("flavor:          1 vCPU, 64 MiB memory, 1 GiB disk, 100 Mbps\n"));
  EXPECT_THAT(r.out, HasSubstr("dns name:        web.lab.example\n"));
  EXPECT_THAT(r.out, HasSubstr("\nNAME   SERVICE  UD  VERSION  HOST"));
  EXPECT_THAT(r.out, HasSubstr("\nweb-2  web      2   v1       -"));
  EXPECT_THAT(r.out, Not(HasSubstr("db-0")));
  EXPECT_THAT(r.out, HasSubstr("\nspec:\n  name: web\n  instances: 3\n"));
  EXPECT_EQ(fake_.Last<v1::GetServiceRequest>().name(), "web");
}

TEST_F(RegenctlTest, ServiceShowJsonAndNotFound) {
  json j = RunJson({"service", "show", "web"});
  EXPECT_EQ(j["service"]["name"], "web");
  EXPECT_EQ(j["instances"].size(), 3u);
  EXPECT_EQ(j["spec_yaml"], "name: web\ninstances: 3\n");

  CtlResult r = Run({"service", "show", "nope"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: service \"nope\" not found\n");
}

// ---- instance ----

TEST_F(RegenctlTest, InstanceListText) {
  CtlResult r = Run({"instance", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_EQ(lines[0],
            "NAME   SERVICE  UD  VERSION  HOST    STATE    GEN  VCPUS  MEMORY_MIB  DISK_GIB  "
            "BANDWIDTH  IP         MAC                REASON");
  EXPECT_EQ(lines[1],
            "web-0  web      0   v1       host-a  running  1    1      64          1         "
            "100        10.10.0.2  52:54:00:00:00:02");
  EXPECT_EQ(lines[3],
            "web-2  web      2   v1       -       pending  0    1      64          1         "
            "100        -          -                  no host has 1 vCPU free");
  EXPECT_EQ(fake_.Last<v1::ListInstancesRequest>().service(), "");
}

TEST_F(RegenctlTest, InstanceListWithoutReasonsHasNoReasonColumn) {
  CtlResult r = Run({"instance", "list", "--service", "db"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("REASON")));
  EXPECT_THAT(r.out, HasSubstr("db-0"));
  EXPECT_THAT(r.out, Not(HasSubstr("web-0")));
  EXPECT_EQ(fake_.Last<v1::ListInstancesRequest>().service(), "db");
}

TEST_F(RegenctlTest, InstanceListJsonHasExactlyTheDocumentedFields) {
  json j = RunJson({"instance", "list", "--service", "web"});
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 3u);
  const std::set<std::string> fields = {
      "name",  "service",    "update_domain", "version",        "host", "state", "generation",
      "vcpus", "memory_mib", "disk_gib",      "bandwidth_mbps", "ip",   "mac"};
  EXPECT_EQ(Keys(j[0]), fields);
  std::set<std::string> with_reason = fields;
  with_reason.insert("reason");
  EXPECT_EQ(Keys(j[2]), with_reason);
  EXPECT_EQ(j[0], json::parse(R"({"name":"web-0","service":"web","update_domain":0,
      "version":"v1","host":"host-a","state":"running","generation":1,"vcpus":1,
      "memory_mib":64,"disk_gib":1,"bandwidth_mbps":100,"ip":"10.10.0.2",
      "mac":"52:54:00:00:00:02"})"));
  EXPECT_EQ(j[2]["host"], "");
  EXPECT_EQ(j[2]["reason"], "no host has 1 vCPU free");
}

// ---- host ----

TEST_F(RegenctlTest, HostListText) {
  CtlResult r = Run({"host", "list"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "NAME    ADDRESS       STATE  VCPUS  MEMORY_MIB  LAST_HEARTBEAT            "
            "TOPOLOGY_REV\n"
            "host-a  192.168.0.11  up     3/8    2112/16384  2024-05-01T12:00:00.250Z  7\n"
            "host-b  192.168.0.12  down   1/4    64/8192     -                         0\n");
}

TEST_F(RegenctlTest, HostListJson) {
  json j = RunJson({"host", "list"});
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0], json::parse(R"({"name":"host-a","address":"192.168.0.11","state":"up",
      "capacity":{"vcpus":8,"memory_mib":16384,"disk_gib":200,"bandwidth_mbps":10000},
      "allocated":{"vcpus":3,"memory_mib":2112,"disk_gib":21,"bandwidth_mbps":100},
      "last_heartbeat_unix_ms":1714564800250,"applied_topology_revision":7})"));
}

TEST_F(RegenctlTest, HostDrainTextAndJson) {
  CtlResult r = Run({"host", "drain", "host-a"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "host host-a drained: 2 instances moved\n"
            "  web-0 -> host-b (generation 2)\n"
            "  db-0 not placed: no host has 64 MiB free\n");
  auto request = fake_.Last<v1::DrainRequest>();
  EXPECT_EQ(request.host(), "host-a");
  EXPECT_TRUE(IsHex32(request.operation_id()));

  json j = RunJson({"host", "drain", "host-a"});
  EXPECT_EQ(j["host"], "host-a");
  ASSERT_EQ(j["moved"].size(), 2u);
  EXPECT_EQ(j["moved"][0]["host"], "host-b");
  EXPECT_EQ(j["moved"][1]["reason"], "no host has 64 MiB free");

  r = Run({"host", "drain", "host-z"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: host \"host-z\" unknown\n");
}

// ---- failover ----

TEST_F(RegenctlTest, FailoverNamesOldAndNewHost) {
  CtlResult r = Run({"failover", "web-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "instance web-1 moved from host-b to host-c (generation 3)\n");
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"ListInstances", "Failover"}));
  EXPECT_EQ(fake_.Last<v1::ListInstancesRequest>().service(), "web");
  auto request = fake_.Last<v1::FailoverRequest>();
  EXPECT_EQ(request.instance(), "web-1");
  EXPECT_EQ(request.to_host(), "");
  EXPECT_TRUE(IsHex32(request.operation_id()));
}

TEST_F(RegenctlTest, FailoverToAHostJson) {
  json j = RunJson({"failover", "web-0", "--to", "host-b"});
  EXPECT_EQ(fake_.Last<v1::FailoverRequest>().to_host(), "host-b");
  EXPECT_EQ(j["name"], "web-0");
  EXPECT_EQ(j["host"], "host-b");
  EXPECT_EQ(j["generation"], 2);
  EXPECT_EQ(j.size(), 13u);  // no "reason" when it is empty
}

TEST_F(RegenctlTest, FailoverWhenTheOldHostIsUnknownNamesTheNewOne) {
  fake_.FailNext(grpc::Status(grpc::StatusCode::INTERNAL, "listing broke"));
  CtlResult r = Run({"failover", "web-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "instance web-1 moved to host-c (generation 3)\n");
}

TEST_F(RegenctlTest, FailoverOfAnUnknownInstanceExitsOne) {
  CtlResult r = Run({"failover", "web-9"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: instance \"web-9\" not found\n");
  EXPECT_EQ(r.out, "");
}

// ---- events ----

TEST_F(RegenctlTest, EventsText) {
  CtlResult r = Run({"events"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[0],
            "1      2024-05-01T12:00:00.250Z host_state   -            -              host-b       "
            "host-b is down");
  EXPECT_EQ(lines[1],
            "2      2024-05-01T12:00:01.000Z reallocation web          web-1          host-c       "
            "web-1 moved from host-b to host-c");
  EXPECT_THAT(lines[2], HasSubstr("2024-05-01T12:00:02.005Z failure "));
  auto request = fake_.Last<v1::EventsRequest>();
  EXPECT_EQ(request.after_sequence(), 0);
  EXPECT_FALSE(request.follow());
}

TEST_F(RegenctlTest, EventsJsonLinesEmbedTheDetail) {
  CtlResult r = Run({"events", "--after", "1", "-o", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  json e2 = json::parse(lines[0]);
  EXPECT_EQ(e2, json::parse(R"({"sequence":2,"unix_ms":1714564801000,"kind":"reallocation",
      "service":"web","instance":"web-1","host":"host-c",
      "message":"web-1 moved from host-b to host-c",
      "detail":{"from":"host-b","to":"host-c","generation":3}})"));
  json e3 = json::parse(lines[1]);
  EXPECT_EQ(e3["sequence"], 3);
  EXPECT_FALSE(e3.contains("detail"));  // its json field is not JSON
  EXPECT_EQ(fake_.Last<v1::EventsRequest>().after_sequence(), 1);
}

TEST_F(RegenctlTest, EventsFollowPrintsUntilTheStreamEnds) {
  CtlResult r = Run({"events", "--follow", "--after", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_EQ(lines[0].substr(0, 2), "3 ");
  EXPECT_THAT(lines[1], HasSubstr("topology revision 4"));
  auto request = fake_.Last<v1::EventsRequest>();
  EXPECT_TRUE(request.follow());
  EXPECT_EQ(request.after_sequence(), 2);
}

// ---- upgrade ----

constexpr const char* kUpgradeText =
    "service web: upgrade v1 -> v2 (auto) running at UD 1\n"
    "upgraded UDs: 0\n"
    "healing:      web-3\n"
    "started:      2024-05-01T12:00:00.250Z\n"
    "updated:      2024-05-01T12:00:05.000Z\n";

const std::set<std::string> kUpgradeJsonFields = {
    "service",    "from_version", "to_version",          "mode",       "state",
    "current_ud", "upgraded_uds", "healing_in_progress", "started_at", "updated_at"};

TEST_F(RegenctlTest, UpgradeStartSendsServiceVersionAndModeAndPrintsTheStatus) {
  CtlResult r = Run({"upgrade", "start", "web", "--to-version", "v2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, kUpgradeText);
  auto request = fake_.Last<v1::UpgradeStartRequest>();
  EXPECT_TRUE(IsHex32(request.operation_id())) << request.operation_id();
  EXPECT_EQ(request.service(), "web");
  EXPECT_EQ(request.to_version(), "v2");
  EXPECT_EQ(request.mode(), "auto");  // the default
  std::string first_id = request.operation_id();

  r = Run({"upgrade", "start", "web", "--to-version", "2.0_rc-1", "--mode", "manual"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("service web: upgrade v1 -> 2.0_rc-1 (manual) running at UD 1\n"));
  request = fake_.Last<v1::UpgradeStartRequest>();
  EXPECT_EQ(request.to_version(), "2.0_rc-1");
  EXPECT_EQ(request.mode(), "manual");
  EXPECT_NE(request.operation_id(), first_id);
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"UpgradeStart", "UpgradeStart"}));
}

TEST_F(RegenctlTest, UpgradeStartJsonHasExactlyTheIssuesStatusFields) {
  json j = RunJson({"upgrade", "start", "web", "--to-version", "v2"});
  EXPECT_EQ(Keys(j), kUpgradeJsonFields);
  EXPECT_EQ(j, json::parse(R"({"service":"web","from_version":"v1","to_version":"v2",
      "mode":"auto","state":"running","current_ud":1,"upgraded_uds":[0],
      "healing_in_progress":["web-3"],"started_at":1714564800250,"updated_at":1714564805000})"));
}

TEST_F(RegenctlTest, UpgradeStatusTextAndJson) {
  CtlResult r = Run({"upgrade", "status", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, kUpgradeText);
  auto request = fake_.Last<v1::UpgradeServiceRequest>();
  EXPECT_EQ(request.service(), "web");
  EXPECT_FALSE(request.force());

  json j = RunJson({"upgrade", "status", "web"});
  EXPECT_EQ(Keys(j), kUpgradeJsonFields);
  EXPECT_EQ(j["upgraded_uds"], json::parse("[0]"));
  EXPECT_EQ(j["healing_in_progress"], json::parse(R"(["web-3"])"));
  EXPECT_EQ(fake_.CallNames(), (std::vector<std::string>{"UpgradeStatusGet", "UpgradeStatusGet"}));
}

TEST_F(RegenctlTest, UpgradeStatusWithNothingUpgradedOrHealingSaysNone) {
  v1::UpgradeStatus u;
  u.set_from_version("v1");
  u.set_to_version("v2");
  u.set_mode("manual");
  u.set_state("waiting_for_operator");
  u.set_current_ud(0);
  u.set_started_at_unix_ms(1714564800250);
  fake_.SetUpgrade(u);
  CtlResult r = Run({"upgrade", "status", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "service web: upgrade v1 -> v2 (manual) waiting_for_operator at UD 0\n"
            "upgraded UDs: none\n"
            "healing:      none\n"
            "started:      2024-05-01T12:00:00.250Z\n"
            "updated:      -\n");

  json j = RunJson({"upgrade", "status", "web"});
  EXPECT_EQ(Keys(j), kUpgradeJsonFields);
  EXPECT_EQ(j["upgraded_uds"], json::array());
  EXPECT_EQ(j["healing_in_progress"], json::array());
  EXPECT_EQ(j["updated_at"], 0);

  u.clear_healing_in_progress();
  u.add_upgraded_uds(0);
  u.add_upgraded_uds(1);
  u.add_healing_in_progress("web-3");
  u.add_healing_in_progress("web-5");
  fake_.SetUpgrade(u);
  r = Run({"upgrade", "status", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("upgraded UDs: 0, 1\nhealing:      web-3, web-5\n"));
}

TEST_F(RegenctlTest, UpgradePauseShowsTheMessageInTextAndJson) {
  CtlResult r = Run({"upgrade", "pause", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "service web: upgrade v1 -> v2 (auto) paused at UD 1\n"
            "upgraded UDs: 0\n"
            "healing:      web-3\n"
            "started:      2024-05-01T12:00:00.250Z\n"
            "updated:      2024-05-01T12:00:05.000Z\n"
            "message:      paused by the operator\n");

  json j = RunJson({"upgrade", "pause", "web"});
  std::set<std::string> with_message = kUpgradeJsonFields;
  with_message.insert("message");
  EXPECT_EQ(Keys(j), with_message);
  EXPECT_EQ(j["state"], "paused");
  EXPECT_EQ(j["message"], "paused by the operator");
}

TEST_F(RegenctlTest, EachUpgradeCommandSendsItsRpcWithAFreshOperationId) {
  struct Case {
    std::string verb;
    std::string rpc;
    std::string first_line;
  };
  const std::vector<Case> cases = {
      {"status", "UpgradeStatusGet", "service db: upgrade v1 -> v2 (auto) running at UD 1"},
      {"pause", "UpgradePause", "service db: upgrade v1 -> v2 (auto) paused at UD 1"},
      {"resume", "UpgradeResume", "service db: upgrade v1 -> v2 (auto) running at UD 1"},
      {"next-ud", "UpgradeNextUd", "service db: upgrade v1 -> v2 (auto) running at UD 2"},
      {"rollback", "UpgradeRollback", "service db: upgrade v1 -> v2 (auto) rolling_back at UD 1"},
  };
  std::set<std::string> ids;
  std::vector<std::string> rpcs;
  for (const Case& c : cases) {
    CtlResult r = Run({"upgrade", c.verb, "db"});
    ASSERT_EQ(r.code, 0) << c.verb << ": " << r.err;
    std::vector<std::string> lines = Lines(r.out);
    ASSERT_FALSE(lines.empty()) << c.verb;
    EXPECT_EQ(lines[0], c.first_line) << c.verb;
    ASSERT_FALSE(fake_.CallNames().empty());
    EXPECT_EQ(fake_.CallNames().back(), c.rpc) << c.verb;
    auto request = fake_.Last<v1::UpgradeServiceRequest>();
    EXPECT_EQ(request.service(), "db") << c.verb;
    EXPECT_FALSE(request.force()) << c.verb;
    EXPECT_TRUE(IsHex32(request.operation_id())) << c.verb << ": " << request.operation_id();
    ids.insert(request.operation_id());
    rpcs.push_back(c.rpc);

    json j = RunJson({"upgrade", c.verb, "db"});
    EXPECT_EQ(j["service"], "db") << c.verb;
    EXPECT_EQ(fake_.CallNames().back(), c.rpc) << c.verb;
    rpcs.push_back(c.rpc);
  }
  EXPECT_EQ(ids.size(), cases.size());
  EXPECT_EQ(fake_.CallNames(), rpcs);
}

TEST_F(RegenctlTest, UpgradeNextUdPassesForceThrough) {
  CtlResult r = Run({"upgrade", "next-ud", "web", "--force"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto request = fake_.Last<v1::UpgradeServiceRequest>();
  EXPECT_TRUE(request.force());
  EXPECT_EQ(request.service(), "web");

  json j = RunJson({"upgrade", "next-ud", "--force", "web"});
  EXPECT_TRUE(fake_.Last<v1::UpgradeServiceRequest>().force());
  EXPECT_EQ(j["current_ud"], 2);

  r = Run({"upgrade", "next-ud", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(fake_.Last<v1::UpgradeServiceRequest>().force());
  EXPECT_EQ(fake_.CallNames(),
            (std::vector<std::string>{"UpgradeNextUd", "UpgradeNextUd", "UpgradeNextUd"}));
}

TEST_F(RegenctlTest, UpgradeErrorsFromTheControllerArePrintedAsTheyAre) {
  const std::string healing =
      "cannot upgrade the next UD of web: instances being healed: web-3, web-5 (use --force)";
  fake_.FailNext(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, healing));
  CtlResult r = Run({"upgrade", "next-ud", "web"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "regenctl: " + healing + "\n");

  fake_.FailNext(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, healing));
  r = Run({"upgrade", "next-ud", "web", "-o", "json"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "regenctl: " + healing + "\n");

  // Today's controller does not implement the Upgrade RPCs.
  fake_.FailNext(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "upgrades are not implemented"));
  r = Run({"upgrade", "start", "web", "--to-version", "v2"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "regenctl: upgrades are not implemented\n");

  fake_.FailNext(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""));
  r = Run({"upgrade", "rollback", "web"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: UpgradeRollback failed (gRPC code 12)\n");

  fake_.FailNext(grpc::Status(grpc::StatusCode::NOT_FOUND, "service \"shop\" has no upgrade"));
  r = Run({"upgrade", "status", "shop"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "regenctl: service \"shop\" has no upgrade\n");
}

TEST_F(RegenctlTest, BadUpgradeArgumentsAreRefusedWithoutAnyRpc) {
  struct Case {
    std::vector<std::string> args;
    std::string err;  // exact, or "" for any "regenctl: " message naming `has`
    std::string has = "";
  };
  const std::string bad_name = " is not a valid name ([a-z][a-z0-9-]{0,62})\n";
  const std::string bad_version = " is not a valid version name ([a-z0-9][a-z0-9._-]{0,62})\n";
  const std::vector<Case> cases = {
      {{"upgrade", "start", "Web", "--to-version", "v2"},
       "regenctl: upgrade start: SERVICE \"Web\"" + bad_name},
      {{"upgrade", "start", "web", "--to-version", "V2"},
       "regenctl: upgrade start: --to-version \"V2\"" + bad_version},
      {{"upgrade", "start", "web", "--to-version", ".v2"},
       "regenctl: upgrade start: --to-version \".v2\"" + bad_version},
      {{"upgrade", "start", "web", "--to-version", "v 2"},
       "regenctl: upgrade start: --to-version \"v 2\"" + bad_version},
      {{"upgrade", "start", "web", "--to-version", std::string(64, 'v')},
       "regenctl: upgrade start: --to-version \"" + std::string(64, 'v') + "\"" + bad_version},
      {{"upgrade", "start", "web", "--to-version", ""},
       "regenctl: upgrade start: --to-version \"\"" + bad_version},
      {{"upgrade", "start", "web", "--to-version", "v2", "--mode", "fast"},
       "regenctl: upgrade start: --mode \"fast\" is not an upgrade mode (use auto or manual)\n"},
      {{"upgrade", "start", "web", "--to-version", "v2", "--mode", "Auto"},
       "regenctl: upgrade start: --mode \"Auto\" is not an upgrade mode (use auto or manual)\n"},
      {{"upgrade", "start", "web"}, "", "--to-version"},
      {{"upgrade", "start", "--to-version", "v2"}, "", "SERVICE"},
      {{"upgrade", "status", "web_1"}, "regenctl: upgrade status: SERVICE \"web_1\"" + bad_name},
      {{"upgrade", "pause", "9web"}, "regenctl: upgrade pause: SERVICE \"9web\"" + bad_name},
      {{"upgrade", "resume", "WEB"}, "regenctl: upgrade resume: SERVICE \"WEB\"" + bad_name},
      {{"upgrade", "next-ud", "web.x", "--force"},
       "regenctl: upgrade next-ud: SERVICE \"web.x\"" + bad_name},
      {{"upgrade", "rollback", std::string(64, 'w')},
       "regenctl: upgrade rollback: SERVICE \"" + std::string(64, 'w') + "\"" + bad_name},
      {{"upgrade", "rollback"}, "", "SERVICE"},
      {{"upgrade", "pause", "web", "--force"}, "", "--force"},  // only next-ud has it
      {{"upgrade", "status", "web", "-o", "yaml"}, "", "\"yaml\""},
      {{"upgrade", "frobnicate", "web"},
       "regenctl: upgrade: unknown command \"frobnicate\" (commands: start, status, pause, "
       "resume, next-ud, rollback; see regenctl upgrade --help)\n"},
      {{"upgrade"}, "", "regenctl: upgrade: which command?"},
  };
  for (const Case& c : cases) {
    CtlResult r = Run(c.args);
    std::string what = ::testing::PrintToString(c.args);
    EXPECT_EQ(r.code, 2) << what << ": " << r.err;
    EXPECT_EQ(r.out, "") << what;
    if (!c.err.empty()) {
      EXPECT_EQ(r.err, c.err) << what;
    } else {
      EXPECT_THAT(r.err, HasSubstr("regenctl: ")) << what;
      EXPECT_THAT(r.err, HasSubstr(c.has)) << what << ": " << r.err;
    }
  }
  EXPECT_TRUE(fake_.Calls().empty()) << ::testing::PrintToString(fake_.Calls());
}

TEST_F(RegenctlTest, UpgradeHelpNamesItsOptions) {
  CtlResult r = Run({"upgrade", "start", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--to-version"));
  EXPECT_THAT(r.out, HasSubstr("--mode"));
  r = Run({"upgrade", "next-ud", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--force"));
  EXPECT_TRUE(fake_.Calls().empty());
}

// ---- bad arguments: refused with exit 2, nothing sent ----

TEST_F(RegenctlTest, BadNamesAreRefusedWithoutAnyRpc) {
  struct Case {
    std::vector<std::string> args;
    std::string err;
  };
  const std::vector<Case> cases = {
      {{"failover", "Web_1"},
       "regenctl: failover: INSTANCE \"Web_1\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"failover", "web-1", "--to", "host.b"},
       "regenctl: failover: --to \"host.b\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"host", "drain", std::string(64, 'h')},
       "regenctl: host drain: HOST \"" + std::string(64, 'h') +
           "\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"host", "drain", "Host-A"},
       "regenctl: host drain: HOST \"Host-A\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"service", "show", "9web"},
       "regenctl: service show: NAME \"9web\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"instance", "list", "--service", "WEB"},
       "regenctl: instance list: --service \"WEB\" is not a valid name ([a-z][a-z0-9-]{0,62})\n"},
      {{"events", "--after", "x"}, ""},
  };
  for (const Case& c : cases) {
    CtlResult r = Run(c.args);
    std::string what = ::testing::PrintToString(c.args);
    EXPECT_EQ(r.code, 2) << what << ": " << r.err;
    EXPECT_EQ(r.out, "") << what;
    if (!c.err.empty()) {
      EXPECT_EQ(r.err, c.err) << what;
    } else {
      EXPECT_THAT(r.err, HasSubstr("regenctl: ")) << what;
    }
  }
  EXPECT_TRUE(fake_.Calls().empty()) << ::testing::PrintToString(fake_.Calls());
}

TEST_F(RegenctlTest, UnknownCommandsAreNamed) {
  CtlResult r = Run({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err,
            "regenctl: unknown command \"frobnicate\" (commands: service, instance, host, "
            "failover, events, upgrade; see regenctl --help)\n");
  r = Run({"host", "reboot", "host-a"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err,
            "regenctl: host: unknown command \"reboot\" (commands: list, drain; see regenctl host "
            "--help)\n");
  r = Run({"service"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("regenctl: service: which command? (commands: apply, list, show"));
  r = Run({"failover"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("regenctl: failover: INSTANCE is required"));
  EXPECT_TRUE(fake_.Calls().empty());
}

TEST_F(RegenctlTest, UnknownOutputFormatIsNamed) {
  CtlResult r = Run({"host", "list", "-o", "yaml"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "regenctl: -o/--output \"yaml\" is not an output format (use text or json)\n");
  r = Run({"--output", "xml", "service", "list"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("\"xml\""));
  EXPECT_TRUE(fake_.Calls().empty());
}

TEST_F(RegenctlTest, HelpExitsZeroAndSendsNothing) {
  CtlResult r = Run({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("failover"));
  r = Run({"failover", "--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--to"));
  EXPECT_TRUE(fake_.Calls().empty());
}

// ---- reaching the controller ----

TEST_F(RegenctlTest, ControllerAddressComesFromTheEnvironmentAndTheFlagWins) {
  ::setenv("REGEN_CONTROLLER", address_.c_str(), 1);
  CtlResult r = RunRaw({"host", "list"}, std::nullopt);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(fake_.CallNames(), std::vector<std::string>{"ListHosts"});

  int port = ClosedPort();
  ASSERT_GT(port, 0);
  r = RunRaw({"--controller", "127.0.0.1:" + std::to_string(port), "host", "list"}, std::nullopt);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(fake_.CallNames(), std::vector<std::string>{"ListHosts"});
}

TEST_F(RegenctlTest, UnreachableControllerGivesAClearMessage) {
  int port = ClosedPort();
  ASSERT_GT(port, 0);
  std::string closed = "127.0.0.1:" + std::to_string(port);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"service", "list"}, std::vector<std::string>{"events"},
        std::vector<std::string>{"failover", "web-1"}}) {
    CtlResult r = RunRaw(args, closed);
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, HasSubstr("regenctl: cannot reach the controller at " + closed + ": "));
    EXPECT_THAT(r.err, HasSubstr(" (is regen-controller running? set --controller or "
                                 "REGEN_CONTROLLER; a controller with tls: in controller.yaml "
                                 "needs --ca (and --cert/--key or --token-file))\n"));
  }
}

TEST_F(RegenctlTest, ASlowControllerHitsTheDeadline) {
  fake_.HangListServices();
  auto start = std::chrono::steady_clock::now();
  CtlResult r = Run({"service", "list", "--timeout", "0.2"});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("regenctl: cannot reach the controller at " + address_ + ": "));
  EXPECT_LT(took, std::chrono::seconds(5));
}

// ---- AdminClient on its own ----

TEST(NewOperationIdTest, Is128RandomBitsInHex) {
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    std::string id = NewOperationId();
    EXPECT_TRUE(IsHex32(id)) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 100u);
}

TEST_F(RegenctlTest, AdminClientKeepsAGivenOperationIdAndMapsCodes) {
  AdminClient client(address_);
  v1::FailoverRequest request;
  request.set_operation_id("op-42");
  request.set_instance("web-1");
  auto r = client.Failover(request);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->instance().host(), "host-c");
  EXPECT_EQ(fake_.Last<v1::FailoverRequest>().operation_id(), "op-42");

  request.set_instance("web-9");
  r = client.Failover(request);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_EQ(r.status().message(), "instance \"web-9\" not found");

  fake_.FailNext(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "host-a is draining"));
  v1::DrainRequest drain;
  drain.set_host("host-a");
  auto d = client.Drain(drain);
  EXPECT_EQ(d.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(d.status().message(), "host-a is draining");
  EXPECT_TRUE(IsHex32(fake_.Last<v1::DrainRequest>().operation_id()));

  fake_.FailNext(grpc::Status(grpc::StatusCode::UNAVAILABLE, "store is read-only"));
  auto hosts = client.ListHosts();
  EXPECT_EQ(hosts.status().code(), Code::kUnavailable);
  EXPECT_EQ(hosts.status().message(), "cannot reach the controller at " + address_ +
                                          ": store is read-only (is regen-controller running?)");
}

TEST_F(RegenctlTest, AdminClientEventsStopsWhenTheCallbackSaysSo) {
  fake_.FollowForever();
  AdminClient client(address_);
  std::vector<int64_t> seen;
  Status s = client.Events(0, true, [&](const v1::Event& e) {
    seen.push_back(e.sequence());
    return seen.size() < 5;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace regen
