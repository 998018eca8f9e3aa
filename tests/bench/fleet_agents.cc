#include "tests/bench/fleet_agents.h"

#include <cstdio>
#include <random>

namespace regen::fleet {

namespace {

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::chrono::milliseconds Jitter(int from_ms, int to_ms) {
  thread_local std::minstd_rand rng(std::random_device{}());
  return std::chrono::milliseconds(std::uniform_int_distribution<int>(from_ms, to_ms)(rng));
}

}  // namespace

void AckWindow::Open(Clock::time_point t0) {
  std::lock_guard lock(mu_);
  open_ = true;
  t0_ = t0;
  ms_.clear();
}

void AckWindow::Close() {
  std::lock_guard lock(mu_);
  open_ = false;
}

void AckWindow::Record(Clock::time_point at) {
  std::lock_guard lock(mu_);
  if (open_) ms_.push_back(std::chrono::duration<double, std::milli>(at - t0_).count());
}

std::vector<double> AckWindow::Latencies() {
  std::lock_guard lock(mu_);
  return ms_;
}

void AckWindow::Watch(std::map<std::string, int64_t> watched) {
  std::lock_guard lock(mu_);
  watched_ = std::move(watched);
  recreated_ = 0;
  last_recreated_ = {};
}

void AckWindow::OnDesired(const std::string& instance, int64_t generation, Clock::time_point at) {
  std::lock_guard lock(mu_);
  auto it = watched_.find(instance);
  if (it == watched_.end() || generation <= it->second) return;
  watched_.erase(it);
  ++recreated_;
  last_recreated_ = at;
}

size_t AckWindow::Recreated() {
  std::lock_guard lock(mu_);
  return recreated_;
}

Clock::time_point AckWindow::LastRecreatedAt() {
  std::lock_guard lock(mu_);
  return last_recreated_;
}

// One stream. The host and gRPC share it (self_ is gRPC's reference, dropped in OnDone). No gRPC
// call (Start*, TryCancel) is ever made under a lock: gRPC may run any stream's callbacks inline
// inside one, and those take locks. Send only queues; Pump, called with no lock held, starts the
// next write. A hold keeps OnDone back until the reads ended (released_); each write start holds
// its own for the moment it is outside the lock.
class SimHost::Session final
    : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ControllerMessage> {
 public:
  explicit Session(SimHost& host) : host_(host) {}

  // Binds the call and queues the Hello (under the host's lock: no callback can run yet).
  void Prepare(std::shared_ptr<Session> self, v1::AgentMessage hello) {
    self_ = std::move(self);
    host_.stub_->async()->Connect(&context_, this);
    AddHold();
    Send(std::move(hello));
  }
  // Starts the call (no lock held).
  void Begin() {
    Pump();
    StartRead(&in_);
    StartCall();
  }
  // Queues `m`; dropped once the stream ended.
  void Send(v1::AgentMessage m) {
    std::lock_guard lock(mu_);
    if (!released_ && !failed_) queue_.push_back(std::move(m));
  }
  // Starts the next queued write unless one is in flight (no lock held).
  void Pump() {
    {
      std::lock_guard lock(mu_);
      if (writing_ || !TakeNextLocked()) return;
    }
    StartWrite(&out_);
    RemoveHold();
  }
  void Cancel() { context_.TryCancel(); }
  bool renewed = false;  // a heartbeat was acked on this stream; guarded by the host's mu_

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) {
        failed_ = true;
        queue_.clear();
      }
      if (!TakeNextLocked()) return;
    }
    StartWrite(&out_);
    RemoveHold();
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      host_.OnSessionDone(this);
      {
        std::lock_guard lock(mu_);
        released_ = true;
        queue_.clear();
      }
      RemoveHold();
      return;
    }
    host_.OnMessage(this, in_);
    Pump();
    StartRead(&in_);
  }
  void OnDone(const grpc::Status&) override {
    SimHost& host = host_;
    std::shared_ptr<Session> keep = std::move(self_);
    std::lock_guard lock(host.mu_);
    --host.live_sessions_;
    host.done_cv_.notify_all();
  }

 private:
  // Moves the next message to out_ and takes a hold for its start; false if none may start.
  bool TakeNextLocked() {
    if (released_ || failed_ || queue_.empty()) return false;
    writing_ = true;
    out_ = std::move(queue_.front());
    queue_.pop_front();
    AddHold();
    return true;
  }

  SimHost& host_;
  std::shared_ptr<Session> self_;
  grpc::ClientContext context_;
  v1::ControllerMessage in_;
  std::mutex mu_;
  v1::AgentMessage out_;
  std::deque<v1::AgentMessage> queue_;
  bool writing_ = false;
  bool failed_ = false;
  bool released_ = false;
};

SimHost::SimHost(std::string name, std::string address, const FleetOptions& options,
                 std::shared_ptr<grpc::Channel> channel, FleetCounters& counters, AckWindow& acks)
    : name_(std::move(name)),
      address_(std::move(address)),
      options_(options),
      channel_(std::move(channel)),
      stub_(v1::AgentService::NewStub(channel_)),
      counters_(counters),
      acks_(acks) {}

SimHost::~SimHost() {
  Kill();
  Join();
}

void SimHost::Tick(Clock::time_point now) {
  std::shared_ptr<Session> started;
  std::shared_ptr<Session> current;
  {
    std::lock_guard lock(mu_);
    started = TickLocked(now);
    current = session_;
  }
  if (started) {
    started->Begin();
  } else if (current) {
    current->Pump();
  }
}

std::shared_ptr<SimHost::Session> SimHost::TickLocked(Clock::time_point now) {
  if (killed_) return nullptr;
  if (fencing_lease_.count() > 0 && !domains_.empty() && now - renewed_at_ > fencing_lease_) {
    // The lease ran out: destroy every domain, as the agent's self-fencing does.
    for (const auto& [instance, generation] : domains_) {
      v1::FencedInstance f;
      f.set_instance(instance);
      f.set_generation(generation);
      f.set_fenced_unix_ms(UnixMs());
      f.set_reason("no lease renewal for " + std::to_string(fencing_lease_.count()) + " ms");
      fenced_.push_back(f);
    }
    std::fprintf(stderr, "fleet: %s fenced %zu domains\n", name_.c_str(), domains_.size());
    domains_.clear();
    specs_.clear();
    counters_.fences++;
  }
  if (session_ == nullptr) {
    if (now >= reconnect_at_ && live_sessions_ == 0) return Connect();
    return nullptr;
  }
  if (now >= next_heartbeat_) {
    next_heartbeat_ = now + heartbeat_interval_;
    v1::AgentMessage m;
    auto* hb = m.mutable_heartbeat();
    hb->set_host(name_);
    hb->set_sequence(++heartbeat_sequence_);
    hb->set_sent_unix_ms(UnixMs());
    sent_heartbeats_.emplace_back(heartbeat_sequence_, now);
    while (sent_heartbeats_.size() > 64) sent_heartbeats_.pop_front();
    session_->Send(std::move(m));
  }
  return nullptr;
}

std::shared_ptr<SimHost::Session> SimHost::Connect() {
  counters_.sessions_started++;
  ++live_sessions_;
  session_ = std::make_shared<Session>(*this);
  next_heartbeat_ = Clock::now() + Jitter(0, static_cast<int>(heartbeat_interval_.count()));
  session_->Prepare(session_, HelloMessage());
  return session_;
}

v1::AgentMessage SimHost::HelloMessage() {
  v1::AgentMessage m;
  auto* h = m.mutable_hello();
  h->set_host(name_);
  h->set_address(address_);
  h->set_agent_version("fleet-bench");
  h->set_topology_deltas(true);
  h->set_applied_topology_revision(revision_);
  h->mutable_capacity()->set_vcpus(options_.vcpus);
  h->mutable_capacity()->set_memory_mib(options_.memory_mib);
  h->mutable_capacity()->set_disk_gib(1000);
  h->mutable_capacity()->set_bandwidth_mbps(100000);
  AddDomains(h->mutable_domains());
  for (const auto& f : fenced_) *h->add_fenced() = f;
  return m;
}

void SimHost::AddDomains(google::protobuf::RepeatedPtrField<v1::DomainStatus>* out) {
  for (const auto& [instance, generation] : domains_) {
    auto* d = out->Add();
    const v1::InstanceSpec& spec = specs_[instance];
    d->set_name(instance);
    d->set_state(v1::DOMAIN_STATE_RUNNING);  // everything it runs runs
    d->set_service(spec.service());
    d->set_update_domain(spec.update_domain());
    d->set_version(spec.version());
    d->set_generation(generation);
  }
}

v1::AgentMessage SimHost::ReportMessage(const std::string& operation_id) {
  v1::AgentMessage m;
  auto* r = m.mutable_domains_report();
  r->set_host(name_);
  r->set_complete(true);
  r->set_applied_desired_operation_id(operation_id);
  AddDomains(r->mutable_domains());
  return m;
}

void SimHost::OnMessage(Session* session, const v1::ControllerMessage& msg) {
  std::lock_guard lock(mu_);
  if (session_.get() != session) return;
  if (msg.has_heartbeat_ack()) {
    counters_.heartbeat_acks++;
    const auto& ack = msg.heartbeat_ack();
    if (ack.heartbeat_interval_ms() > 0) {
      heartbeat_interval_ = std::chrono::milliseconds(ack.heartbeat_interval_ms());
    }
    if (ack.fencing_lease_ms() > 0)
      fencing_lease_ = std::chrono::milliseconds(ack.fencing_lease_ms());
    while (!sent_heartbeats_.empty() && sent_heartbeats_.front().first < ack.sequence()) {
      sent_heartbeats_.pop_front();
    }
    if (!sent_heartbeats_.empty() && sent_heartbeats_.front().first == ack.sequence()) {
      renewed_at_ = sent_heartbeats_.front().second;
      session->renewed = true;
      if (!fenced_.empty()) fenced_.clear();  // told with this stream's Hello
    }
  } else if (msg.has_topology()) {
    OnTopology(session, msg.topology(), msg.ByteSizeLong());
  } else if (msg.has_action()) {
    OnDesired(session, msg.action());
  } else if (msg.has_refusal()) {
    counters_.refusals++;
    std::fprintf(stderr, "fleet: %s refused: %s\n", name_.c_str(), msg.refusal().reason().c_str());
  }
}

void SimHost::OnTopology(Session* session, const v1::TopologyRevision& t, size_t bytes) {
  counters_.topology_bytes += bytes;
  if (t.revision() <= revision_ && t.base_revision() != 0) return;
  v1::AgentMessage ack;
  if (t.base_revision() != 0 && t.base_revision() != revision_) {
    counters_.delta_mismatches++;
    ack.mutable_topology_applied()->set_revision(revision_);
    ack.mutable_topology_applied()->set_snapshot_needed(true);
    session->Send(std::move(ack));
    return;
  }
  revision_ = t.revision();  // a whole slice, or a delta on the revision it has
  ack.mutable_topology_applied()->set_revision(revision_);
  session->Send(std::move(ack));
  auto now = Clock::now();
  acks_.Record(now);
  counters_.last_ack_ns = now.time_since_epoch().count();
}

void SimHost::OnDesired(Session* session, const v1::Action& action) {
  if (action.has_desired()) {
    domains_.clear();
    specs_.clear();
    const auto now = Clock::now();
    for (const auto& spec : action.desired().instances()) {
      domains_[spec.name()] = spec.generation();
      specs_[spec.name()] = spec;
      acks_.OnDesired(spec.name(), spec.generation(), now);
    }
  } else if (action.has_create()) {
    domains_[action.create().spec().name()] = action.create().spec().generation();
    specs_[action.create().spec().name()] = action.create().spec();
  } else if (action.has_destroy()) {
    domains_.erase(action.destroy().name());
    specs_.erase(action.destroy().name());
  }
  v1::AgentMessage report = ReportMessage(action.operation_id());
  for (const auto& s : action.desired().stage()) *report.mutable_domains_report()->add_staged() = s;
  session->Send(std::move(report));
}

void SimHost::OnSessionDone(Session* session) {
  std::lock_guard lock(mu_);
  if (session_.get() != session) return;
  session_ = nullptr;
  reconnect_at_ = Clock::now() + Jitter(50, 100);
}

void SimHost::Kill() {
  std::shared_ptr<Session> s;
  {
    std::lock_guard lock(mu_);
    killed_ = true;
    s = session_;
  }
  if (s) s->Cancel();
}

bool SimHost::Crash(const std::string& instance) {
  std::shared_ptr<Session> s;
  {
    std::lock_guard lock(mu_);
    if (!CrashLocked(instance)) return false;
    s = session_;
  }
  s->Pump();
  return true;
}

bool SimHost::CrashLocked(const std::string& instance) {
  auto it = domains_.find(instance);
  if (it == domains_.end() || session_ == nullptr) return false;
  v1::AgentMessage m;
  auto* e = m.mutable_domain_event();
  e->set_host(name_);
  e->set_instance(instance);
  e->set_generation(it->second);
  e->set_state(v1::DOMAIN_STATE_CRASHED);
  e->set_reason("crashed");
  e->set_detected_by(v1::DETECTED_BY_EVENT);
  e->set_detected_unix_ms(UnixMs());
  domains_.erase(it);
  specs_.erase(instance);
  session_->Send(std::move(m));
  return true;
}

std::map<std::string, int64_t> SimHost::Domains() {
  std::lock_guard lock(mu_);
  return domains_;
}

bool SimHost::connected() {
  std::lock_guard lock(mu_);
  return session_ != nullptr;
}

bool SimHost::RenewedSince(Clock::time_point since) {
  std::lock_guard lock(mu_);
  return session_ != nullptr && session_->renewed && renewed_at_ >= since;
}

bool SimHost::dead() {
  std::lock_guard lock(mu_);
  return killed_;
}

void SimHost::Join() {
  std::unique_lock lock(mu_);
  done_cv_.wait(lock, [&] { return live_sessions_ == 0; });
}

Fleet::Fleet(FleetOptions options) : options_(std::move(options)) {}

Fleet::~Fleet() { Stop(); }

void Fleet::Start() {
  const int per = std::max(1, options_.hosts_per_connection);
  for (int c = 0; c < (options_.hosts + per - 1) / per; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("regen.fleet.connection", c);  // distinct arguments: a connection of its own
    args.SetMaxReceiveMessageSize(256 << 20);
    // As the agent dials (agent/controller_link.cc): keepalive every second, and a new connection
    // attempt every 80 ms while the controller is away.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 80);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 80);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
    channels_.push_back(
        grpc::CreateCustomChannel(options_.target, grpc::InsecureChannelCredentials(), args));
  }
  for (int i = 0; i < options_.hosts; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "host-%05d", i);
    std::string address = "10.200." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    hosts_.push_back(std::make_unique<SimHost>(
        name, address, options_, channels_[static_cast<size_t>(i / per)], counters_, acks_));
  }
  ticker_ = std::thread([this] { Ticker(); });
}

void Fleet::Ticker() {
  while (!stop_) {
    auto now = Clock::now();
    for (auto& h : hosts_) h->Tick(now);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Fleet::Stop() {
  stop_ = true;
  if (ticker_.joinable()) ticker_.join();
  for (auto& h : hosts_) h->Kill();
  for (auto& h : hosts_) h->Join();
}

int Fleet::RenewedSince(Clock::time_point since) {
  int n = 0;
  for (auto& h : hosts_) n += h->RenewedSince(since) ? 1 : 0;
  return n;
}

int Fleet::Connected() {
  int n = 0;
  for (auto& h : hosts_) n += h->connected() ? 1 : 0;
  return n;
}

}  // namespace regen::fleet
