// Topology blast benchmark: a real controller (ControllerServer in this process, SQLite store,
// gRPC on loopback) and N simulated agents, each with its own AgentService.Connect stream. Every
// simulated agent keeps its host's slice of the topology (snapshots and deltas applied with
// ApplyTopologyDelta) and acks a revision the way the network agent does: it computes its host's
// flow set with ovs::BuildFlowSet (no OVS: the apply on a real vswitchd is measured by
// network_agent_ovs_test / ovs_bench) and answers TopologyApplied. Each round crashes one instance
// (a DomainEvent from its host's agent): the controller heals it and blasts the new revision.
// Prints, per N (never asserted):
//   per agent   event sent -> that agent acked the new revision (median, p99, max over the agents
//               whose slice changed: those holding an instance before or after, and rounds)
//   converged   event sent -> the last agent acked (median and max over rounds)
//   recorded    event sent -> the controller shows every host at the new revision (ListHosts)
//
//   blast_bench [--agents N[,N...]] [--rounds R] [--instances I] [--no-flows]
//               (defaults: 20,1000  5  40)
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/proto/regen.grpc.pb.h"
#include "common/topology_slices.h"
#include "controller/server.h"
#include "ovs/flows.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using Clock_ = std::chrono::steady_clock;
using std::chrono::milliseconds;

bool g_flows = true;

// Signalled whenever any simulated agent acks a revision.
std::mutex g_mu;
std::condition_variable g_cv;

class SimAgent {
 public:
  SimAgent(std::string host, std::string address, std::shared_ptr<grpc::Channel> channel)
      : host_(std::move(host)),
        address_(std::move(address)),
        stub_(v1::AgentService::NewStub(channel)) {}
  ~SimAgent() { Close(); }

  bool Connect() {
    stream_ = stub_->Connect(&ctx_);
    v1::AgentMessage m;
    auto* h = m.mutable_hello();
    h->set_host(host_);
    h->set_address(address_);
    h->set_agent_version("blast-bench");
    h->set_topology_deltas(true);  // applied as the network agent does (ApplyTopologyDelta)
    h->mutable_capacity()->set_vcpus(4);
    h->mutable_capacity()->set_memory_mib(4096);
    h->mutable_capacity()->set_disk_gib(100);
    h->mutable_capacity()->set_bandwidth_mbps(10000);
    if (!Write(m)) return false;
    reader_ = std::thread([this] { Read(); });
    return true;
  }

  void Heartbeat() {
    v1::AgentMessage m;
    m.mutable_heartbeat()->set_host(host_);
    m.mutable_heartbeat()->set_sequence(++heartbeat_sequence_);
    (void)Write(m);
  }

  void Crash(const std::string& instance, int64_t generation) {
    v1::AgentMessage m;
    auto* e = m.mutable_domain_event();
    e->set_host(host_);
    e->set_instance(instance);
    e->set_generation(generation);
    e->set_state(v1::DOMAIN_STATE_CRASHED);
    e->set_reason("crashed");
    e->set_detected_by(v1::DETECTED_BY_EVENT);
    (void)Write(m);
  }

  // When this agent acked `revision` (or a later one), if it did.
  std::optional<Clock_::time_point> AckedAt(int64_t revision) {
    std::lock_guard lock(mu_);
    auto it = acked_.lower_bound(revision);
    if (it == acked_.end()) return std::nullopt;
    return it->second;
  }
  // When this agent received `revision` (nullopt if it did not).
  std::optional<Clock_::time_point> ReceivedAt(int64_t revision) {
    std::lock_guard lock(mu_);
    auto it = received_.find(revision);
    if (it == received_.end()) return std::nullopt;
    return it->second;
  }
  // The size of the topology message of `revision` (0 if none came).
  size_t ReceivedBytes(int64_t revision) {
    std::lock_guard lock(mu_);
    auto it = received_bytes_.find(revision);
    return it == received_bytes_.end() ? 0 : it->second;
  }
  int64_t last_acked() {
    std::lock_guard lock(mu_);
    return acked_.empty() ? 0 : acked_.rbegin()->first;
  }

  void Close() {
    if (!stream_) return;
    ctx_.TryCancel();
    if (reader_.joinable()) reader_.join();
    (void)stream_->Finish();
    stream_.reset();
  }

 private:
  bool Write(const v1::AgentMessage& m) {
    std::lock_guard lock(write_mu_);
    return stream_->Write(m);
  }

  void Read() {
    v1::ControllerMessage msg;
    int64_t last = 0;
    v1::TopologyRevision slice;  // this host's slice as the network agent keeps it
    while (stream_->Read(&msg)) {
      if (!msg.has_topology() || msg.topology().revision() <= last) continue;
      if (msg.topology().base_revision() != 0 && msg.topology().base_revision() != last) {
        std::fprintf(stderr, "%s: revision %lld is a delta on %lld, but this agent has %lld\n",
                     host_.c_str(), static_cast<long long>(msg.topology().revision()),
                     static_cast<long long>(msg.topology().base_revision()),
                     static_cast<long long>(last));
        continue;
      }
      slice = msg.topology().base_revision() == 0 ? msg.topology()
                                                  : ApplyTopologyDelta(slice, msg.topology());
      const auto& wire = slice;
      last = wire.revision();
      {
        std::lock_guard lock(mu_);
        received_[last] = Clock_::now();
        received_bytes_[last] = msg.ByteSizeLong();
      }
      size_t flows = 0;
      if (g_flows) {
        // What the network agent computes (ofports made up for the local instances).
        ovs::Topology t;
        t.revision = wire.revision();
        for (const auto& h : wire.hosts()) t.hosts.push_back({h.name(), h.address()});
        bool self = false;
        for (const auto& h : wire.hosts()) self = self || h.name() == host_;
        if (!self) t.hosts.push_back({host_, address_});
        int64_t port = 10;
        for (const auto& i : wire.instances()) {
          t.instances.push_back({i.name(), i.service(), i.host(), i.ip(), i.mac(), i.generation(),
                                 i.host() == host_ ? port++ : 0});
        }
        auto set = ovs::BuildFlowSet(t, {host_, 1});
        if (!set.ok()) {
          std::fprintf(stderr, "%s: flow set of revision %lld: %s\n", host_.c_str(),
                       static_cast<long long>(last), set.status().message().c_str());
          continue;
        }
        flows = set->size();
      }
      v1::AgentMessage ack;
      ack.mutable_topology_applied()->set_revision(last);
      (void)Write(ack);
      {
        std::lock_guard lock(mu_);
        acked_[last] = Clock_::now();
        flows_ = flows;
      }
      std::lock_guard lock(g_mu);
      g_cv.notify_all();
    }
  }

  const std::string host_;
  const std::string address_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> stream_;
  std::mutex write_mu_;
  uint64_t heartbeat_sequence_ = 0;  // heartbeat thread only
  std::thread reader_;
  std::mutex mu_;
  std::map<int64_t, Clock_::time_point> acked_;     // guarded by mu_
  std::map<int64_t, Clock_::time_point> received_;  // guarded by mu_
  std::map<int64_t, size_t> received_bytes_;        // guarded by mu_
  size_t flows_ = 0;                                // guarded by mu_
};

using testing::Millis;
using testing::Percentile;

std::string ServiceSpec(int instances) {
  return "name: web\ninstances: " + std::to_string(instances) +
         "\nupdate_domains: 5\n"
         "flavor: {vcpus: 1, memory_mib: 64, disk_gib: 0, bandwidth_mbps: 1}\n"
         "network: {subnet: 10.20.0.0/20, ip_policy: keep}\n"
         "versions:\n  v1: {}\nversion: v1\nplacement: spread\n";
}

// Waits until every agent in `agents` acked `revision` (true) or `limit` passed.
bool WaitAllAcked(const std::vector<SimAgent*>& agents, int64_t revision, milliseconds limit) {
  auto deadline = Clock_::now() + limit;
  std::unique_lock lock(g_mu);
  return g_cv.wait_until(lock, deadline, [&] {
    for (auto* a : agents)
      if (a->last_acked() < revision) return false;
    return true;
  });
}

// The agents of the hosts that hold an instance (their slice is the service's: each hears of
// every change to it; the others hear of none).
std::vector<SimAgent*> AgentsWithInstances(ControllerServer& server,
                                           std::map<std::string, SimAgent*>& by_host) {
  auto hosts = server.Call<std::set<std::string>>([&] {
    std::set<std::string> out;
    for (const auto& [name, inst] : server.controller().instances()) {
      if (!inst.allocation.host.empty()) out.insert(inst.allocation.host);
    }
    return out;
  });
  std::vector<SimAgent*> out;
  for (const auto& h : hosts) {
    if (auto it = by_host.find(h); it != by_host.end()) out.push_back(it->second);
  }
  return out;
}

int RunOnce(int n, int rounds, int instances) {
  testing::TempDir dir("regen-blast-bench");
  auto store = OpenSqliteStore(dir.File("controller.db"));
  if (!store.ok()) {
    std::fprintf(stderr, "store: %s\n", store.status().message().c_str());
    return 1;
  }
  ControllerConfig config;
  config.listen_address = "127.0.0.1:0";
  config.database = dir.File("controller.db");
  config.heartbeat_interval = std::chrono::seconds(5);
  config.host_down_after = std::chrono::minutes(10);
  config.fencing_lease = std::chrono::minutes(5);
  RealClock clock;
  ControllerServer server(config, **store, clock);
  if (Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "controller: %s\n", s.message().c_str());
    return 1;
  }
  const std::string target = "127.0.0.1:" + std::to_string(server.port());

  // Agents share a connection 50 at a time (distinct channel args keep connections apart).
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < (n + 49) / 50; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("regen.bench.connection", c);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    channels.push_back(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }
  auto connect_start = Clock_::now();
  std::vector<std::unique_ptr<SimAgent>> agents;
  std::map<std::string, SimAgent*> by_host;
  for (int i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "host-%04d", i);
    std::string address = "10.200." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    agents.push_back(std::make_unique<SimAgent>(name, address, channels[i / 50]));
    if (!agents.back()->Connect()) {
      std::fprintf(stderr, "agent %s could not connect\n", name);
      return 1;
    }
    by_host[name] = agents.back().get();
  }
  std::atomic<bool> stop{false};
  std::thread heartbeats([&] {
    while (!stop) {
      for (auto& a : agents) a->Heartbeat();
      for (int i = 0; i < 20 && !stop; ++i) std::this_thread::sleep_for(milliseconds(100));
    }
  });
  bool joined = testing::WaitFor(
      [&] {
        auto hosts =
            server.Call<v1::ListHostsResponse>([&] { return server.controller().ListHosts(); });
        int up = 0;
        for (const auto& h : hosts.hosts()) up += h.state() == "up" ? 1 : 0;
        return up == n;
      },
      std::chrono::seconds(120), milliseconds(20));
  double connect_ms = Millis(Clock_::now() - connect_start);
  int rc = 0;
  if (!joined) {
    std::fprintf(stderr, "N=%d: not every agent joined within 120 s\n", n);
    rc = 1;
  }

  v1::ApplyServiceRequest apply;
  apply.set_spec_yaml(ServiceSpec(std::min(instances, n * 4)));
  apply.set_file_name("blast-bench service");
  auto applied = rc ? Result<v1::ApplyServiceResponse>(Internal("skipped"))
                    : server.Call<Result<v1::ApplyServiceResponse>>(
                          [&] { return server.controller().ApplyService(apply); });
  if (rc == 0 && !applied.ok()) {
    std::fprintf(stderr, "apply: %s\n", applied.status().message().c_str());
    rc = 1;
  }
  int64_t deployed = server.Call<int64_t>([&] { return server.controller().topology_revision(); });
  if (rc == 0 &&
      !WaitAllAcked(AgentsWithInstances(server, by_host), deployed, std::chrono::seconds(60))) {
    std::fprintf(stderr, "N=%d: the deploy revision %lld was not acked by every agent\n", n,
                 static_cast<long long>(deployed));
    rc = 1;
  }

  std::vector<double> per_agent, converged, recorded, first_received, last_received;
  std::vector<double> heal_bytes, heard;  // per round: topology bytes sent, agents that heard
  for (int r = 0; rc == 0 && r < rounds; ++r) {
    struct Victim {
      std::string name, host;
      int64_t generation = 0;
      int64_t revision = 0;
    };
    auto victim = server.Call<Victim>([&] {
      Victim v;
      int k = 0;
      for (const auto& [name, inst] : server.controller().instances()) {
        if (inst.state != InstanceState::kCreating && inst.state != InstanceState::kRunning)
          continue;
        if (k++ == r) {
          v = {name, inst.allocation.host, inst.generation, 0};
          break;
        }
      }
      v.revision = server.controller().topology_revision();
      return v;
    });
    if (victim.name.empty() || !by_host.count(victim.host)) {
      std::fprintf(stderr, "round %d: no instance to crash\n", r);
      rc = 1;
      break;
    }
    const int64_t want = victim.revision + 1;
    std::vector<SimAgent*> before = AgentsWithInstances(server, by_host);
    auto t0 = Clock_::now();
    by_host[victim.host]->Crash(victim.name, victim.generation);
    // Everyone that held an instance, and the healed one's new host (it holds one now).
    bool healed = testing::WaitFor(
        [&] {
          return server.Call<bool>([&] {
            auto it = server.controller().instances().find(victim.name);
            return it != server.controller().instances().end() &&
                   it->second.generation > victim.generation;
          });
        },
        std::chrono::seconds(60), milliseconds(1));
    std::vector<SimAgent*> expected = AgentsWithInstances(server, by_host);
    for (auto* a : before) {
      if (std::find(expected.begin(), expected.end(), a) == expected.end()) expected.push_back(a);
    }
    if (!healed || !WaitAllAcked(expected, want, std::chrono::seconds(60))) {
      std::fprintf(stderr, "round %d: revision %lld not acked by every agent within 60 s\n", r,
                   static_cast<long long>(want));
      rc = 1;
      break;
    }
    double last = 0;
    double first_rx = 1e18;
    double last_rx = 0;
    size_t bytes = 0;
    for (auto& a : agents) bytes += a->ReceivedBytes(want);
    heal_bytes.push_back(static_cast<double>(bytes));
    heard.push_back(static_cast<double>(expected.size()));
    for (auto* a : expected) {
      double ms = Millis(*a->AckedAt(want) - t0);
      per_agent.push_back(ms);
      last = std::max(last, ms);
      if (auto rx = a->ReceivedAt(want)) {
        first_rx = std::min(first_rx, Millis(*rx - t0));
        last_rx = std::max(last_rx, Millis(*rx - t0));
      }
    }
    converged.push_back(last);
    first_received.push_back(first_rx);
    last_received.push_back(last_rx);
    std::set<std::string> expected_hosts;
    for (const auto& [host, a] : by_host) {
      if (std::find(expected.begin(), expected.end(), a) != expected.end()) {
        expected_hosts.insert(host);
      }
    }
    bool all = testing::WaitFor(
        [&] {
          auto hosts =
              server.Call<v1::ListHostsResponse>([&] { return server.controller().ListHosts(); });
          for (const auto& h : hosts.hosts())
            if (expected_hosts.count(h.name()) && h.applied_topology_revision() < want)
              return false;
          return true;
        },
        std::chrono::seconds(30), milliseconds(1));
    if (!all) {
      std::fprintf(stderr, "round %d: the controller did not record every ack\n", r);
      rc = 1;
      break;
    }
    recorded.push_back(Millis(Clock_::now() - t0));
    std::this_thread::sleep_for(milliseconds(50));  // let the round's stragglers settle
  }
  stop = true;
  heartbeats.join();
  for (auto& a : agents) a->Close();
  server.Shutdown();
  if (rc == 0) {
    std::printf(
        "[ blast ] N=%4d agents, %d rounds, %d instances%s: joined in %.0f ms\n"
        "[ blast ]   per agent  (event -> ack):        median %7.1f ms  p99 %7.1f ms  max %7.1f "
        "ms\n"
        "[ blast ]   converged  (event -> last ack):   median %7.1f ms  max %7.1f ms\n"
        "[ blast ]   recorded   (event -> ListHosts):  median %7.1f ms  max %7.1f ms\n"
        "[ blast ]   received   (event -> first / last agent got it): median %7.1f / %7.1f ms\n"
        "[ blast ]   per heal: %.0f agents heard of it (median), %.0f topology bytes sent "
        "(median; max %.0f)\n",
        n, rounds, std::min(instances, n * 4), g_flows ? ", flow sets computed" : "", connect_ms,
        Percentile(per_agent, 0.5), Percentile(per_agent, 0.99), Percentile(per_agent, 1.0),
        Percentile(converged, 0.5), Percentile(converged, 1.0), Percentile(recorded, 0.5),
        Percentile(recorded, 1.0), Percentile(first_received, 0.5), Percentile(last_received, 0.5),
        Percentile(heard, 0.5), Percentile(heal_bytes, 0.5), Percentile(heal_bytes, 1.0));
    std::fflush(stdout);
  }
  return rc;
}

}  // namespace
}  // namespace regen

int main(int argc, char** argv) {
  std::vector<int> sizes = {20, 1000};
  int rounds = 5;
  int instances = 40;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "blast_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--agents") {
      sizes.clear();
      std::stringstream ss(next());
      std::string part;
      while (std::getline(ss, part, ',')) sizes.push_back(std::atoi(part.c_str()));
    } else if (a == "--rounds") {
      rounds = std::atoi(next().c_str());
    } else if (a == "--instances") {
      instances = std::atoi(next().c_str());
    } else if (a == "--no-flows") {
      regen::g_flows = false;
    } else {
      std::fprintf(stderr,
                   "usage: blast_bench [--agents N[,N...]] [--rounds R] [--instances I] "
                   "[--no-flows]\n");
      return 2;
    }
  }
  regen::InitLogging("blast_bench", "error");
  for (int n : sizes) {
    if (n < 1 || rounds < 1 || instances < 1) {
      std::fprintf(stderr, "blast_bench: agents, rounds and instances must be positive\n");
      return 2;
    }
    if (int rc = regen::RunOnce(n, std::min(rounds, instances), instances); rc != 0) return rc;
  }
  return 0;
}
