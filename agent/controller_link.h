// The agent's connection to the controller: one AgentService.Connect stream (Hello with capacity
// and domains, heartbeats, domain reports and failure events up; desired sets, heartbeat acks and
// refusals down). With several controller addresses (HA) it follows the active one: a standby's
// UNAVAILABLE "standby controller; the active controller is at X" sends it to X
// (agent/controller_dialer.h). Lost, it is tried again at once and then every 100 ms while the
// agent's lease (or a maintenance hold) runs, then with backoff up to 1 s. Each acknowledged
// heartbeat renews the agent's fencing lease (and sets or ends its maintenance hold) from the
// moment that heartbeat was sent (never later), so the agent fences before the controller can
// declare the host down. Each Hello reports the instances the agent destroyed for safety (its fence
// log); the first ack or desired set after it clears them. Start/Stop from one thread; Send*
// thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "agent/agent_report.h"  // the wire conversions (SpecFromProto, DomainToProto, ...)
#include "agent/controller_dialer.h"
#include "agent/fence_timing.h"
#include "agent/hypervisor.h"
#include "common/clock.h"
#include "common/proto/regen.pb.h"
#include "common/thread_annotations.h"
#include "config/agent_config.h"

namespace regen {

class NetworkAgent;
class EtcdLease;

class ControllerLink {
 public:
  ControllerLink(const AgentConfig& config, Agent& agent, Hypervisor& hypervisor, Clock& clock);
  ~ControllerLink();

  // Topology revisions go to `network` (which must outlive the link; set before Start); Hello
  // carries its applied revision. Without one, topology messages are ignored.
  void SetNetworkAgent(NetworkAgent* network) { network_ = network; }
  // etcd mode (agent.yaml `etcd:`): `lease` keeps this host's key (must outlive the link; set
  // before Start). No Hello goes out before the key is put; each carries the key's revision, and
  // a new one (the key was put again) makes the link say Hello again. Acks then renew nothing.
  void SetEtcdLease(EtcdLease* lease) { etcd_lease_ = lease; }
  // Set before Start(): each heartbeat ack's fencing_lease and host_down_after go to `check`.
  void SetFenceTimingCheck(FenceTimingCheck* check) { timing_ = check; }
  // Tells the controller that topology `revision` is applied (any thread).
  void SendTopologyApplied(int64_t revision);
  // Called on the link's reader thread (must not block): an event for instances on this host,
  // and every desired set the controller sends (before the agent applies it).
  using NotificationHandler = std::function<void(const v1::InstanceNotification&)>;
  using DesiredObserver = std::function<void(const std::vector<InstanceSpec>&)>;
  // Set before Start().
  void SetObservers(NotificationHandler on_notification, DesiredObserver on_desired) {
    on_notification_ = std::move(on_notification);
    on_desired_ = std::move(on_desired);
  }

  // Registers the agent's reporters and starts the connection thread.
  void Start();
  void Stop();
  bool connected() const { return connected_.load(); }
  // Fault injection: while hung the link sends nothing (no heartbeats, no reports) but keeps the
  // stream open, so the controller sees a silent host and this agent's lease runs out.
  void SetHung(bool hung);
  // The last refusal from the controller ("" if none).
  std::string refusal();
  // Connection attempts so far, over all addresses (tests and diagnostics).
  int64_t dial_attempts() const { return dial_attempts_.load(); }
  // The address of the controller this agent is connected to ("" if none), and what each
  // configured address said last (status). Any thread.
  std::string connected_address() const { return dialer_->connected(); }
  std::vector<ControllerDialer::View> controller_states() const { return dialer_->Snapshot(); }
  // While the lease runs, a lost controller is tried again this often.
  static constexpr std::chrono::milliseconds kLeaseRetry{100};

 private:
  // How a session with an address that accepted the connection ended.
  enum class SessionEnd {
    kNone,        // no Hello went out (the hypervisor cannot be listed, the stream failed)
    kStandby,     // a standby answered (detail: the active it names, "" = unknown)
    kUnanswered,  // the stream ended before any answer (detail: how)
    kAnswered,    // the controller answered; the stream has ended since
  };
  void Run();
  void LogUnreachable(const std::string& summary);
  SessionEnd Session(const ControllerDialer::Ready& ready, std::string* detail);
  std::unique_ptr<ControllerDialer> MakeDialer();
  // The session's state once its Hello (reporting `fenced`) went out on `context`.
  void BeginSession(const FenceLog::Snapshot& fenced, void* context);
  // The session's parts: the Hello, what the controller sends (reader thread), and the writer
  // (heartbeats and the outbox) until the stream ends, Stop() or no ack for too long.
  // What Hello.capacity offers (agent/host_capacity.h); logged when it changes. Link thread.
  Resources Capacity();
  v1::AgentMessage BuildHello(const std::vector<DomainInfo>& domains,
                              const FenceLog::Snapshot& fenced);
  // The controller answered this session's Hello: the fences it reported are delivered.
  void AcceptHello();
  void OnControllerMessage(const v1::ControllerMessage& msg);
  void OnDesired(const v1::DesiredInstances& desired);
  void OnHeartbeatAck(const v1::HeartbeatAck& ack);
  // True when this side ends the session (Stop, no ack, a new Hello due); false when the stream
  // ended under it (the controller closed it, a write failed).
  bool WriteLoop(const std::function<bool(const v1::AgentMessage&)>& write);
  void Enqueue(v1::AgentMessage msg);

  const AgentConfig config_;
  Agent& agent_;
  Hypervisor& hypervisor_;
  Clock& clock_;
  NetworkAgent* network_ = nullptr;
  EtcdLease* etcd_lease_ = nullptr;
  FenceTimingCheck* timing_ = nullptr;
  int64_t hello_etcd_revision_ = 0;  // link thread: the key's revision this session's Hello named
  NotificationHandler on_notification_;
  DesiredObserver on_desired_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  std::atomic<bool> hung_{false};
  std::thread thread_;
  // The last session ended with PERMISSION_DENIED or UNAUTHENTICATED (a certificate that does
  // not name this host, ...): reconnect slowly. Link thread only.
  bool identity_refused_ = false;
  std::atomic<bool> session_answered_{false};  // the session got an ack
  std::atomic<int64_t> dial_attempts_{0};
  std::unique_ptr<ControllerDialer> dialer_;  // link thread, but for its thread-safe views

  Mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::AgentMessage> outbox_ GUARDED_BY(mu_);
  std::string refusal_ GUARDED_BY(mu_);
  void* context_ GUARDED_BY(mu_) = nullptr;  // the live grpc::ClientContext
  // The live session's heartbeats (reset by each Session): sequence -> when it was sent, the
  // interval (the controller may change it in an ack), the last ack, and the reader's end.
  std::map<uint64_t, Clock::TimePoint> sent_ GUARDED_BY(mu_);
  std::chrono::milliseconds heartbeat_interval_ GUARDED_BY(mu_){0};
  Clock::TimePoint last_ack_ GUARDED_BY(mu_){};
  uint64_t acked_through_ GUARDED_BY(mu_) = 0;  // the highest ack applied in this session
  // The fence log as this session's Hello reported it; hello_fenced_ until the controller
  // answers that Hello.
  uint64_t hello_seq_ GUARDED_BY(mu_) = 0;
  std::optional<FenceLog::Snapshot> hello_fenced_ GUARDED_BY(mu_);
  bool reader_done_ GUARDED_BY(mu_) = false;
  std::string capacity_explained_;  // the capacity last logged (the session thread's)
};

}  // namespace regen
