// AdminClient: a typed client for the controller's AdminService, used by regenctl and by
// regen-agent's failover/drain subcommands. Thread-safe: one AdminClient may be shared by threads
// (the gRPC stub is); every call blocks its calling thread until the reply, the deadline or an
// error.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/grpc_tls.h"
#include "common/proto/regen.grpc.pb.h"
#include "common/status.h"

namespace regen {

struct AdminClientOptions {
  // The deadline of each unary call, and of a whole Events call that does not follow.
  std::chrono::milliseconds deadline{10000};
  // Put in parentheses after "cannot reach the controller at ADDRESS: ..." when the controller
  // cannot be reached (UNAVAILABLE or DEADLINE_EXCEEDED); a CLI names its own flags here.
  std::string unreachable_hint = "is regen-controller running?";
  // Channel credentials: mutual TLS with these PEM files, or plaintext when tls.ca is empty.
  TlsFiles tls;
  // Sent as "authorization: Bearer TOKEN" metadata on every call; "" sends none.
  std::string token;
};

class AdminClient {
 public:
  // `address` is "host:port"; credentials from options.tls. Connecting is lazy: an unreachable
  // controller shows up as the first call's error, and so does a PEM file that cannot be read
  // (INVALID_ARGUMENT naming it; nothing is sent).
  explicit AdminClient(std::string address, AdminClientOptions options = {});
  // Over an existing channel (tests, or other credentials).
  AdminClient(std::string address, std::shared_ptr<grpc::ChannelInterface> channel,
              AdminClientOptions options = {});

  const std::string& address() const { return address_; }

  // One method per RPC. Errors keep the controller's message and map the gRPC code
  // (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, UNAUTHENTICATED,
  // PERMISSION_DENIED; UNAVAILABLE and
  // DEADLINE_EXCEEDED read "cannot reach the controller at ADDRESS: ... (hint)"; others INTERNAL).
  // Requests that carry an operation id get a fresh one (NewOperationId) when it is empty; pass
  // the same id again to retry an operation safely.
  Result<v1::ApplyServiceResponse> ApplyService(v1::ApplyServiceRequest request);
  Result<v1::ListServicesResponse> ListServices(const v1::ListServicesRequest& request = {});
  Result<v1::GetServiceResponse> GetService(const v1::GetServiceRequest& request);
  Result<v1::ListInstancesResponse> ListInstances(const v1::ListInstancesRequest& request = {});
  Result<v1::ListHostsResponse> ListHosts(const v1::ListHostsRequest& request = {});
  Result<v1::FailoverResponse> Failover(v1::FailoverRequest request);
  Result<v1::DrainResponse> Drain(v1::DrainRequest request);
  Result<v1::UpgradeStatus> UpgradeStart(v1::UpgradeStartRequest request);
  Result<v1::UpgradeStatus> UpgradeStatusGet(v1::UpgradeServiceRequest request);
  Result<v1::UpgradeStatus> UpgradePause(v1::UpgradeServiceRequest request);
  Result<v1::UpgradeStatus> UpgradeResume(v1::UpgradeServiceRequest request);
  Result<v1::UpgradeStatus> UpgradeNextUd(v1::UpgradeServiceRequest request);
  Result<v1::UpgradeStatus> UpgradeRollback(v1::UpgradeServiceRequest request);
  Result<v1::MaintenanceStatus> MaintenanceStart(v1::MaintenanceStartRequest request);
  Result<v1::MaintenanceStatus> MaintenanceEnd(v1::MaintenanceEndRequest request);
  Result<v1::MaintenanceStatus> MaintenanceStatusGet(
      const v1::MaintenanceStatusRequest& request = {});

  // Streams the events with a sequence above `after_sequence` to `on_event`, in order. Without
  // `follow` the controller ends the stream after the stored events (and the deadline covers the
  // whole call); with it the call has no deadline and runs until the controller ends the stream or
  // `on_event` returns false. Both of those return OK; on_event runs on the calling thread.
  Status Events(int64_t after_sequence, bool follow,
                const std::function<bool(const v1::Event&)>& on_event);

 private:
  template <typename Response, typename Request, typename Call>
  Result<Response> Unary(const char* rpc, const Request& request, Call call);
  Status FromGrpc(const char* rpc, const grpc::Status& status) const;

  // Adds the token metadata, if any.
  void Authorize(grpc::ClientContext* context) const;

  std::string address_;
  AdminClientOptions options_;
  Status init_error_;  // credentials that could not be built: every call returns it
  std::unique_ptr<v1::AdminService::Stub> stub_;
};

// A fresh operation id: 128 random bits as 32 lower-case hex digits (from /dev/urandom, else
// std::random_device). Any thread.
std::string NewOperationId();

}  // namespace regen
