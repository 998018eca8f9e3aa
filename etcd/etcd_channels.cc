#include "etcd/etcd_channels.h"

#include <algorithm>
#include <thread>

namespace regen::etcd {

Status FromGrpc(const grpc::Status& s, const std::string& what, const std::string& endpoint) {
  if (s.ok()) return Status::Ok();
  std::string message = "etcd " + what + " via " + endpoint + ": " + s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return InvalidArgument(message);
    case grpc::StatusCode::NOT_FOUND:
      return NotFound(message);
    case grpc::StatusCode::ALREADY_EXISTS:
      return AlreadyExists(message);
    case grpc::StatusCode::FAILED_PRECONDITION:
      return FailedPrecondition(message);
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Unavailable(message);
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return DeadlineExceeded(message);
    case grpc::StatusCode::UNAUTHENTICATED:
      return Unauthenticated(message);
    case grpc::StatusCode::PERMISSION_DENIED:
      return PermissionDenied(message);
    default:
      return Internal(message);
  }
}

bool IsFailoverError(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

bool EtcdChannels::IsTokenError(const grpc::Status& s) {
  // etcd: "etcdserver: invalid auth token" (the token expired or the member restarted), and
  // "etcdserver: revision of auth store is old" (INVALID_ARGUMENT): a user or role changed since
  // the token was issued (e.g. `regen-controller etcd add-host`; with etcd's default simple
  // tokens only when the change raced the request, with --auth-token=jwt after every change).
  // etcd's Go client authenticates again for both.
  return (s.error_code() == grpc::StatusCode::UNAUTHENTICATED &&
          s.error_message().find("invalid auth token") != std::string::npos) ||
         (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
          s.error_message().find("revision of auth store is old") != std::string::npos);
}

Result<std::shared_ptr<EtcdChannels>> EtcdChannels::Create(const EtcdOptions& options) {
  if (options.endpoints.empty()) {
    return InvalidArgument("etcd: no endpoint given (host:port of at least one member)");
  }
  std::shared_ptr<EtcdChannels> channels(new EtcdChannels(options));
  auto credentials = MakeChannelCredentials(options.tls);
  if (!credentials.ok()) return credentials.status().WithContext("etcd TLS");
  for (const std::string& endpoint : options.endpoints) {
    grpc::ChannelArguments args;
    ApplyServerName(options.tls, &args);
    // A member that comes back is used again within a second (gRPC's default backoff grows to
    // 2 minutes); a dead connection under a long-lived stream is noticed within ~10 s.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    // gRPC also takes GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as the connect timeout (20 s by
    // default): a connection etcd accepted while it was still starting stalls ~10 s before etcd
    // sends its SETTINGS frame; give up on it after 1 s and connect again.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    // Its own connections, never shared through gRPC's global subchannel pool with another
    // client in the process: a client made anew (agent/etcd_lease.cc) starts from scratch.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // etcd's requests may be up to 1.5 MiB, its responses (a prefix's range) larger.
    args.SetMaxReceiveMessageSize(64 << 20);
    auto stubs = std::make_unique<EtcdStubs>();
    stubs->endpoint = endpoint;
    stubs->channel = grpc::CreateCustomChannel(endpoint, *credentials, args);
    stubs->kv = etcdserverpb::KV::NewStub(stubs->channel);
    stubs->lease = etcdserverpb::Lease::NewStub(stubs->channel);
    stubs->watch = etcdserverpb::Watch::NewStub(stubs->channel);
    stubs->auth = etcdserverpb::Auth::NewStub(stubs->channel);
    stubs->election = v3electionpb::Election::NewStub(stubs->channel);
    channels->stubs_.push_back(std::move(stubs));
  }
  return channels;
}

size_t EtcdChannels::Current() const {
  MutexLock lock(mu_);
  return current_;
}

void EtcdChannels::Advance(size_t failed) {
  MutexLock lock(mu_);
  if (current_ == failed) current_ = (current_ + 1) % stubs_.size();
}

void EtcdChannels::Prepare(grpc::ClientContext* ctx, Clock::time_point deadline,
                           bool require_leader) const {
  // gRPC takes system_clock deadlines; max() = none (a stream that lives until cancelled).
  if (deadline != Clock::time_point::max()) {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
    ctx->set_deadline(std::chrono::system_clock::now() + left);
  }
  if (require_leader) ctx->AddMetadata("hasleader", "true");
  MutexLock lock(mu_);
  if (!token_.empty()) ctx->AddMetadata("token", token_);
}

Status EtcdChannels::Authenticate(Clock::time_point deadline) {
  if (options_.user.empty()) return Status::Ok();
  etcdserverpb::AuthenticateRequest request;
  request.set_name(options_.user);
  request.set_password(options_.password);
  grpc::Status last(grpc::StatusCode::UNAVAILABLE, "no attempt made");
  std::string endpoint;
  for (size_t attempt = 0; Clock::now() < deadline; ++attempt) {
    if (attempt > 0 && attempt % stubs_.size() == 0) PauseBeforeRound(attempt, deadline);
    size_t index = Current();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::min<Clock::duration>(deadline - Clock::now(), options_.attempt_timeout));
    etcdserverpb::AuthenticateResponse response;
    last = stubs_[index]->auth->Authenticate(&ctx, request, &response);
    endpoint = stubs_[index]->endpoint;
    if (last.ok()) {
      MutexLock lock(mu_);
      token_ = response.token();
      return Status::Ok();
    }
    if (!IsFailoverError(last)) break;
    Advance(index);
  }
  return FromGrpc(last, "authenticate as user \"" + options_.user + "\"", endpoint);
}

void EtcdChannels::PauseBeforeRound(size_t attempt, Clock::time_point deadline) const {
  // Every member failed in the last round: 50, 100, 200, 400, 500, 500 ... ms between rounds,
  // never past the deadline.
  size_t round = attempt / stubs_.size();
  auto pause =
      std::chrono::milliseconds(std::min<int64_t>(500, 25LL << std::min<size_t>(round, 5)));
  std::this_thread::sleep_until(std::min(deadline, Clock::now() + pause));
}

}  // namespace regen::etcd
