// Simulated agents for the fleet benchmark (fleet_bench.cc): thousands of hosts in one process,
// each a real AgentService.Connect stream (gRPC's callback API: no thread per stream) that says
// Hello, heartbeats, runs what its desired set says (at once, no hypervisor), reports its domains,
// follows its slice of the topology by revision (a whole slice, or a delta on the revision it has;
// a delta on another asks for a whole slice, as the network agent does) and acks each revision. A
// host whose lease is not renewed for the controller's fencing_lease fences: it drops its domains
// and counts a fence, as the real agent does. A host whose stream ends reconnects after 50-100 ms.
// Every method is safe from any thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/proto/regen.grpc.pb.h"

namespace regen::fleet {

using Clock = std::chrono::steady_clock;

class SimHost;

// What every host counts into; read by the benchmark between phases.
struct FleetCounters {
  std::atomic<uint64_t> topology_bytes{0};
  std::atomic<uint64_t> heartbeat_acks{0};
  std::atomic<uint64_t> fences{0};
  std::atomic<uint64_t> refusals{0};
  std::atomic<uint64_t> delta_mismatches{0};  // a delta on a revision this host did not have
  std::atomic<uint64_t> sessions_started{0};
  std::atomic<int64_t> last_ack_ns{0};  // steady clock: when any host last acked a revision
};

// When each host acked a topology revision, recorded while a window is open (one heal).
class AckWindow {
 public:
  void Open(Clock::time_point t0);
  void Close();
  void Record(Clock::time_point at);
  // Milliseconds from t0 to each ack recorded in the window.
  std::vector<double> Latencies();

  // Watches instances for their re-creation: `watched` maps each to the generation it had.
  void Watch(std::map<std::string, int64_t> watched);
  // A host was told to run `instance` at `generation` (its desired set).
  void OnDesired(const std::string& instance, int64_t generation, Clock::time_point at);
  // How many watched instances were re-created (a host told to run a later generation), and
  // when the last of them was.
  size_t Recreated();
  Clock::time_point LastRecreatedAt();

 private:
  std::mutex mu_;
  bool open_ = false;
  Clock::time_point t0_;
  std::vector<double> ms_;
  std::map<std::string, int64_t> watched_;
  size_t recreated_ = 0;
  Clock::time_point last_recreated_{};
};

struct FleetOptions {
  std::string target;  // host:port of the controller
  int hosts = 1000;
  int hosts_per_connection = 50;  // the controller allows 100 streams per connection
  int64_t vcpus = 32;
  int64_t memory_mib = 32768;
};

class Fleet {
 public:
  explicit Fleet(FleetOptions options);
  ~Fleet();

  // Creates the hosts and starts them (each connects, then heartbeats every interval the
  // controller asks for).
  void Start();
  // Stops every host (no reconnect) and waits for their streams to end.
  void Stop();

  SimHost& host(int i) { return *hosts_[static_cast<size_t>(i)]; }
  int size() const { return static_cast<int>(hosts_.size()); }
  FleetCounters& counters() { return counters_; }
  AckWindow& acks() { return acks_; }
  // Hosts whose current stream has had a heartbeat acked since `since`.
  int RenewedSince(Clock::time_point since);
  // Hosts with a stream open now.
  int Connected();

 private:
  void Ticker();

  FleetOptions options_;
  FleetCounters counters_;
  AckWindow acks_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<SimHost>> hosts_;
  std::atomic<bool> stop_{false};
  std::thread ticker_;
};

class SimHost {
 public:
  SimHost(std::string name, std::string address, const FleetOptions& options,
          std::shared_ptr<grpc::Channel> channel, FleetCounters& counters, AckWindow& acks);
  ~SimHost();

  const std::string& name() const { return name_; }
  // Called by the fleet's ticker: connects (or reconnects) when due, heartbeats when due, fences
  // when the lease ran out.
  void Tick(Clock::time_point now);
  // Ends the stream and never reconnects (a host lost with its rack).
  void Kill();
  // Reports `instance` crashed (a libvirt lifecycle event), as its agent would; false if this
  // host does not run it.
  bool Crash(const std::string& instance);
  // The instances this host runs now, by name, with their generation.
  std::map<std::string, int64_t> Domains();
  bool connected();
  // The current stream had a heartbeat acked that was sent at or after `since`.
  bool RenewedSince(Clock::time_point since);
  bool dead();
  // Waits for the stream (if any) to end.
  void Join();

 private:
  class Session;
  friend class Session;

  std::shared_ptr<Session> TickLocked(Clock::time_point now);
  bool CrashLocked(const std::string& instance);
  // A new stream, prepared (Hello queued); the caller Begins it outside mu_.
  std::shared_ptr<Session> Connect();
  v1::AgentMessage HelloMessage();
  void OnMessage(Session* session, const v1::ControllerMessage& msg);
  void OnTopology(Session* session, const v1::TopologyRevision& t, size_t bytes);
  void OnDesired(Session* session, const v1::Action& action);
  void OnSessionDone(Session* session);
  v1::AgentMessage ReportMessage(const std::string& operation_id);
  // Every domain it runs, as a Hello and a report list them.
  void AddDomains(google::protobuf::RepeatedPtrField<v1::DomainStatus>* out);

  const std::string name_;
  const std::string address_;
  const FleetOptions& options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
  FleetCounters& counters_;
  AckWindow& acks_;

  // Never held across a gRPC call (Session).
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::shared_ptr<Session> session_;  // the stream writes may go on; guarded by mu_
  int live_sessions_ = 0;             // streams started whose OnDone has not run
  bool killed_ = false;
  Clock::time_point reconnect_at_{};
  Clock::time_point next_heartbeat_{};
  Clock::time_point renewed_at_{};  // when the last acked heartbeat was sent
  std::deque<std::pair<uint64_t, Clock::time_point>> sent_heartbeats_;
  uint64_t heartbeat_sequence_ = 0;
  std::chrono::milliseconds heartbeat_interval_{500};
  std::chrono::milliseconds fencing_lease_{0};  // 0 until the controller said it
  std::map<std::string, int64_t> domains_;      // instance -> generation
  std::map<std::string, v1::InstanceSpec> specs_;
  std::vector<v1::FencedInstance> fenced_;
  int64_t revision_ = 0;  // the topology revision its slice is at
};

}  // namespace regen::fleet
