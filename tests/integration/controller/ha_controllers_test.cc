// The HA mode on real processes: 3 regen-controller processes (store: etcd) on a real etcd
// (tests/integration/etcd/etcd_harness.h). Exactly one is active; the others answer the read-only
// AdminService calls from the state in etcd exactly as the active one does (with the same auth
// rules; UNAVAILABLE when their etcd is unreachable) and refuse every other call (writes, Events,
// AgentService.Connect) with UNAVAILABLE "standby controller; the active controller is at
// ADDRESS"; kill -9 of the
// active one makes a standby active within election_ttl + ~1 s with the state written before
// (figures printed: failover time over 10 kills, p50 and max); a controller that lost its lease
// (frozen with SIGSTOP past its TTL) exits with status 75 as soon as it runs again; a controller
// started while etcd is down waits (a standby naming no active one) and is elected once etcd is
// back.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/proto/regen.grpc.pb.h"
#include "etcd/etcd_client.h"
#include "tests/fakes/test_util.h"
#include "tests/integration/etcd/etcd_harness.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::ChildProcess;
using testing::EtcdCluster;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kElectionTtl{1000};  // etcd.election_ttl of every controller

std::string ServiceYaml(const std::string& name) {
  return "name: " + name +
         "\ninstances: 1\nupdate_domains: 1\nflavor: {vcpus: 1, memory_mib: 64, disk_gib: 0, "
         "bandwidth_mbps: 10}\nnetwork:\n  subnet: 10.20.0.0/24\nversions:\n  v1:\n    "
         "metadata: {release: \"1\"}\nversion: v1\nhealth_check:\n  type: none\n";
}

// N controllers of one cluster, each with its own controller.yaml, port and log.
class Controllers {
 public:
  // `extra`: more controller.yaml (an auth: block); `token`: sent on every probe (Events).
  Controllers(const EtcdCluster& etcd, int n, const std::string& extra = "", std::string token = "")
      : dir_("regen-ha"), token_(std::move(token)) {
    for (int i = 0; i < n; ++i) {
      ports_.push_back(testing::FreePort());
      std::string endpoints;
      for (const std::string& e : etcd.endpoints()) {
        endpoints += (endpoints.empty() ? "\"" : ", \"") + e + "\"";
      }
      // The lease covers heartbeat + restart allowance + election_ttl (200ms + 800ms + 1s).
      testing::WriteFileOrDie(
          Config(i), "listen_address: \"" + address(i) + "\"\nstore: etcd\netcd:\n  endpoints: [" +
                         endpoints +
                         "]\n  election_ttl: 1s\nheartbeat_interval: 200ms\n"
                         "restart_allowance: 800ms\nfencing_lease: 2s\nhost_down_after: 2500ms\n"
                         "log_level: debug\ninsecure: true\n"
                         "allow_loopback_hosts: true\n" +  // every agent says 127.0.0.1
                         extra);
      processes_.emplace_back();
      channels_.push_back(MakeChannel(address(i)));
    }
  }

  int size() const { return static_cast<int>(ports_.size()); }
  std::string address(int i) const { return "127.0.0.1:" + std::to_string(ports_[i]); }
  std::string Config(int i) const { return dir_.File("controller-" + std::to_string(i) + ".yaml"); }
  std::string LogPath(int i) const { return dir_.File("controller-" + std::to_string(i) + ".log"); }
  ChildProcess& process(int i) { return *processes_[i]; }

  void Start(int i) {
    processes_[i] = std::make_unique<ChildProcess>(
        std::vector<std::string>{REGEN_CONTROLLER_BIN, "run", "--config", Config(i)}, LogPath(i));
  }
  void Kill(int i) {
    if (processes_[i]) processes_[i]->Kill();
    processes_[i].reset();
  }

  std::string File(const std::string& name) const { return dir_.File(name); }

  // One unary AdminService call on a fresh channel, with "authorization: Bearer TOKEN" unless
  // `token` is empty.
  template <typename Req, typename Resp, typename Method>
  grpc::Status Call(int i, Method method, const Req& request, Resp* response,
                    const std::string& token = "", milliseconds deadline = milliseconds(5000)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    auto stub = v1::AdminService::NewStub(MakeChannel(address(i)));
    return (stub.get()->*method)(&ctx, request, response);
  }
  // Events without follow: OK on the active controller only (a standby refuses the stream).
  grpc::Status Events(int i, milliseconds deadline = milliseconds(1000)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
    auto reader = v1::AdminService::NewStub(MakeChannel(address(i)))->Events(&ctx, {});
    v1::Event event;
    while (reader->Read(&event)) {
    }
    return reader->Finish();
  }

  grpc::Status ListServices(int i, v1::ListServicesResponse* out = nullptr,
                            milliseconds deadline = milliseconds(1000)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    v1::ListServicesResponse response;
    // A fresh channel per probe, as each regenctl command has: a channel that found the port
    // closed (before the process listened) may stay in gRPC's reconnect backoff for seconds.
    return v1::AdminService::NewStub(MakeChannel(address(i)))
        ->ListServices(&ctx, {}, out ? out : &response);
  }
  grpc::Status Apply(int i, const std::string& service) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token_.empty()) ctx.AddMetadata("authorization", "Bearer " + token_);
    v1::ApplyServiceRequest request;
    request.set_operation_id("apply-" + service);
    request.set_spec_yaml(ServiceYaml(service));
    v1::ApplyServiceResponse response;
    return v1::AdminService::NewStub(channels_[i])->ApplyService(&ctx, request, &response);
  }
  // What AgentService.Connect ends with after a hello (an agent that keeps its lease in etcd, as
  // HA mode wants, with room for a few instances); the session ends at once.
  grpc::Status Connect(int i, int64_t etcd_lease_revision = 0) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    auto stream = v1::AgentService::NewStub(channels_[i])->Connect(&ctx);
    v1::AgentMessage hello;
    hello.mutable_hello()->set_host("host-1");
    hello.mutable_hello()->set_address("127.0.0.1");
    hello.mutable_hello()->set_etcd_lease(true);
    hello.mutable_hello()->set_etcd_lease_revision(etcd_lease_revision);
    v1::Resources* capacity = hello.mutable_hello()->mutable_capacity();
    capacity->set_vcpus(8);
    capacity->set_memory_mib(8192);
    capacity->set_disk_gib(100);
    capacity->set_bandwidth_mbps(1000);
    stream->Write(hello);
    stream->WritesDone();
    v1::ControllerMessage m;
    while (stream->Read(&m)) {
    }
    return stream->Finish();
  }

  // The one controller (among the running ones) that serves Events; -1 unless exactly one does
  // and every other running one refuses it as a standby naming that one.
  int Active() {
    int active = -1;
    for (int i = 0; i < size(); ++i) {
      if (!processes_[i]) continue;
      if (Events(i).ok()) {
        if (active >= 0) return -1;
        active = i;
      }
    }
    if (active < 0) return -1;
    for (int i = 0; i < size(); ++i) {
      if (!processes_[i] || i == active) continue;
      grpc::Status s = Events(i);
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE ||
          s.error_message() != StandbyMessageFor(active)) {
        return -1;
      }
    }
    return active;
  }
  std::string StandbyMessageFor(int active) const {
    return "standby controller; the active controller is at " + address(active);
  }

  std::string Logs() const {
    std::string out;
    for (int i = 0; i < size(); ++i) {
      out += "---- controller " + std::to_string(i) + " (" + LogPath(i) + ")\n";
      std::FILE* f = std::fopen(LogPath(i).c_str(), "r");
      if (f == nullptr) continue;
      std::string text;
      char buf[4096];
      for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
      std::fclose(f);
      out += text.size() > 6000 ? text.substr(text.size() - 6000) : text;
    }
    return out;
  }

 private:
  // Reconnects fast: a controller that turns from standby to active closes its port for a moment.
  // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is gRPC's minimum connect timeout (the handshake up to the
  // server's SETTINGS frame), not a backoff: at 20 ms a slow handshake (ThreadSanitizer, a loaded
  // machine) failed the first call of a fresh channel (StartsWhileEtcdIsDownAndWaitsForIt).
  static std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 2000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  }

  testing::TempDir dir_;
  std::string token_;
  std::vector<int> ports_;
  std::vector<std::unique_ptr<ChildProcess>> processes_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
};

int WaitForActive(Controllers& c, milliseconds timeout) {
  int active = -1;
  testing::WaitFor([&] { return (active = c.Active()) >= 0; }, timeout, milliseconds(20));
  return active;
}

// Starts controller 0 (it becomes the active one), then 1 as its standby, and applies web.
void StartZeroActiveOneStandby(Controllers& c) {
  c.Start(0);
  ASSERT_EQ(WaitForActive(c, milliseconds(15000)), 0) << c.Logs();
  c.Start(1);
  ASSERT_EQ(WaitForActive(c, milliseconds(15000)), 0) << c.Logs();
  ASSERT_TRUE(c.Apply(0, "web").ok());
}

// Starts every controller of `c`; the active one once there is one (-1: none within 15 s).
int StartAll(Controllers& c) {
  for (int i = 0; i < c.size(); ++i) c.Start(i);
  return WaitForActive(c, milliseconds(15000));
}

TEST(HaControllersTest, OneIsActiveTheOthersAnswerAsStandbys) {
  REGEN_START_ETCD(etcd, 1);
  Controllers c(*etcd, 3);
  int active = StartAll(c);
  ASSERT_GE(active, 0) << "not exactly one active controller with two standbys\n" << c.Logs();
  ASSERT_TRUE(c.Apply(active, "web").ok()) << c.Logs();
  v1::ListServicesResponse services;
  ASSERT_TRUE(c.ListServices(active, &services).ok());
  ASSERT_EQ(services.services_size(), 1);
  for (int i = 0; i < c.size(); ++i) {
    if (i == active) continue;
    // Writes, the event stream and the agents' stream (reads: StandbysAnswerReadsAsTheActiveDoes).
    grpc::Status events = c.Events(i);
    EXPECT_EQ(events.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(events.error_message(), c.StandbyMessageFor(active));
    grpc::Status apply = c.Apply(i, "db");
    EXPECT_EQ(apply.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(apply.error_message(), c.StandbyMessageFor(active));
    grpc::Status connect = c.Connect(i);
    EXPECT_EQ(connect.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(connect.error_message(), c.StandbyMessageFor(active));
  }
  ASSERT_TRUE(c.ListServices(active, &services).ok());
  EXPECT_EQ(services.services_size(), 1) << "a standby wrote";
}

// kill -9 of the active controller, 10 times (the killed one restarts as a standby): a standby
// serves within election_ttl + ~1 s, with every service applied before. On 3 etcd members.
TEST(HaControllersTest, KillingTheActiveOneHandsOverWithTheState) {
  REGEN_START_ETCD(etcd, 3);
  Controllers c(*etcd, 3);
  int active = StartAll(c);
  ASSERT_GE(active, 0) << c.Logs();
  std::vector<double> failover_ms;
  const int kRounds = 10;
  for (int round = 0; round < kRounds; ++round) {
    const std::string service = "svc-" + std::to_string(round);
    ASSERT_TRUE(c.Apply(active, service).ok()) << c.Logs();
    const int killed = active;
    Clock::time_point t0 = Clock::now();
    c.Kill(killed);
    int next = -1;
    bool took_over = testing::WaitFor(
        [&] {
          for (int i = 0; i < c.size(); ++i) {
            if (i != killed && c.Events(i, milliseconds(200)).ok()) {
              next = i;
              return true;
            }
          }
          return false;
        },
        kElectionTtl + milliseconds(4000), milliseconds(5));
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    ASSERT_TRUE(took_over) << "round " << round << ": no standby took over\n" << c.Logs();
    failover_ms.push_back(ms);
    EXPECT_LT(ms, (kElectionTtl + milliseconds(1500)).count())
        << "round " << round << ": failover took " << ms << " ms";
    v1::ListServicesResponse services;
    ASSERT_TRUE(c.ListServices(next, &services).ok());
    EXPECT_EQ(services.services_size(), round + 1) << "round " << round << ": state lost";
    // The killed one comes back as a standby (as systemd would restart it).
    c.Start(killed);
    active = WaitForActive(c, milliseconds(10000));
    ASSERT_EQ(active, next) << "round " << round << "\n" << c.Logs();
  }
  std::vector<double> sorted = failover_ms;
  std::sort(sorted.begin(), sorted.end());
  std::printf(
      "FIGURE ha failover (kill -9 of the active controller -> a standby answers "
      "Events as the active one), election_ttl %lld ms, 3 etcd members, %d kills: p50 %.0f ms, max "
      "%.0f ms, all:",
      static_cast<long long>(kElectionTtl.count()), kRounds, sorted[sorted.size() / 2],
      sorted.back());
  for (double ms : failover_ms) std::printf(" %.0f", ms);
  std::printf("\n");
}

// A controller frozen past its election lease (a stalled machine) is replaced; when it runs
// again it exits at once with status 75, never serving as the active one again.
TEST(HaControllersTest, AControllerThatLostItsLeaseExits) {
  REGEN_START_ETCD(etcd, 1);
  Controllers c(*etcd, 2);
  ASSERT_NO_FATAL_FAILURE(StartZeroActiveOneStandby(c));
  kill(c.process(0).pid(), SIGSTOP);
  bool took_over = testing::WaitFor([&] { return c.Events(1).ok(); },
                                    kElectionTtl + milliseconds(5000), milliseconds(10));
  ASSERT_TRUE(took_over) << c.Logs();
  kill(c.process(0).pid(), SIGCONT);
  bool exited = testing::WaitFor([&] { return !c.process(0).Running(); }, milliseconds(5000));
  ASSERT_TRUE(exited) << "the deposed controller still runs\n" << c.Logs();
  int status = c.process(0).Stop();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 75) << c.Logs();
  EXPECT_NE(c.Logs().find("deposed: "), std::string::npos) << c.Logs();
  v1::ListServicesResponse services;
  ASSERT_TRUE(c.ListServices(1, &services).ok());
  EXPECT_EQ(services.services_size(), 1);
}

// etcd down at start: the controller keeps trying (no exit), answers as a standby that knows no
// active controller (a read: and cannot read etcd either), and is elected once etcd is back.
TEST(HaControllersTest, StartsWhileEtcdIsDownAndWaitsForIt) {
  REGEN_START_ETCD(etcd, 1);
  Controllers c(*etcd, 1);
  etcd->Stop(0);
  c.Start(0);
  const std::string unknown = "standby controller; the active controller is at unknown";
  bool refusing = testing::WaitFor(
      [&] {
        grpc::Status s = c.Events(0);
        return s.error_code() == grpc::StatusCode::UNAVAILABLE && s.error_message() == unknown;
      },
      milliseconds(10000), milliseconds(20));
  ASSERT_TRUE(refusing) << c.Logs();
  grpc::Status read = c.ListServices(0, nullptr, milliseconds(5000));
  EXPECT_EQ(read.error_code(), grpc::StatusCode::UNAVAILABLE) << read.error_message();
  EXPECT_EQ(read.error_message().rfind(unknown, 0), 0u) << read.error_message();
  // It keeps retrying (every second) rather than exiting.
  EXPECT_FALSE(testing::WaitFor([&] { return !c.process(0).Running(); }, milliseconds(2500)))
      << c.Logs();
  ASSERT_TRUE(etcd->Restart(0).ok());
  bool active =
      testing::WaitFor([&] { return c.Events(0).ok(); }, milliseconds(15000), milliseconds(20));
  ASSERT_TRUE(active) << c.Logs();
}

// What a call answered, as text: the status and, when OK, the response (for comparisons).
template <typename Resp>
std::string Answer(const grpc::Status& status, const Resp& response) {
  if (!status.ok()) {
    return "status " + std::to_string(status.error_code()) + ": " + status.error_message();
  }
  return response.DebugString();
}

// Every read of regenctl on controller i, as text (ListHosts without served_by, returned apart).
struct Reads {
  std::vector<std::string> answers;
  std::string served_by;
};
Reads ReadAll(Controllers& c, int i, const std::string& token = "") {
  using Stub = v1::AdminService::Stub;
  Reads out;
  auto add = [&](const grpc::Status& s, const auto& response) {
    out.answers.push_back(Answer(s, response));
  };
  v1::ListServicesResponse services;
  add(c.Call(i, &Stub::ListServices, v1::ListServicesRequest(), &services, token), services);
  for (const char* name : {"web", "nope"}) {
    v1::GetServiceRequest request;
    request.set_name(name);
    v1::GetServiceResponse service;
    add(c.Call(i, &Stub::GetService, request, &service, token), service);
  }
  for (const char* name : {"", "web", "nope"}) {
    v1::ListInstancesRequest request;
    request.set_service(name);
    v1::ListInstancesResponse instances;
    add(c.Call(i, &Stub::ListInstances, request, &instances, token), instances);
  }
  v1::ListHostsResponse hosts;
  grpc::Status s = c.Call(i, &Stub::ListHosts, v1::ListHostsRequest(), &hosts, token);
  out.served_by = hosts.served_by();
  hosts.clear_served_by();
  // The active one shows the heartbeats it heard (memory), a standby the last one stored.
  for (v1::HostInfo& host : *hosts.mutable_hosts()) host.clear_last_heartbeat_unix_ms();
  add(s, hosts);
  for (const char* name : {"web", "nope"}) {
    v1::UpgradeServiceRequest request;
    request.set_service(name);
    v1::UpgradeStatus upgrade;
    add(c.Call(i, &Stub::UpgradeStatusGet, request, &upgrade, token), upgrade);
  }
  v1::MaintenanceStatus maintenance;
  add(c.Call(i, &Stub::MaintenanceStatusGet, v1::MaintenanceStatusRequest(), &maintenance, token),
      maintenance);
  return out;
}

// A standby answers every read as the active controller does for the same stored state (within
// its 250 ms cache); its ListHosts says it is a standby; the writes are still refused with the
// redirect, and nothing a standby did reached etcd.
TEST(HaControllersTest, StandbysAnswerReadsAsTheActiveDoes) {
  REGEN_START_ETCD(etcd, 1);
  Controllers c(*etcd, 3);
  int active = StartAll(c);
  ASSERT_GE(active, 0) << c.Logs();
  ASSERT_TRUE(c.Apply(active, "web").ok()) << c.Logs();
  v1::MaintenanceStartRequest start;
  start.set_operation_id("maintenance-1");
  start.set_duration_ms(600000);
  start.set_reason("standby reads test");
  v1::MaintenanceStatus started;
  ASSERT_TRUE(c.Call(active, &v1::AdminService::Stub::MaintenanceStart, start, &started).ok());
  // A host: its agent puts its alive key, says hello and goes (the maintenance keeps it from being
  // judged down).
  auto client = etcd::EtcdClient::Connect(etcd->Options());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto lease = (*client)->GrantLease(60);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  auto put = (*client)->Put("/regen/hosts/host-1/alive", "", lease->id);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  grpc::Status hello = c.Connect(active, *put);
  EXPECT_TRUE(hello.ok()) << hello.error_message();
  Reads expected;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        expected = ReadAll(c, active);
        // The host is known and web-0 placed on it (an IP, a MAC: a state worth comparing).
        return expected.answers[6].find("host-1") != std::string::npos &&
               expected.answers[3].find("host: \"host-1\"") != std::string::npos;
      },
      milliseconds(5000)))
      << ::testing::PrintToString(expected.answers) << c.Logs();
  EXPECT_EQ(expected.served_by, "") << "the active controller marked its answer as a standby's";
  EXPECT_NE(expected.answers[0].find("name: \"web\""), std::string::npos) << expected.answers[0];
  EXPECT_NE(expected.answers[9].find("active: true"), std::string::npos) << expected.answers[9];
  for (int i = 0; i < c.size(); ++i) {
    if (i == active) continue;
    Reads got;
    bool same = testing::WaitFor(
        [&] {
          got = ReadAll(c, i);
          return got.answers == expected.answers;
        },
        milliseconds(5000), milliseconds(50));
    ASSERT_EQ(got.answers.size(), expected.answers.size());
    for (size_t k = 0; k < got.answers.size(); ++k) {
      EXPECT_EQ(got.answers[k], expected.answers[k]) << "controller " << i << ", read " << k;
    }
    ASSERT_TRUE(same) << c.Logs();
    EXPECT_EQ(got.served_by.rfind("standby controller at " + c.address(i) +
                                      ": the state as stored in etcd at revision ",
                                  0),
              0u)
        << got.served_by;
    // Writes still go to the active controller.
    EXPECT_EQ(c.Apply(i, "db").error_message(), c.StandbyMessageFor(active));
    v1::MaintenanceEndRequest end;
    v1::MaintenanceStatus ended;
    grpc::Status s = c.Call(i, &v1::AdminService::Stub::MaintenanceEnd, end, &ended);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(s.error_message(), c.StandbyMessageFor(active));
  }
  EXPECT_EQ(ReadAll(c, active).answers, expected.answers) << "a standby changed the state";
  // A change on the active one reaches the standbys' answers.
  ASSERT_TRUE(c.Apply(active, "db").ok());
  for (int i = 0; i < c.size(); ++i) {
    bool seen = testing::WaitFor(
        [&] {
          v1::ListServicesResponse services;
          return c.ListServices(i, &services).ok() && services.services_size() == 2;
        },
        milliseconds(3000), milliseconds(20));
    EXPECT_TRUE(seen) << "controller " << i << " does not show the second service";
  }
}

// With controller.yaml's auth (tokens; over plaintext to keep the test cheap) a standby lets a
// read-only token read, and refuses a caller without credentials or with an unknown token exactly
// as the active controller does.
TEST(HaControllersTest, StandbyReadsFollowTheAuthRules) {
  REGEN_START_ETCD(etcd, 1);
  testing::TempDir tokens("regen-ha-tokens");
  testing::WriteFileOrDie(tokens.File("admin"), "admin-token-1\n");
  testing::WriteFileOrDie(tokens.File("reader"), "reader-token-1\n");
  const std::string auth = "auth:\n  tokens:\n    - {file: \"" + tokens.File("admin") +
                           "\", role: admin}\n    - {file: \"" + tokens.File("reader") +
                           "\", role: read-only}\n";
  Controllers c(*etcd, 2, auth, "admin-token-1");
  c.Start(0);
  c.Start(1);
  int active = WaitForActive(c, milliseconds(15000));
  ASSERT_GE(active, 0) << c.Logs();
  const int standby = 1 - active;
  ASSERT_TRUE(c.Apply(active, "web").ok()) << c.Logs();
  const Reads expected = ReadAll(c, active, "reader-token-1");
  Reads got;
  bool same = testing::WaitFor(
      [&] { return (got = ReadAll(c, standby, "reader-token-1")).answers == expected.answers; },
      milliseconds(5000), milliseconds(50));
  EXPECT_TRUE(same) << ::testing::PrintToString(got.answers) << "\nexpected\n"
                    << ::testing::PrintToString(expected.answers) << c.Logs();
  EXPECT_NE(expected.answers[0].find("web"), std::string::npos) << expected.answers[0];
  for (const std::string& token : {std::string(), std::string("wrong-token")}) {
    v1::ListHostsResponse hosts;
    grpc::Status on_active =
        c.Call(active, &v1::AdminService::Stub::ListHosts, v1::ListHostsRequest(), &hosts, token);
    grpc::Status on_standby =
        c.Call(standby, &v1::AdminService::Stub::ListHosts, v1::ListHostsRequest(), &hosts, token);
    EXPECT_EQ(on_active.error_code(), grpc::StatusCode::UNAUTHENTICATED) << token;
    EXPECT_EQ(on_standby.error_code(), on_active.error_code()) << token;
    EXPECT_EQ(on_standby.error_message(), on_active.error_message()) << token;
  }
}

// A standby whose etcd cannot be reached answers a read with the redirect and why, so clients
// move on; it never answers from a state it cannot check for longer than its cache.
TEST(HaControllersTest, AStandbyCutFromEtcdAnswersUnavailable) {
  REGEN_START_ETCD(etcd, 1);
  Controllers c(*etcd, 2);
  ASSERT_NO_FATAL_FAILURE(StartZeroActiveOneStandby(c));
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        v1::ListServicesResponse services;
        return c.ListServices(1, &services).ok() && services.services_size() == 1;
      },
      milliseconds(5000)))
      << c.Logs();
  etcd->Stop(0);
  grpc::Status s;
  bool refused = testing::WaitFor(
      [&] {
        s = c.ListServices(1, nullptr, milliseconds(8000));
        return !s.ok();
      },
      milliseconds(10000), milliseconds(50));
  ASSERT_TRUE(refused) << c.Logs();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  // The active one is gone too (it lost its lease); the standby names the last one it knew.
  EXPECT_EQ(s.error_message().rfind("standby controller; the active controller is at ", 0), 0u)
      << s.error_message();
  EXPECT_NE(s.error_message().find(" (cannot read the cluster state from etcd: "),
            std::string::npos)
      << s.error_message();
}

}  // namespace
}  // namespace regen
