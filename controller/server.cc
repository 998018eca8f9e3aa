#include "controller/server.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <optional>

#include "common/grpc_limits.h"
#include "common/grpc_tls.h"
#include "common/log.h"
#include "common/proto/regen.grpc.pb.h"
#include "controller/admin_service.h"
#include "controller/rpc_stats.h"
#include "controller/stream_guards.h"

namespace regen {

grpc::Status ToGrpc(const Status& s) {
  switch (s.code()) {
    case Code::kOk:
      return grpc::Status::OK;
    case Code::kInvalidArgument:
      return {grpc::StatusCode::INVALID_ARGUMENT, s.message()};
    case Code::kNotFound:
      return {grpc::StatusCode::NOT_FOUND, s.message()};
    case Code::kAlreadyExists:
      return {grpc::StatusCode::ALREADY_EXISTS, s.message()};
    case Code::kFailedPrecondition:
      return {grpc::StatusCode::FAILED_PRECONDITION, s.message()};
    case Code::kUnavailable:
      return {grpc::StatusCode::UNAVAILABLE, s.message()};
    case Code::kDeadlineExceeded:
      return {grpc::StatusCode::DEADLINE_EXCEEDED, s.message()};
    case Code::kInternal:
      return {grpc::StatusCode::INTERNAL, s.message()};
    case Code::kUnauthenticated:
      return {grpc::StatusCode::UNAUTHENTICATED, s.message()};
    case Code::kPermissionDenied:
      return {grpc::StatusCode::PERMISSION_DENIED, s.message()};
  }
  return {grpc::StatusCode::UNKNOWN, s.message()};
}

Caller CallerOf(const grpc::ServerContextBase* context) {
  Caller caller;
  caller.peer = context->peer();
  if (std::shared_ptr<const grpc::AuthContext> auth = context->auth_context()) {
    for (const char* property : {GRPC_X509_CN_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME}) {
      for (const grpc::string_ref& value : auth->FindPropertyValues(property)) {
        std::string name(value.data(), value.size());
        if (std::find(caller.cert_names.begin(), caller.cert_names.end(), name) ==
            caller.cert_names.end()) {
          caller.cert_names.push_back(std::move(name));
        }
      }
    }
  }
  const auto& metadata = context->client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    caller.authorization = std::string(it->second.data(), it->second.size());
  }
  return caller;
}

namespace {

using AgentStream = grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>;

// One agent's stream: the main loop Sends (never blocks), a writer thread writes in order.
class AgentSession : public AgentSink {
 public:
  AgentSession(grpc::ServerContext* context, AgentStream* stream, std::string peer,
               size_t max_queue_bytes)
      : context_(context),
        stream_(stream),
        peer_(std::move(peer)),
        max_queue_bytes_(max_queue_bytes),
        writer_([this] { WriteLoop(); }) {}
  ~AgentSession() override { Finish(); }

  void Send(const v1::ControllerMessage& message) override {
    std::lock_guard lock(mu_);
    if (closed_) return;
    queued_bytes_ += message.ByteSizeLong();
    if (queued_bytes_ > max_queue_bytes_) {
      // An agent that does not read: drop the stream rather than the controller's memory. It
      // reconnects and gets the whole state again with its Hello.
      spdlog::warn("agent at {} reads too slowly ({} bytes queued, limit {}): stream closed", peer_,
                   queued_bytes_, max_queue_bytes_);
      closed_ = true;
      queue_.clear();
      cv_.notify_one();
      context_->TryCancel();
      return;
    }
    queue_.push_back(message);
    cv_.notify_one();
  }
  // Writes what is queued, then stops the writer.
  void Finish() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      cv_.notify_one();
    }
    if (writer_.joinable()) writer_.join();
  }
  const std::string& peer() const { return peer_; }
  // Cancels the stream: the handler's Read fails and the session ends.
  void Close() override { context_->TryCancel(); }

 private:
  void WriteLoop() {
    while (true) {
      v1::ControllerMessage msg;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
        if (queue_.empty()) return;
        msg = std::move(queue_.front());
        queue_.pop_front();
        queued_bytes_ -= std::min(queued_bytes_, msg.ByteSizeLong());
      }
      if (!stream_->Write(msg)) {
        std::lock_guard lock(mu_);
        closed_ = true;
        queue_.clear();
        return;
      }
    }
  }

  grpc::ServerContext* context_;
  AgentStream* stream_;
  std::string peer_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::ControllerMessage> queue_;
  const size_t max_queue_bytes_;
  size_t queued_bytes_ = 0;
  bool closed_ = false;
  std::thread writer_;
};

class AgentServiceImpl final : public v1::AgentService::Service {
 public:
  explicit AgentServiceImpl(ControllerServer& server) : server_(server) {}

  grpc::Status Connect(grpc::ServerContext* context, AgentStream* stream) override {
    v1::AgentMessage first;
    if (std::optional<grpc::Status> ended = AwaitHello(context, stream, &first)) return *ended;
    if (!first.has_hello()) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "the first message on AgentService.Connect must be hello"};
    }
    const std::string host = first.hello().host();
    Caller caller = CallerOf(context);
    if (Status identity =
            CheckAgentIdentity(server_.tls(), server_.config().auth, caller.cert_names, host);
        !identity.ok()) {
      spdlog::warn("agent at {} refused: {}", context->peer(), identity.message());
      v1::ControllerMessage refusal;
      refusal.mutable_refusal()->set_reason(identity.message());
      stream->Write(refusal);
      return ToGrpc(identity);
    }
    auto session = std::make_unique<AgentSession>(context, stream, context->peer(),
                                                  server_.limits().max_agent_queue_bytes);
    AgentSink* sink = session.get();
    Status hello =
        server_.Call<Status>([&] { return server_.controller().OnHello(first.hello(), sink); });
    if (!hello.ok()) {
      spdlog::warn("agent at {} refused: {}", context->peer(), hello.message());
      v1::ControllerMessage refusal;
      refusal.mutable_refusal()->set_reason(hello.message());
      session->Send(refusal);
      session->Finish();
      return ToGrpc(hello);
    }
    spdlog::info("agent session for host {} from {}", host, context->peer());
    LeaseKeeper& leases = server_.leases();
    v1::AgentMessage msg;
    while (stream->Read(&msg)) {
      if (msg.has_heartbeat()) {
        // Acknowledged here, from memory: never behind the main loop (a store write, an fsync,
        // an admin call). The main loop's Tick sees the time and judges the host. Never by a
        // controller whose leadership may be gone (HA: its fuse ends the process).
        if (!server_.Leading()) continue;
        leases.OnHeartbeat(host, sink, msg.heartbeat());
      } else if (msg.has_domains_report()) {
        server_.Post([this, host, r = msg.domains_report()] {
          server_.controller().OnDomainsReport(host, r);
        });
      } else if (msg.has_domain_event()) {
        server_.Post(
            [this, host, e = msg.domain_event()] { server_.controller().OnDomainEvent(host, e); });
      } else if (msg.has_topology_applied()) {
        server_.Post([this, host, sink, a = msg.topology_applied()] {
          server_.controller().OnTopologyApplied(host, a, sink);
        });
      } else if (msg.has_action_result()) {
        if (!msg.action_result().ok()) {
          spdlog::warn("host {}: action {} failed: {}", host, msg.action_result().operation_id(),
                       msg.action_result().error());
        }
      } else if (msg.has_hello()) {
        spdlog::warn("host {}: a second hello on one session ignored", host);
      }
    }
    // The loop must stop using the sink before the session goes away.
    leases.Close(host, sink);  // no ack on a session that goes away, even if the loop is busy
    server_.Call<bool>([&] {
      server_.controller().OnDisconnect(host, sink);
      return true;
    });
    session->Finish();
    spdlog::info("agent session for host {} from {} ended", host, context->peer());
    return grpc::Status::OK;
  }

 private:
  // Reads the stream's first message. Before it says who it is, a connection holds a slot and
  // has hello_timeout to speak: the status to end the call with when it did not (or left).
  std::optional<grpc::Status> AwaitHello(grpc::ServerContext* context, AgentStream* stream,
                                         v1::AgentMessage* first) {
    const std::string peer = context->peer();  // "unknown" once cancelled
    SlotGuard pending(server_.pending_hellos());
    if (!pending.held()) {
      spdlog::warn("agent stream from {} refused: {} streams are waiting for their hello", peer,
                   server_.pending_hellos().max());
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "too many agent streams without a hello yet; try again");
    }
    server_.hello_timer().Arm(context);
    bool read = stream->Read(first);
    if (!server_.hello_timer().Disarm(context)) {
      spdlog::warn("agent stream from {} sent no hello within {} ms: closed", peer,
                   server_.limits().hello_timeout.count());
      return grpc::Status(
          grpc::StatusCode::DEADLINE_EXCEEDED,
          "no hello within " + std::to_string(server_.limits().hello_timeout.count()) + " ms");
    }
    if (!read) return grpc::Status::OK;
    return std::nullopt;
  }

  ControllerServer& server_;
};

}  // namespace

Result<ServerTls> ControllerServerCredentials(const ControllerConfig& config) {
  if (!config.tls.enabled()) return ServerTls{grpc::InsecureServerCredentials(), nullptr};
  // Without tokens every caller must present a certificate at the handshake; with tokens a
  // token-only regenctl may connect without one (a certificate, when presented, is still
  // verified), and the RPCs themselves refuse callers with neither.
  bool require_client_cert = config.auth.tokens.empty();
  return MakeServerCredentials({config.tls.ca, config.tls.cert, config.tls.key, "", config.tls.crl},
                               require_client_cert, config.tls.reload_interval);
}

ControllerServer::ControllerServer(const ControllerConfig& config, Store& store, Clock& clock)
    : config_(config), clock_(clock), store_(store), controller_(config, store, clock) {
  controller_.SetEventListener([this](const EventRecord& e) {
    std::lock_guard lock(events_mu_);
    last_event_ = std::max(last_event_, e.sequence);
    events_cv_.notify_all();
  });
  // Failures, reallocations and topology changes reach every instance of the service at once.
  controller_.AddChangeListener(
      [this](const Controller& c, const ControllerChanges& ch) { notifier_.OnChanges(c, ch); });
}

ControllerServer::~ControllerServer() { Shutdown(); }

Status ControllerServer::Start() {
  ASSIGN_OR_RETURN(Authorizer authorizer, Authorizer::Create(config_));
  authorizer_ = std::make_unique<Authorizer>(std::move(authorizer));
  ASSIGN_OR_RETURN(ServerTls tls, ControllerServerCredentials(config_));
  std::shared_ptr<grpc::ServerCredentials> credentials = tls.credentials;
  tls_reloader_ = std::move(tls.reloader);
  for (const std::string& warning : authorizer_->StartupWarnings()) spdlog::warn("{}", warning);
  RETURN_IF_ERROR(controller_.Load());
  if (!dns_.wiring) {
    // DNS failures and recoveries become the controller's events (on the main loop).
    auto dns = NewDnsWiring(config_.dns, clock_, [this](EventRecord e) {
      Post([this, e = std::move(e)] {
        if (Status s = controller_.RecordEvent(e); !s.ok()) {
          spdlog::error("recording {}: {}", EventKindName(e.kind), s.message());
        }
      });
    });
    if (!dns.ok()) return dns.status();
    if (*dns) {
      dns_ = std::move(**dns);
      DnsWiring* wiring = dns_.wiring.get();
      // The names published before a restart: those no longer wanted are deleted (in the
      // background, with the same retries as any update).
      if (Status s = wiring->TrackPublished(
              store_, [this](std::function<void()> task) { Post(std::move(task)); });
          !s.ok()) {
        spdlog::error("DNS: {}", s.message());
      }
      controller_.AddChangeListener(
          [wiring](const Controller& c, const ControllerChanges& ch) { wiring->OnChanges(c, ch); });
      wiring->Resync(controller_);
      wiring->Start();
      spdlog::info("DNS: zone {} at {} kept up to date", wiring->zone(), config_.dns.server);
    }
  }
  StartLoop();
  hello_timer_ = std::make_unique<HelloTimer>(limits_.hello_timeout);
  pending_hellos_ = std::make_unique<StreamSlots>(limits_.max_pending_hellos);
  event_followers_ = std::make_unique<StreamSlots>(limits_.max_event_followers);
  agent_service_ = std::make_unique<AgentServiceImpl>(*this);
  admin_service_ = MakeAdminService(*this);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config_.listen_address, credentials, &port_);
  builder.RegisterService(agent_service_.get());
  builder.RegisterService(admin_service_.get());
  builder.experimental().SetInterceptorCreators(RpcErrorInterceptors());  // regen_rpc_errors_total
  // Agents hold a stream each; do not let gRPC's default thread cap starve admin calls.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 4);
  // Explicit message limits (common/grpc_limits.h): topologies out, reports and requests in.
  builder.SetMaxSendMessageSize(kMaxTopologyMessageBytes);
  builder.SetMaxReceiveMessageSize(kMaxRequestMessageBytes);
  // Agents ping every second (keepalive); accept that, and ping them to find dead connections.
  // A client pinging more often than every 500 ms is sent away after 3 such pings.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 3);
  // A connection that does not finish its (TLS) handshake in 10 s is closed; no one connection
  // opens more than 100 streams at once.
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 100);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) {
    server_.reset();
    Shutdown();
    return Unavailable("cannot listen on " + config_.listen_address +
                       " (address in use, or not an address of this machine?); set "
                       "listen_address in controller.yaml");
  }
  spdlog::info("controller listening on {} (port {}, {})", config_.listen_address, port_,
               config_.tls.enabled() ? "mutual TLS" : "INSECURE plaintext");
  return Status::Ok();
}

void ControllerServer::Shutdown() {
  if (dns_.wiring) dns_.wiring->Stop();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_.reset();
  }
  loop_.Stop();
}

bool ControllerServer::WaitForEvent(int64_t after, std::chrono::milliseconds timeout) {
  std::unique_lock lock(events_mu_);
  return events_cv_.wait_for(lock, timeout, [&] { return last_event_ > after; });
}

Status ControllerServer::OnStepException(std::exception_ptr error) {
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  spdlog::error(
      "controller step failed with an exception (a bug; please report it): {}; the "
      "controller re-reads its state store before writing again and carries on",
      what);
  controller_.OnStepException();
  return Internal("the controller failed on this request (" + what +
                  "); nothing of it is kept beyond what was stored");
}

void ControllerServer::StartLoop() {
  // Timers run at a fifth of the heartbeat interval: a host is noticed down within that much of
  // host_down_after.
  auto tick = std::max<std::chrono::milliseconds>(config_.heartbeat_interval / 5,
                                                  std::chrono::milliseconds(10));
  auto next_tick = std::make_shared<EventLoop::TimePoint>(std::chrono::steady_clock::now() + tick);
  EventLoop::Hooks hooks;
  hooks.next_wake = [next_tick] { return *next_tick; };
  hooks.after_tasks = [this, tick, next_tick] {
    if (std::chrono::steady_clock::now() >= *next_tick) {
      *next_tick = std::chrono::steady_clock::now() + tick;
      try {
        controller_.Tick();
      } catch (...) {
        (void)OnStepException(std::current_exception());
      }
    }
  };
  hooks.drain_on_stop = true;  // a Call() in flight gets its answer
  loop_.Start(std::move(hooks));
}

}  // namespace regen
