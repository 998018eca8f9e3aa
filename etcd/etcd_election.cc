#include "etcd/etcd_election.h"

#include <algorithm>

#include "etcd/etcd_channels.h"

namespace regen::etcd {
namespace {

namespace pb = v3electionpb;
using Clock = EtcdChannels::Clock;

void ToPb(const LeaderKey& leader, pb::LeaderKey* out) {
  out->set_name(leader.name);
  out->set_key(leader.key);
  out->set_rev(leader.revision);
  out->set_lease(leader.lease);
}

}  // namespace

Result<LeaderKey> EtcdElection::Campaign(const std::string& value, int64_t lease,
                                         std::chrono::milliseconds timeout) {
  EtcdChannels& channels = client_->channels();
  Clock::time_point deadline = Clock::now() + timeout;
  pb::CampaignRequest request;
  request.set_name(name_);
  request.set_lease(lease);
  request.set_value(value);
  {
    MutexLock lock(mu_);
    cancelled_ = false;
  }
  grpc::Status last(grpc::StatusCode::DEADLINE_EXCEEDED, "no attempt made");
  std::string endpoint;
  for (int attempt = 0; Clock::now() < deadline; ++attempt) {
    size_t index = channels.Current();
    grpc::ClientContext ctx;
    channels.Prepare(&ctx, deadline, /*require_leader=*/true);
    {
      MutexLock lock(mu_);
      if (cancelled_) break;
      campaign_ctx_ = &ctx;
    }
    pb::CampaignResponse response;
    last = channels.Stubs(index).election->Campaign(&ctx, request, &response);
    endpoint = channels.Stubs(index).endpoint;
    {
      MutexLock lock(mu_);
      campaign_ctx_ = nullptr;
      if (cancelled_) {
        return Unavailable("etcd campaign for " + name_ + ": cancelled");
      }
    }
    if (last.ok()) {
      const auto& l = response.leader();
      return LeaderKey{l.name(), l.key(), l.rev(), l.lease()};
    }
    if (last.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    channels.Advance(index);
    auto pause = std::chrono::milliseconds(std::min(500, 50 << std::min(attempt, 4)));
    std::this_thread::sleep_until(std::min(deadline, Clock::now() + pause));
  }
  {
    MutexLock lock(mu_);
    if (cancelled_) return Unavailable("etcd campaign for " + name_ + ": cancelled");
  }
  return FromGrpc(last, "campaign for " + name_, endpoint);
}

void EtcdElection::CancelCampaign() {
  MutexLock lock(mu_);
  cancelled_ = true;
  if (campaign_ctx_ != nullptr) campaign_ctx_->TryCancel();
}

Result<std::optional<KeyValue>> EtcdElection::Leader(EtcdClient::Timeout timeout) {
  pb::LeaderRequest request;
  request.set_name(name_);
  pb::LeaderResponse response;
  Status s = client_->channels().Unary("leader of " + name_,
                                       timeout.value_or(client_->options().default_timeout),
                                       [&](EtcdStubs& stubs, grpc::ClientContext* ctx) {
                                         return stubs.election->Leader(ctx, request, &response);
                                       });
  // etcd answers "election: no leader" when nobody leads (not "etcdserver: no leader", an
  // UNAVAILABLE member without a raft leader).
  if (!s.ok() && s.code() != Code::kUnavailable &&
      s.message().find("election: no leader") != std::string::npos) {
    return std::optional<KeyValue>();
  }
  RETURN_IF_ERROR(s);
  if (!response.has_kv()) return std::optional<KeyValue>();
  const auto& kv = response.kv();
  return std::optional<KeyValue>(KeyValue{kv.key(), kv.value(), kv.create_revision(),
                                          kv.mod_revision(), kv.version(), kv.lease()});
}

Status EtcdElection::Proclaim(const LeaderKey& leader, const std::string& value,
                              EtcdClient::Timeout timeout) {
  pb::ProclaimRequest request;
  ToPb(leader, request.mutable_leader());
  request.set_value(value);
  pb::ProclaimResponse response;
  return client_->channels().Unary("proclaim in " + name_,
                                   timeout.value_or(client_->options().default_timeout),
                                   [&](EtcdStubs& stubs, grpc::ClientContext* ctx) {
                                     return stubs.election->Proclaim(ctx, request, &response);
                                   });
}

Status EtcdElection::Resign(const LeaderKey& leader, EtcdClient::Timeout timeout) {
  pb::ResignRequest request;
  ToPb(leader, request.mutable_leader());
  pb::ResignResponse response;
  return client_->channels().Unary("resign from " + name_,
                                   timeout.value_or(client_->options().default_timeout),
                                   [&](EtcdStubs& stubs, grpc::ClientContext* ctx) {
                                     return stubs.election->Resign(ctx, request, &response);
                                   });
}

EtcdLeaderObserver::EtcdLeaderObserver(std::shared_ptr<EtcdClient> client, std::string name,
                                       Callback on_leader)
    : client_(std::move(client)), name_(std::move(name)), on_leader_(std::move(on_leader)) {
  thread_ = std::thread([this] { Run(); });
}

EtcdLeaderObserver::~EtcdLeaderObserver() { Stop(); }

void EtcdLeaderObserver::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
    if (stream_ctx_ != nullptr) stream_ctx_->TryCancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EtcdLeaderObserver::Run() {
  while (true) {
    RunStream();
    MutexLock lock(mu_);
    auto until = Clock::now() + std::chrono::milliseconds(200);
    while (!stop_ && Clock::now() < until) cv_.wait_until(lock.native(), until);
    if (stop_) return;
  }
}

void EtcdLeaderObserver::RunStream() {
  EtcdChannels& channels = client_->channels();
  size_t index = channels.Current();
  grpc::ClientContext ctx;
  channels.Prepare(&ctx, Clock::time_point::max(), /*require_leader=*/true);
  {
    MutexLock lock(mu_);
    if (stop_) return;
    stream_ctx_ = &ctx;
  }
  pb::LeaderRequest request;
  request.set_name(name_);
  auto stream = channels.Stubs(index).election->Observe(&ctx, request);
  pb::LeaderResponse response;
  while (stream->Read(&response)) {
    const auto& kv = response.kv();
    on_leader_(KeyValue{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.version(),
                        kv.lease()});
  }
  ctx.TryCancel();
  stream->Finish();
  MutexLock lock(mu_);
  stream_ctx_ = nullptr;
  if (!stop_) channels.Advance(index);
}

}  // namespace regen::etcd
