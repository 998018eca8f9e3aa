// The HA mode on real processes: 3 regen-controller processes (store: etcd) on a real etcd
// (tests/integration/etcd/etcd_harness.h). Exactly one is active, the others refuse every call
// with UNAVAILABLE "standby controller; the active controller is at ADDRESS"; kill -9 of the
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
  Controllers(const EtcdCluster& etcd, int n) : dir_("regen-ha") {
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
                         "log_level: debug\ninsecure: true\n");
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
    v1::ApplyServiceRequest request;
    request.set_operation_id("apply-" + service);
    request.set_spec_yaml(ServiceYaml(service));
    v1::ApplyServiceResponse response;
    return v1::AdminService::NewStub(channels_[i])->ApplyService(&ctx, request, &response);
  }
  // What AgentService.Connect ends with after a hello.
  grpc::Status Connect(int i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    auto stream = v1::AgentService::NewStub(channels_[i])->Connect(&ctx);
    v1::AgentMessage hello;
    hello.mutable_hello()->set_host("host-1");
    stream->Write(hello);
    stream->WritesDone();
    v1::ControllerMessage m;
    while (stream->Read(&m)) {
    }
    return stream->Finish();
  }

  // The one controller (among the running ones) that serves; -1 unless exactly one does and
  // every other running one refuses as a standby naming it.
  int Active() {
    int active = -1;
    for (int i = 0; i < size(); ++i) {
      if (!processes_[i]) continue;
      if (ListServices(i).ok()) {
        if (active >= 0) return -1;
        active = i;
      }
    }
    if (active < 0) return -1;
    for (int i = 0; i < size(); ++i) {
      if (!processes_[i] || i == active) continue;
      grpc::Status s = ListServices(i);
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
  static std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  }

  testing::TempDir dir_;
  std::vector<int> ports_;
  std::vector<std::unique_ptr<ChildProcess>> processes_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
};

int WaitForActive(Controllers& c, milliseconds timeout) {
  int active = -1;
  testing::WaitFor([&] { return (active = c.Active()) >= 0; }, timeout, milliseconds(20));
  return active;
}

TEST(HaControllersTest, OneIsActiveTheOthersAnswerAsStandbys) {
  REGEN_START_ETCD(etcd, 1);
  Controllers c(*etcd, 3);
  for (int i = 0; i < c.size(); ++i) c.Start(i);
  int active = WaitForActive(c, milliseconds(15000));
  ASSERT_GE(active, 0) << "not exactly one active controller with two standbys\n" << c.Logs();
  ASSERT_TRUE(c.Apply(active, "web").ok()) << c.Logs();
  v1::ListServicesResponse services;
  ASSERT_TRUE(c.ListServices(active, &services).ok());
  ASSERT_EQ(services.services_size(), 1);
  for (int i = 0; i < c.size(); ++i) {
    if (i == active) continue;
    // Every RPC, reads and writes alike, and the agents' stream.
    grpc::Status list = c.ListServices(i);
    EXPECT_EQ(list.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(list.error_message(), c.StandbyMessageFor(active));
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
  for (int i = 0; i < c.size(); ++i) c.Start(i);
  int active = WaitForActive(c, milliseconds(15000));
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
            if (i != killed && c.ListServices(i, nullptr, milliseconds(200)).ok()) {
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
      "ListServices), election_ttl %lld ms, 3 etcd members, %d kills: p50 %.0f ms, max "
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
  c.Start(0);
  ASSERT_EQ(WaitForActive(c, milliseconds(15000)), 0) << c.Logs();
  c.Start(1);
  ASSERT_EQ(WaitForActive(c, milliseconds(15000)), 0) << c.Logs();
  ASSERT_TRUE(c.Apply(0, "web").ok());
  kill(c.process(0).pid(), SIGSTOP);
  bool took_over = testing::WaitFor([&] { return c.ListServices(1).ok(); },
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
// active controller, and is elected once etcd is back.
TEST(HaControllersTest, StartsWhileEtcdIsDownAndWaitsForIt) {
  REGEN_START_ETCD(etcd, 1);
  Controllers c(*etcd, 1);
  etcd->Stop(0);
  c.Start(0);
  bool refusing = testing::WaitFor(
      [&] {
        grpc::Status s = c.ListServices(0);
        return s.error_code() == grpc::StatusCode::UNAVAILABLE &&
               s.error_message() == "standby controller; the active controller is at unknown";
      },
      milliseconds(10000), milliseconds(20));
  ASSERT_TRUE(refusing) << c.Logs();
  // It keeps retrying (every second) rather than exiting.
  EXPECT_FALSE(testing::WaitFor([&] { return !c.process(0).Running(); }, milliseconds(2500)))
      << c.Logs();
  ASSERT_TRUE(etcd->Restart(0).ok());
  bool active = testing::WaitFor([&] { return c.ListServices(0).ok(); }, milliseconds(15000),
                                 milliseconds(20));
  ASSERT_TRUE(active) << c.Logs();
}

}  // namespace
}  // namespace regen
