// AdminClient: a typed client for the controller's AdminService, used by regenctl and by
// regen-agent's failover/drain subcommands; with several controller addresses (HA) it follows the
// active one. Thread-safe: one AdminClient may be shared by threads; every call blocks its
// calling thread until the reply, the deadline or an error.
#pragma once

// Before grpcpp (see tests/unit/ctl/regenctl_test_fixture.h).
#include "common/thread_annotations.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/grpc_tls.h"
#include "common/proto/regen.grpc.pb.h"
#include "common/status.h"

namespace regen {

struct AdminClientOptions {
  // The deadline of each unary call, and of a whole Events call that does not follow.
  std::chrono::milliseconds deadline{10000};
  // How long one controller may take to accept the connection (TLS handshake included) before
  // the next address is tried (each call waits at most `deadline` for it).
  std::chrono::milliseconds connect_timeout{3000};
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
  // `address` is "host:port", or several separated by ',' (HA controllers, as
  // ParseControllerList of common/controller_list.h accepts them; the caller checks them first);
  // credentials from options.tls. Connecting is lazy: an unreachable controller shows up as the
  // first call's error, and so does a PEM file that cannot be read (INVALID_ARGUMENT naming it;
  // nothing is sent).
  explicit AdminClient(std::string address, AdminClientOptions options = {});
  explicit AdminClient(std::vector<std::string> addresses, AdminClientOptions options = {});
  // Over an existing channel (tests, or other credentials).
  AdminClient(std::string address, std::shared_ptr<grpc::ChannelInterface> channel,
              AdminClientOptions options = {});
  ~AdminClient();

  // The controller that answered last (before any answer: the first address).
  std::string address() const;

  // Every call goes to the controller that answered last, then to the others in their order. It
  // moves on only when nothing was sent: no connection within connect_timeout (refused, TLS
  // handshake failed, no answer), or a standby's UNAVAILABLE "standby controller; the active
  // controller is at X" (then straight to X when X is one of the addresses). Any other outcome
  // (a reply, an error, DEADLINE_EXCEEDED after sending) is final: a write is never sent twice.
  // When no controller answers: UNAVAILABLE "cannot reach the controller at A: ..." (one address)
  // or "cannot reach an active controller: A: ...; B: ..." naming each address and what it said.
  //
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
  Result<v1::DeleteServiceResponse> DeleteService(v1::DeleteServiceRequest request);
  Result<v1::HostInfo> UndrainHost(v1::HostRequest request);
  Result<v1::HostInfo> CordonHost(v1::HostRequest request);
  Result<v1::HostInfo> UncordonHost(v1::HostRequest request);

  // Streams the events with a sequence above `after_sequence` to `on_event`, in order. Without
  // `follow` the controller ends the stream after the stored events (and the deadline covers the
  // whole call); with it the call has no deadline and runs until the controller ends the stream or
  // `on_event` returns false. Both of those return OK; on_event runs on the calling thread.
  Status Events(int64_t after_sequence, bool follow,
                const std::function<bool(const v1::Event&)>& on_event);

 private:
  struct Target;
  class Attempts;
  template <typename Response, typename Request, typename Call>
  Result<Response> Unary(const char* rpc, const Request& request, Call call);
  Status FromGrpc(const char* rpc, const std::string& address, const grpc::Status& status) const;
  // Waits until `target` accepts a connection (false: refused, failed or too slow; *why says).
  bool Connect(Target& target, std::string* why) const;
  void Remember(size_t index);
  size_t Current() const;

  // Adds the token metadata, if any.
  void Authorize(grpc::ClientContext* context) const;

  AdminClientOptions options_;
  Status init_error_;  // credentials that could not be built: every call returns it
  std::vector<std::unique_ptr<Target>> targets_;
  mutable Mutex mu_;
  size_t current_ GUARDED_BY(mu_) = 0;  // the target that answered last
};

// A fresh operation id: 128 random bits as 32 lower-case hex digits (from /dev/urandom, else
// std::random_device). Any thread.
std::string NewOperationId();

}  // namespace regen
