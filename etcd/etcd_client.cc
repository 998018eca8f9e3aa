#include "etcd/etcd_client.h"

#include "etcd/etcd_channels.h"

namespace regen::etcd {
namespace {

namespace pb = etcdserverpb;

KeyValue FromPb(const mvccpb::KeyValue& kv) {
  return {kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease()};
}

RangeResult FromPb(const pb::RangeResponse& response) {
  RangeResult out;
  out.revision = response.header().revision();
  out.more = response.more();
  out.kvs.reserve(static_cast<size_t>(response.kvs_size()));
  for (const auto& kv : response.kvs()) out.kvs.push_back(FromPb(kv));
  return out;
}

void ToPb(const Compare& c, pb::Compare* out) {
  out->set_key(c.key);
  switch (c.op) {
    case Compare::Op::kEqual:
      out->set_result(pb::Compare::EQUAL);
      break;
    case Compare::Op::kGreater:
      out->set_result(pb::Compare::GREATER);
      break;
    case Compare::Op::kLess:
      out->set_result(pb::Compare::LESS);
      break;
    case Compare::Op::kNotEqual:
      out->set_result(pb::Compare::NOT_EQUAL);
      break;
  }
  switch (c.target) {
    case Compare::Target::kVersion:
      out->set_target(pb::Compare::VERSION);
      out->set_version(c.number);
      break;
    case Compare::Target::kCreateRevision:
      out->set_target(pb::Compare::CREATE);
      out->set_create_revision(c.number);
      break;
    case Compare::Target::kModRevision:
      out->set_target(pb::Compare::MOD);
      out->set_mod_revision(c.number);
      break;
    case Compare::Target::kValue:
      out->set_target(pb::Compare::VALUE);
      out->set_value(c.value);
      break;
  }
}

void ToPb(const TxnOp& op, pb::RequestOp* out) {
  switch (op.kind) {
    case TxnOp::Kind::kPut: {
      auto* put = out->mutable_request_put();
      put->set_key(op.key);
      put->set_value(op.value);
      put->set_lease(op.lease);
      break;
    }
    case TxnOp::Kind::kDelete:
      out->mutable_request_delete_range()->set_key(op.key);
      break;
    case TxnOp::Kind::kDeletePrefix: {
      auto* del = out->mutable_request_delete_range();
      del->set_key(op.key);
      del->set_range_end(PrefixEnd(op.key));
      break;
    }
    case TxnOp::Kind::kGet:
      out->mutable_request_range()->set_key(op.key);
      break;
    case TxnOp::Kind::kGetPrefix: {
      auto* range = out->mutable_request_range();
      range->set_key(op.key);
      range->set_range_end(PrefixEnd(op.key));
      break;
    }
  }
}

}  // namespace

Compare Compare::CreateRevision(std::string key, Op op, int64_t revision) {
  return {std::move(key), Target::kCreateRevision, op, revision, ""};
}
Compare Compare::ModRevision(std::string key, Op op, int64_t revision) {
  return {std::move(key), Target::kModRevision, op, revision, ""};
}
Compare Compare::Version(std::string key, Op op, int64_t version) {
  return {std::move(key), Target::kVersion, op, version, ""};
}
Compare Compare::Value(std::string key, Op op, std::string value) {
  return {std::move(key), Target::kValue, op, 0, std::move(value)};
}

TxnOp TxnOp::Put(std::string key, std::string value, int64_t lease) {
  return {Kind::kPut, std::move(key), std::move(value), lease};
}
TxnOp TxnOp::Delete(std::string key) { return {Kind::kDelete, std::move(key), "", 0}; }
TxnOp TxnOp::DeletePrefix(std::string prefix) {
  return {Kind::kDeletePrefix, std::move(prefix), "", 0};
}
TxnOp TxnOp::Get(std::string key) { return {Kind::kGet, std::move(key), "", 0}; }
TxnOp TxnOp::GetPrefix(std::string prefix) { return {Kind::kGetPrefix, std::move(prefix), "", 0}; }

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

Result<std::shared_ptr<EtcdClient>> EtcdClient::Connect(const EtcdOptions& options) {
  ASSIGN_OR_RETURN(std::shared_ptr<EtcdChannels> channels, EtcdChannels::Create(options));
  RETURN_IF_ERROR(channels->Authenticate(EtcdChannels::Clock::now() + options.default_timeout));
  return std::shared_ptr<EtcdClient>(new EtcdClient(std::move(channels)));
}

const EtcdOptions& EtcdClient::options() const { return channels_->options(); }

std::chrono::milliseconds EtcdClient::Resolve(Timeout timeout) const {
  return timeout.value_or(channels_->options().default_timeout);
}

Result<RangeResult> EtcdClient::Get(const std::string& key, Timeout timeout) {
  return Range(key, "", 0, 0, timeout);
}

Result<RangeResult> EtcdClient::GetPrefix(const std::string& prefix, int64_t limit,
                                          int64_t revision, Timeout timeout) {
  return Range(prefix, PrefixEnd(prefix), limit, revision, timeout);
}

Result<RangeResult> EtcdClient::Range(const std::string& key, const std::string& range_end,
                                      int64_t limit, int64_t revision, Timeout timeout) {
  pb::RangeRequest request;
  request.set_key(key);
  request.set_range_end(range_end);
  request.set_limit(limit);
  request.set_revision(revision);
  pb::RangeResponse response;
  RETURN_IF_ERROR(channels_->Unary("range " + key, Resolve(timeout),
                                   [&](EtcdStubs& s, grpc::ClientContext* ctx) {
                                     return s.kv->Range(ctx, request, &response);
                                   }));
  return FromPb(response);
}

Result<int64_t> EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease,
                                Timeout timeout) {
  pb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  pb::PutResponse response;
  RETURN_IF_ERROR(channels_->Unary(
      "put " + key, Resolve(timeout),
      [&](EtcdStubs& s, grpc::ClientContext* ctx) { return s.kv->Put(ctx, request, &response); }));
  return response.header().revision();
}

Result<int64_t> EtcdClient::Delete(const std::string& key, Timeout timeout) {
  pb::DeleteRangeRequest request;
  request.set_key(key);
  pb::DeleteRangeResponse response;
  RETURN_IF_ERROR(channels_->Unary("delete " + key, Resolve(timeout),
                                   [&](EtcdStubs& s, grpc::ClientContext* ctx) {
                                     return s.kv->DeleteRange(ctx, request, &response);
                                   }));
  return response.deleted();
}

Result<int64_t> EtcdClient::DeletePrefix(const std::string& prefix, Timeout timeout) {
  pb::DeleteRangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixEnd(prefix));
  pb::DeleteRangeResponse response;
  RETURN_IF_ERROR(channels_->Unary("delete prefix " + prefix, Resolve(timeout),
                                   [&](EtcdStubs& s, grpc::ClientContext* ctx) {
                                     return s.kv->DeleteRange(ctx, request, &response);
                                   }));
  return response.deleted();
}

Result<TxnResult> EtcdClient::Txn(const TxnRequest& txn, Timeout timeout) {
  size_t ops = std::max(txn.success.size(), txn.failure.size());
  if (ops > kEtcdMaxTxnOps) {
    return InvalidArgument("etcd txn: " + std::to_string(ops) + " operations in one branch, " +
                           "etcd takes at most " + std::to_string(kEtcdMaxTxnOps) +
                           " (--max-txn-ops)");
  }
  pb::TxnRequest request;
  for (const Compare& c : txn.compares) ToPb(c, request.add_compare());
  for (const TxnOp& op : txn.success) ToPb(op, request.add_success());
  for (const TxnOp& op : txn.failure) ToPb(op, request.add_failure());
  size_t bytes = request.ByteSizeLong();
  if (bytes > kEtcdMaxRequestBytes) {
    return InvalidArgument("etcd txn: the request is " + std::to_string(bytes) +
                           " bytes, etcd takes at most " + std::to_string(kEtcdMaxRequestBytes) +
                           " (--max-request-bytes)");
  }
  pb::TxnResponse response;
  RETURN_IF_ERROR(channels_->Unary(
      "txn", Resolve(timeout),
      [&](EtcdStubs& s, grpc::ClientContext* ctx) { return s.kv->Txn(ctx, request, &response); }));
  TxnResult out;
  out.succeeded = response.succeeded();
  out.revision = response.header().revision();
  for (const auto& r : response.responses()) {
    if (r.has_response_range()) out.reads.push_back(FromPb(r.response_range()));
  }
  return out;
}

Result<LeaseGrant> EtcdClient::GrantLease(int64_t ttl_seconds, Timeout timeout) {
  pb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  pb::LeaseGrantResponse response;
  RETURN_IF_ERROR(channels_->Unary("lease grant", Resolve(timeout),
                                   [&](EtcdStubs& s, grpc::ClientContext* ctx) {
                                     return s.lease->LeaseGrant(ctx, request, &response);
                                   }));
  if (!response.error().empty()) return Unavailable("etcd lease grant: " + response.error());
  return LeaseGrant{response.id(), response.ttl()};
}

Status EtcdClient::RevokeLease(int64_t id, Timeout timeout) {
  pb::LeaseRevokeRequest request;
  request.set_id(id);
  pb::LeaseRevokeResponse response;
  return channels_->Unary("lease revoke " + std::to_string(id), Resolve(timeout),
                          [&](EtcdStubs& s, grpc::ClientContext* ctx) {
                            return s.lease->LeaseRevoke(ctx, request, &response);
                          });
}

Result<int64_t> EtcdClient::KeepAliveOnce(int64_t id, Timeout timeout) {
  pb::LeaseKeepAliveRequest request;
  request.set_id(id);
  pb::LeaseKeepAliveResponse response;
  RETURN_IF_ERROR(channels_->Unary("lease keep-alive " + std::to_string(id), Resolve(timeout),
                                   [&](EtcdStubs& s, grpc::ClientContext* ctx) {
                                     auto stream = s.lease->LeaseKeepAlive(ctx);
                                     if (!stream->Write(request) || !stream->Read(&response)) {
                                       stream->WritesDone();
                                       grpc::Status st = stream->Finish();
                                       return st.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                                     "keep-alive stream closed")
                                                      : st;
                                     }
                                     stream->WritesDone();
                                     ctx->TryCancel();  // one answer is all we wait for
                                     stream->Finish();
                                     return grpc::Status::OK;
                                   }));
  return response.ttl();
}

Result<int64_t> EtcdClient::LeaseTimeToLive(int64_t id, Timeout timeout) {
  pb::LeaseTimeToLiveRequest request;
  request.set_id(id);
  pb::LeaseTimeToLiveResponse response;
  RETURN_IF_ERROR(channels_->Unary("lease time-to-live " + std::to_string(id), Resolve(timeout),
                                   [&](EtcdStubs& s, grpc::ClientContext* ctx) {
                                     return s.lease->LeaseTimeToLive(ctx, request, &response);
                                   }));
  return response.ttl();
}

}  // namespace regen::etcd
