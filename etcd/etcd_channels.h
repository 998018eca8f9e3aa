// The etcd client's connections (internal to etcd/): one gRPC channel and stub set per endpoint,
// the endpoint in use, the auth token, and unary calls with failover across endpoints. Every
// method may be called from any thread (the endpoint index and the token are under a mutex; gRPC
// stubs are thread-safe).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "etcd/etcd_options.h"
#include "etcd/etcdserver/api/v3election/v3electionpb/v3election.grpc.pb.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

namespace regen::etcd {

struct EtcdStubs {
  std::string endpoint;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth;
  std::unique_ptr<v3electionpb::Election::Stub> election;
};

// "etcd <what> via <endpoint>: <gRPC message>" with gRPC's code mapped to ours.
Status FromGrpc(const grpc::Status& s, const std::string& what, const std::string& endpoint);
// Errors after which another endpoint may answer: UNAVAILABLE (member down, no leader, request
// timed out inside etcd) and DEADLINE_EXCEEDED of one attempt.
bool IsFailoverError(const grpc::Status& s);

class EtcdChannels {
 public:
  using Clock = std::chrono::steady_clock;
  // Builds the channels (no connection yet). Errors: no endpoint, unreadable TLS files.
  static Result<std::shared_ptr<EtcdChannels>> Create(const EtcdOptions& options);

  const EtcdOptions& options() const { return options_; }
  size_t size() const { return stubs_.size(); }
  // The endpoint calls go to first: the last one that answered.
  size_t Current() const EXCLUDES(mu_);
  // Moves on from `failed` (a no-op when another thread already moved on).
  void Advance(size_t failed) EXCLUDES(mu_);
  EtcdStubs& Stubs(size_t index) { return *stubs_[index]; }

  // Sets the deadline (Clock::time_point::max(): none), the auth token and, for `require_leader`,
  // etcd's "hasleader" metadata (a member cut off from its cluster's leader then fails the call
  // instead of serving stale data).
  void Prepare(grpc::ClientContext* ctx, Clock::time_point deadline, bool require_leader) const
      EXCLUDES(mu_);
  // Gets a new token (user/password auth); OK at once without auth. Any endpoint that answers.
  Status Authenticate(Clock::time_point deadline) EXCLUDES(mu_);

  // One unary call with failover: tries the endpoints in turn from Current() until one answers or
  // `timeout` passes (each attempt gets at most options().attempt_timeout; a short pause after a
  // round where all failed). An expired auth token is renewed once. `call(stubs, ctx)` runs one
  // attempt.
  template <typename Call>
  Status Unary(const std::string& what, std::chrono::milliseconds timeout, Call&& call) {
    Clock::time_point deadline = Clock::now() + timeout;
    grpc::Status last(grpc::StatusCode::UNAVAILABLE, "no attempt made");
    std::string last_endpoint;
    bool reauthenticated = false;
    for (size_t attempt = 0; Clock::now() < deadline; ++attempt) {
      if (attempt > 0 && attempt % stubs_.size() == 0) PauseBeforeRound(attempt, deadline);
      size_t index = Current();
      EtcdStubs& stubs = *stubs_[index];
      grpc::ClientContext ctx;
      Prepare(&ctx, std::min(deadline, Clock::now() + options_.attempt_timeout), false);
      last = call(stubs, &ctx);
      last_endpoint = stubs.endpoint;
      if (last.ok()) return Status::Ok();
      if (IsTokenError(last) && !reauthenticated) {
        reauthenticated = true;
        RETURN_IF_ERROR(Authenticate(deadline));
        continue;
      }
      if (!IsFailoverError(last)) break;
      Advance(index);
    }
    return FromGrpc(last, what, last_endpoint);
  }

 private:
  explicit EtcdChannels(EtcdOptions options) : options_(std::move(options)) {}
  static bool IsTokenError(const grpc::Status& s);
  void PauseBeforeRound(size_t attempt, Clock::time_point deadline) const;

  EtcdOptions options_;
  std::vector<std::unique_ptr<EtcdStubs>> stubs_;
  mutable Mutex mu_;
  size_t current_ GUARDED_BY(mu_) = 0;
  std::string token_ GUARDED_BY(mu_);
};

}  // namespace regen::etcd
