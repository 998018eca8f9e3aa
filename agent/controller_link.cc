#include "agent/controller_link.h"

#include <algorithm>

#include <grpcpp/grpcpp.h>

#include "agent/agent_report.h"
#include "agent/etcd_lease.h"
#include "agent/host_capacity.h"
#include "agent/network_agent.h"
#include "common/backoff.h"
#include "common/controller_list.h"
#include "common/grpc_limits.h"
#include "common/grpc_tls.h"
#include "common/log.h"
#include "common/proto/regen.grpc.pb.h"

namespace regen {

namespace {
std::shared_ptr<grpc::Channel> DialController(const AgentConfig& config, const std::string& address,
                                              std::string* why);

// A duration in an ack, bounded so that no value a controller sends can overflow the clock
// (agent_intake_fuzz found the same overflow in health checks). A day bounds the lease, the
// host-down time and a hold; a heartbeat interval past a minute is a minute.
constexpr int64_t kMaxAckMs = 24 * 3600 * 1000;
constexpr int64_t kMaxHeartbeatMs = 60 * 1000;
std::chrono::milliseconds AckMs(int64_t ms, int64_t max) {
  return std::chrono::milliseconds(std::clamp<int64_t>(ms, 0, max));
}
}  // namespace

ControllerLink::ControllerLink(const AgentConfig& config, Agent& agent, Hypervisor& hypervisor,
                               Clock& clock)
    : config_(config), agent_(agent), hypervisor_(hypervisor), clock_(clock) {
  dialer_ = MakeDialer();
}

ControllerLink::~ControllerLink() { Stop(); }

void ControllerLink::Start() {
  agent_.SetReporters(
      [this](const std::vector<DomainInfo>& domains, const HealthReport& health) {
        // Every report is complete and carries each domain's current health (level-triggered).
        v1::AgentMessage msg;
        *msg.mutable_domains_report() =
            BuildDomainsReport(config_.host_name, domains, health, agent_.Staged());
        Enqueue(std::move(msg));
        // Domains came or went: their OVS ports too; the network worker resyncs.
        if (network_ != nullptr) network_->Poke();
      },
      [this](const FailureRecord& f) {
        // An edge: lost while disconnected, but the next Hello carries the domain's state and
        // health, which the controller acts on too.
        v1::AgentMessage msg;
        *msg.mutable_domain_event() = BuildDomainEvent(config_.host_name, f);
        Enqueue(std::move(msg));
      });
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void ControllerLink::Stop() {
  stop_ = true;
  {
    MutexLock lock(mu_);
    if (context_ != nullptr) static_cast<grpc::ClientContext*>(context_)->TryCancel();
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void ControllerLink::SetHung(bool hung) {
  hung_ = hung;
  MutexLock lock(mu_);
  cv_.notify_all();
}

std::string ControllerLink::refusal() {
  MutexLock lock(mu_);
  return refusal_;
}

void ControllerLink::Enqueue(v1::AgentMessage msg) {
  if (!connected_) return;  // the next Hello carries the whole state
  MutexLock lock(mu_);
  outbox_.push_back(std::move(msg));
  cv_.notify_all();
}

void ControllerLink::Run() {
  // Refused for what this agent is: slower, up to 30 s.
  Backoff refused_backoff({std::chrono::milliseconds(500), std::chrono::milliseconds(30000), 2});
  while (!stop_) {
    if (etcd_lease_ != nullptr && !etcd_lease_->AwaitKey(stop_)) break;  // stopped
    std::optional<ControllerDialer::Ready> ready = dialer_->Next(&dial_attempts_);
    if (!ready) break;  // stopped
    std::string detail;
    SessionEnd end = Session(*ready, &detail);
    if (stop_) break;
    switch (end) {
      case SessionEnd::kStandby:
        spdlog::debug("the controller at {} is a standby; the active one is at {}", ready->address,
                      detail.empty() ? "unknown" : detail);
        dialer_->Standby(ready->index, detail);
        break;
      case SessionEnd::kAnswered:
        // A controller that answered is gone (crash, restart, failover): try again at once.
        dialer_->SessionEnded(ready->index);
        break;
      case SessionEnd::kNone:
      case SessionEnd::kUnanswered:
        dialer_->Failed(ready->index, detail);
        break;
    }
    if (identity_refused_) {
      // Refused for what this agent is (its certificate, its name): retrying fast changes
      // nothing, so wait longer each time (up to 30 s), until its configuration is fixed.
      MutexLock lock(mu_);
      cv_.wait_for(lock.native(), refused_backoff.Next(), [&] { return stop_.load(); });
      continue;
    }
    refused_backoff.Reset();
  }
}

std::unique_ptr<ControllerDialer> ControllerLink::MakeDialer() {
  std::vector<std::string> addresses = config_.controller_addresses;
  if (addresses.empty()) {
    auto parsed = ParseControllerList(config_.controller_address);
    addresses = parsed.ok() ? *parsed : std::vector<std::string>{config_.controller_address};
  }
  ControllerDialer::Hooks hooks;
  hooks.make_channel = [this](const std::string& address, std::string* why) {
    return DialController(config_, address, why);
  };
  hooks.wait_until = [this](ControllerDialer::SteadyTime until) {
    MutexLock lock(mu_);
    cv_.wait_until(lock.native(), until, [&] { return stop_.load(); });
  };
  hooks.stopped = [this] { return stop_.load(); };
  hooks.lease_running = [this] { return !agent_.lease().Expired(); };
  hooks.on_all_failed = [this](const std::string& summary) { LogUnreachable(summary); };
  return std::make_unique<ControllerDialer>(std::move(addresses), std::move(hooks));
}

void ControllerLink::LogUnreachable(const std::string& summary) {
  spdlog::warn(
      "cannot reach {}: {}{}; retrying every {} ms while the lease runs (fencing after {} ms "
      "without it)",
      dialer_->addresses().size() == 1 ? "the controller" : "an active controller", summary,
      config_.tls.enabled()
          ? " over TLS (a failed TLS handshake shows as a failed connection: check tls.ca, "
            "tls.cert and tls.key of agent.yaml, that the controller's CA signed this host's "
            "certificate and that the controller's certificate names " +
                (config_.tls.server_name.empty()
                     ? std::string("the host of the controller_address dialled")
                     : config_.tls.server_name) +
                ")"
          : std::string(" (plaintext, insecure: true)"),
      kLeaseRetry.count(), config_.fencing_lease.count());
}

void ControllerLink::SendTopologyApplied(int64_t revision) {
  v1::AgentMessage msg;
  msg.mutable_topology_applied()->set_revision(revision);
  Enqueue(std::move(msg));
}

namespace {

constexpr int kGrpcReconnectMs = 80;

// A channel to the controller at `address`, connecting from now (null when the TLS files cannot be
// read: *why says so). The files are read at each dial: renewed certificates are used without a
// restart. The channel has a subchannel of its own, so no backoff state of an earlier channel
// delays it; one connection attempt (TCP and TLS handshake) may take the dialer's whole window.
// The TLS name checked is tls.server_name, else the host of `address`.
std::shared_ptr<grpc::Channel> DialController(const AgentConfig& config, const std::string& address,
                                              std::string* why) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kGrpcReconnectMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kGrpcReconnectMs);
  // gRPC 1.51 uses this as the connect (and TLS handshake) timeout of one attempt, not as a wait.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(ControllerDialer::kDialWindow.count()));
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(kMaxTopologyMessageBytes);  // the topology (common/grpc_limits.h)
  args.SetMaxSendMessageSize(kMaxRequestMessageBytes);
  TlsFiles files;
  if (config.tls.enabled()) {
    files = {config.tls.ca, config.tls.cert, config.tls.key, config.tls.server_name,
             config.tls.crl};
  }
  auto credentials = MakeChannelCredentials(files);
  if (!credentials.ok()) {
    *why = credentials.status().message();
    spdlog::error("cannot connect to the controller at {}: {}", address, *why);
    return nullptr;
  }
  ApplyServerName(files, &args);
  return grpc::CreateCustomChannel(address, *credentials, args);
}

}  // namespace

Resources ControllerLink::Capacity() {
  const Resources configured = config_.capacity.value_or(Resources{});
  MeasuredCapacity m;
  if (configured.vcpus <= 0 || configured.memory_mib <= 0) {
    if (auto c = hypervisor_.Capacity(); c.ok()) {
      m.vcpus = c->cpus;
      m.memory_mib = c->memory_mib;
    }
  }
  if (configured.disk_gib <= 0) {
    m.disk_dir = config_.state_dir;
    m.disk_gib = DiskRoomGib(config_.state_dir, config_.state_dir + "/disks");
  }
  if (configured.bandwidth_mbps <= 0) {
    NicSpeed nic =
        NicSpeedOf(config_.network.tunnel_ip.empty() ? config_.address : config_.network.tunnel_ip);
    m.nic = nic.nic;
    m.bandwidth_mbps = nic.mbps;
  }
  FilledCapacity filled = FillCapacity(configured, config_.reserve, m);
  if (filled.explained != capacity_explained_) {  // said once, and again when it changes
    capacity_explained_ = filled.explained;
    spdlog::info("capacity offered to the controller: {}", filled.explained);
    if (!filled.warnings.empty()) spdlog::warn("capacity: {}", filled.warnings);
  }
  return filled.value;
}

v1::AgentMessage ControllerLink::BuildHello(const std::vector<DomainInfo>& domains,
                                            const FenceLog::Snapshot& fenced) {
  v1::AgentMessage hello_msg;
  auto* hello = hello_msg.mutable_hello();
  hello->set_host(config_.host_name);
  hello->set_address(config_.address);
  hello->set_agent_version("0.1");
  const Resources cap = Capacity();
  auto* pc = hello->mutable_capacity();
  pc->set_vcpus(cap.vcpus);
  pc->set_memory_mib(cap.memory_mib);
  pc->set_disk_gib(cap.disk_gib);
  pc->set_bandwidth_mbps(cap.bandwidth_mbps);
  AddDomains(domains, agent_.Health(), agent_.Staged(), hello);
  if (network_ != nullptr) hello->set_applied_topology_revision(network_->applied_revision());
  hello->set_network(network_ != nullptr);  // its tunnel address must be its own
  hello->set_topology_deltas(true);         // NetworkAgent::Submit applies them
  const DomainTypeChoice type = agent_.domain_type();
  hello->set_domain_type(type.type);
  hello->set_domain_type_reason(type.reason);
  if (etcd_lease_ != nullptr) {
    hello_etcd_revision_ = etcd_lease_->revision();
    hello->set_etcd_lease(true);
    hello->set_etcd_lease_revision(hello_etcd_revision_);
  }
  AddFenced(fenced.records, hello);
  return hello_msg;
}

void ControllerLink::OnDesired(const v1::DesiredInstances& d) {
  DesiredSet set = DesiredFromProto(d);
  AcceptHello();
  if (on_desired_) on_desired_(set.instances);
  agent_.SetControllerDesired(std::move(set.instances), std::move(set.checks),
                              std::move(set.stage));
}

void ControllerLink::AcceptHello() {
  std::optional<FenceLog::Snapshot> sent;
  {
    MutexLock lock(mu_);
    sent.swap(hello_fenced_);
  }
  if (!sent || sent->records.empty()) return;
  spdlog::info("the controller accepted the Hello reporting {} fenced instances",
               sent->records.size());
  agent_.fence_log().Accept(*sent);
}

void ControllerLink::OnHeartbeatAck(const v1::HeartbeatAck& ack) {
  AcceptHello();
  Clock::TimePoint sent;
  {
    MutexLock lock(mu_);
    auto it = sent_.find(ack.sequence());
    if (it == sent_.end()) return;
    sent = it->second;
    if (ack.heartbeat_interval_ms() > 0 &&
        heartbeat_interval_ != AckMs(ack.heartbeat_interval_ms(), kMaxHeartbeatMs)) {
      // The writer's next heartbeat moves to the controller's interval at once (it first
      // counted with its own guess, a quarter of the lease, which can look like silence).
      heartbeat_interval_ = AckMs(ack.heartbeat_interval_ms(), kMaxHeartbeatMs);
      cv_.notify_all();
    }
    acked_through_ = std::max(acked_through_, ack.sequence());
    last_ack_ = clock_.Now();
    sent_.erase(sent_.begin(), std::next(it));
  }
  bool first_ack = !session_answered_.exchange(true);
  auto effective = config_.fencing_lease;
  if (ack.fencing_lease_ms() > 0) {
    effective = std::min(effective, AckMs(ack.fencing_lease_ms(), kMaxAckMs));
  }
  if (timing_ != nullptr && ack.host_down_after_ms() > 0) {
    timing_->Note(effective, AckMs(ack.host_down_after_ms(), kMaxAckMs), first_ack);
  }
  // The lease and a hold count from when the acknowledged heartbeat left, never from the ack.
  // (Outside mu_: the agent records them in state_dir.) etcd mode: only etcd renews the lease.
  if (etcd_lease_ == nullptr) agent_.RenewLease(sent + effective);
  if (ack.hold_ms() > 0) {
    agent_.SetHold(sent + AckMs(ack.hold_ms(), kMaxAckMs));
  } else {
    agent_.SetHold(std::nullopt);
  }
}

void ControllerLink::OnControllerMessage(const v1::ControllerMessage& msg) {
  if (msg.has_action() && msg.action().has_desired()) {
    OnDesired(msg.action().desired());
  } else if (msg.has_topology()) {
    // Applied by the network worker, which acks through SendTopologyApplied. A delta that does
    // not build on what the worker has: the controller is asked for the whole slice.
    if (network_ != nullptr && !network_->Submit(msg.topology()) && network_->snapshot_needed()) {
      v1::AgentMessage ask;
      ask.mutable_topology_applied()->set_revision(network_->latest_revision());
      ask.mutable_topology_applied()->set_snapshot_needed(true);
      Enqueue(std::move(ask));
    }
  } else if (msg.has_notification()) {
    if (on_notification_) on_notification_(msg.notification());
  } else if (msg.has_heartbeat_ack()) {
    OnHeartbeatAck(msg.heartbeat_ack());
  } else if (msg.has_refusal()) {
    spdlog::error("the controller refused this agent: {}", msg.refusal().reason());
    MutexLock lock(mu_);
    refusal_ = msg.refusal().reason();
  }
}

bool ControllerLink::WriteLoop(const std::function<bool(const v1::AgentMessage&)>& write) {
  const auto lease = config_.fencing_lease;
  uint64_t sequence = 0;
  uint64_t acked_through = 0;
  auto next_heartbeat = clock_.Now();
  std::optional<Clock::TimePoint> last_sent;
  while (!stop_) {
    std::deque<v1::AgentMessage> out;
    bool send_heartbeat = false;
    {
      MutexLock lock(mu_);
      if (last_sent) next_heartbeat = std::min(next_heartbeat, *last_sent + heartbeat_interval_);
      auto wait = std::max<Clock::Duration>(next_heartbeat - clock_.Now(), Clock::Duration::zero());
      auto deadline = std::chrono::steady_clock::now() + wait;
      while (!stop_ && !reader_done_ && (outbox_.empty() || hung_)) {
        if (cv_.wait_until(lock.native(), deadline) == std::cv_status::timeout) break;
        if (last_sent && *last_sent + heartbeat_interval_ < next_heartbeat) break;  // sooner now
      }
      if (reader_done_) break;
      auto now = clock_.Now();
      if (hung_) {
        // Silent, but the stream stays open; what was to be sent waits, as in a stalled process
        // (dropped, a report of domains started meanwhile never came: chaos seed 20261215).
        next_heartbeat = now + heartbeat_interval_;
        last_ack_ = now;
        continue;
      }
      out.swap(outbox_);
      if (agent_.fence_log().seq() > hello_seq_) {
        // A fence (or a domain destroyed for it) since this session's Hello: say Hello again,
        // so the controller hears of it now and its next desired set counts.
        spdlog::warn("fenced since the last Hello: saying Hello to the controller again");
        break;
      }
      if (etcd_lease_ != nullptr && etcd_lease_->revision() != 0 &&
          etcd_lease_->revision() != hello_etcd_revision_) {
        spdlog::warn("this host's etcd key was put again (revision {}): saying Hello again",
                     etcd_lease_->revision());
        break;
      }
      acked_through = acked_through_;
      if (now >= next_heartbeat) {
        send_heartbeat = true;
        sent_[++sequence] = now;
        next_heartbeat = now + heartbeat_interval_;
        last_sent = now;
      }
      if (now - last_ack_ > 2 * lease + heartbeat_interval_) {
        spdlog::warn(
            "no heartbeat ack from the controller for {} ms; reconnecting",
            std::chrono::duration_cast<std::chrono::milliseconds>(now - last_ack_).count());
        break;
      }
    }
    bool ok = true;
    for (auto& m : out) ok = ok && write(m);
    if (send_heartbeat) {
      v1::AgentMessage hb;
      auto* h = hb.mutable_heartbeat();
      h->set_host(config_.host_name);
      h->set_sequence(sequence);
      h->set_sent_unix_ms(clock_.WallMillis());
      h->set_acked_through(acked_through);
      h->set_hold_remaining_ms(agent_.lease().HoldRemaining().count());
      ok = ok && write(hb);
    }
    if (!ok) return false;  // the stream is over: the reader gets its status
  }
  return true;
}

void ControllerLink::BeginSession(const FenceLog::Snapshot& fenced, void* context) {
  // Before the reader starts: the agent learns of this Hello before any desired set it answers.
  agent_.NoteHello(fenced.seq);
  {
    MutexLock lock(mu_);
    hello_seq_ = fenced.seq;
    hello_fenced_ = fenced;
    acked_through_ = 0;
    context_ = context;
    outbox_.clear();
    refusal_.clear();
    sent_.clear();
    heartbeat_interval_ = std::max(config_.fencing_lease / 4, std::chrono::milliseconds(50));
    last_ack_ = clock_.Now();
    reader_done_ = false;
  }
  connected_ = true;
}

ControllerLink::SessionEnd ControllerLink::Session(const ControllerDialer::Ready& ready,
                                                   std::string* detail) {
  identity_refused_ = false;
  session_answered_ = false;
  // Hello carries the host's domains: say it only with a real listing in hand.
  auto domains = agent_.Domains();
  if (!domains) {
    spdlog::warn("not saying hello to the controller yet: the hypervisor cannot be listed");
    *detail = "no Hello sent: the hypervisor cannot be listed";
    return SessionEnd::kNone;
  }
  auto stub = v1::AgentService::NewStub(ready.channel);
  grpc::ClientContext ctx;
  auto stream = stub->Connect(&ctx);
  FenceLog::Snapshot fenced = agent_.fence_log().Take();
  if (!stream->Write(BuildHello(*domains, fenced))) {
    grpc::Status status = stream->Finish();
    if (auto active = StandbyRedirect(status.error_message());
        active && status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      *detail = *active;
      return SessionEnd::kStandby;
    }
    *detail = "the stream failed before the Hello: " + status.error_message();
    return SessionEnd::kNone;
  }
  BeginSession(fenced, &ctx);

  std::thread reader([&] {
    v1::ControllerMessage msg;
    bool first = true;
    while (stream->Read(&msg)) {
      if (first) {
        // An answer: this is the active controller (a standby ends the stream at once).
        first = false;
        dialer_->Connected(ready.index);
        spdlog::info("connected to the controller at {} as host {}", ready.address,
                     config_.host_name);
      }
      OnControllerMessage(msg);
    }
    MutexLock lock(mu_);
    reader_done_ = true;
    cv_.notify_all();
  });
  bool ending = WriteLoop([&](const v1::AgentMessage& m) { return stream->Write(m); });
  connected_ = false;
  {
    MutexLock lock(mu_);
    context_ = nullptr;
    ending = ending && !reader_done_;
  }
  // Cancelled only when this side ends it: a cancel would hide the status the controller sent
  // (a standby's UNAVAILABLE naming the active one).
  if (ending || stop_) ctx.TryCancel();
  reader.join();
  grpc::Status status = stream->Finish();
  identity_refused_ = status.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
                      status.error_code() == grpc::StatusCode::UNAUTHENTICATED;
  if (!session_answered_) {
    if (auto active = StandbyRedirect(status.error_message());
        active && status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      *detail = *active;
      return SessionEnd::kStandby;
    }
  }
  std::string how = status.ok() ? std::string("closed") : status.error_message();
  if (!stop_) spdlog::warn("controller stream from {} ended: {}", ready.address, how);
  if (session_answered_) return SessionEnd::kAnswered;
  *detail = "the stream ended before any answer: " + how;
  return SessionEnd::kUnanswered;
}

}  // namespace regen
