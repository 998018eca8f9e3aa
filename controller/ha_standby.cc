#include "controller/ha_standby.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include "common/log.h"
#include "common/proto/regen.grpc.pb.h"
#include "controller/auth.h"
#include "controller/server.h"
#include "controller/standby_reads.h"

namespace regen {
namespace {

using AS = v1::AdminService;
// The reads as callback methods; every other AdminService method is left to the generic service
// (RefusingService below), as are AgentService's.
using ReadsBase = AS::WithCallbackMethod_ListServices<AS::WithCallbackMethod_GetService<
    AS::WithCallbackMethod_ListInstances<AS::WithCallbackMethod_ListHosts<
        AS::WithCallbackMethod_UpgradeStatusGet<AS::WithCallbackMethod_MaintenanceStatusGet<
            AS::WithGenericMethod_ApplyService<AS::WithGenericMethod_Failover<
                AS::WithGenericMethod_Drain<AS::WithGenericMethod_Events<
                    AS::WithGenericMethod_UpgradeStart<AS::WithGenericMethod_UpgradePause<
                        AS::WithGenericMethod_UpgradeResume<AS::WithGenericMethod_UpgradeNextUd<
                            AS::WithGenericMethod_UpgradeRollback<
                                AS::WithGenericMethod_MaintenanceStart<
                                    AS::WithGenericMethod_MaintenanceEnd<
                                        AS::WithGenericMethod_DeleteService<
                                            AS::WithGenericMethod_UndrainHost<
                                                AS::WithGenericMethod_CordonHost<
                                                    AS::WithGenericMethod_UncordonHost<
                                                        AS::Service>>>>>>>>>>>>>>>>>>>>>;

// The read-only AdminService calls, answered from the state stored in etcd.
class ReadService final : public ReadsBase {
 public:
  ReadService(const ControllerConfig& config, const Authorizer& authorizer, StandbyReads& reads,
              StandbyServer::ActiveAddress active)
      : advertise_(config.advertise_address.empty() ? config.listen_address
                                                    : config.advertise_address),
        authorizer_(authorizer),
        reads_(reads),
        active_(std::move(active)) {}

  using Body = std::function<Status(const Controller&, int64_t revision)>;

  grpc::ServerUnaryReactor* ListServices(grpc::CallbackServerContext* ctx,
                                         const v1::ListServicesRequest*,
                                         v1::ListServicesResponse* resp) override {
    return Answer(ctx, "ListServices", [resp](const Controller& c, int64_t) {
      *resp = c.ListServices();
      return Status::Ok();
    });
  }
  grpc::ServerUnaryReactor* GetService(grpc::CallbackServerContext* ctx,
                                       const v1::GetServiceRequest* req,
                                       v1::GetServiceResponse* resp) override {
    return Answer(ctx, "GetService", [req, resp](const Controller& c, int64_t) {
      ASSIGN_OR_RETURN(*resp, c.GetService(req->name()));
      return Status::Ok();
    });
  }
  grpc::ServerUnaryReactor* ListInstances(grpc::CallbackServerContext* ctx,
                                          const v1::ListInstancesRequest* req,
                                          v1::ListInstancesResponse* resp) override {
    return Answer(ctx, "ListInstances", [req, resp](const Controller& c, int64_t) {
      ASSIGN_OR_RETURN(*resp, c.ListInstances(req->service()));
      return Status::Ok();
    });
  }
  grpc::ServerUnaryReactor* ListHosts(grpc::CallbackServerContext* ctx, const v1::ListHostsRequest*,
                                      v1::ListHostsResponse* resp) override {
    return Answer(ctx, "ListHosts", [this, resp](const Controller& c, int64_t revision) {
      *resp = c.ListHosts();
      resp->set_served_by("standby controller at " + advertise_ +
                          ": the state as stored in etcd at revision " + std::to_string(revision) +
                          " (host states and heartbeats as last stored, not judged live)");
      return Status::Ok();
    });
  }
  grpc::ServerUnaryReactor* UpgradeStatusGet(grpc::CallbackServerContext* ctx,
                                             const v1::UpgradeServiceRequest* req,
                                             v1::UpgradeStatus* resp) override {
    return Answer(ctx, "UpgradeStatusGet", [req, resp](const Controller& c, int64_t) {
      ASSIGN_OR_RETURN(*resp, c.UpgradeGet(req->service()));
      return Status::Ok();
    });
  }
  grpc::ServerUnaryReactor* MaintenanceStatusGet(grpc::CallbackServerContext* ctx,
                                                 const v1::MaintenanceStatusRequest*,
                                                 v1::MaintenanceStatus* resp) override {
    return Answer(ctx, "MaintenanceStatusGet", [resp](const Controller& c, int64_t) {
      *resp = c.MaintenanceStatusGet();
      return Status::Ok();
    });
  }

 private:
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const char* rpc,
                                   const Body& body) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(Serve(ctx, rpc, body));
    return reactor;
  }

  // As the active controller's AdminService (controller/server.cc): the same authorization, the
  // same answer built by the same code; refused with the redirect while there is no etcd client.
  grpc::Status Serve(grpc::CallbackServerContext* ctx, const char* rpc, const Body& body) {
    if (!reads_.connected()) return Redirect("");
    Caller caller = CallerOf(ctx);
    if (Status a = authorizer_.AuthorizeAdmin(caller, rpc, false); !a.ok()) {
      spdlog::warn("regenctl call from {} refused: {}", caller.peer, a.message());
      return ToGrpc(a);
    }
    Status answer;
    int64_t at = 0;
    Status read = reads_.Read([&](const Controller& c, int64_t revision) {
      at = revision;
      answer = body(c, revision);
    });
    if (read.code() == Code::kFailedPrecondition) return Redirect("");
    if (!read.ok()) {
      spdlog::warn("standby: {} from {} refused: {}", rpc, caller.peer, read.message());
      return Redirect(read.message());
    }
    spdlog::debug("standby: {} from {} answered from the state stored in etcd at revision {}", rpc,
                  caller.peer, at);
    return ToGrpc(answer);
  }

  // The standby's refusal; `why` (not empty) follows in parentheses.
  grpc::Status Redirect(const std::string& why) const {
    std::string message = StandbyMessage(active_());
    if (!why.empty()) message += " (" + why + ")";
    return {grpc::StatusCode::UNAVAILABLE, message};
  }

  const std::string advertise_;
  const Authorizer& authorizer_;
  StandbyReads& reads_;
  StandbyServer::ActiveAddress active_;
};

// Every method, known or not: UNAVAILABLE with the active controller's address, at once.
class RefusingService final : public grpc::CallbackGenericService {
 public:
  explicit RefusingService(StandbyServer::ActiveAddress active) : active_(std::move(active)) {}

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    class Reactor final : public grpc::ServerGenericBidiReactor {
     public:
      explicit Reactor(const std::string& message) {
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, message));
      }
      void OnDone() override { delete this; }
    };
    return new Reactor(StandbyMessage(active_()));
  }

 private:
  StandbyServer::ActiveAddress active_;
};

}  // namespace

std::string StandbyMessage(const std::string& active) {
  return std::string(kStandbyPrefix) + "; the active controller is at " +
         (active.empty() ? "unknown" : active);
}

Result<std::unique_ptr<StandbyServer>> StandbyServer::Start(const ControllerConfig& config,
                                                            ActiveAddress active) {
  ASSIGN_OR_RETURN(ServerTls tls, ControllerServerCredentials(config));
  std::shared_ptr<grpc::ServerCredentials> credentials = tls.credentials;
  ASSIGN_OR_RETURN(Authorizer authorizer, Authorizer::Create(config));
  std::unique_ptr<StandbyServer> s(new StandbyServer());
  s->authorizer_ = std::make_unique<Authorizer>(std::move(authorizer));
  s->tls_reloader_ = std::move(tls.reloader);
  s->reads_ = std::make_unique<StandbyReads>(config);
  s->read_service_ = std::make_unique<ReadService>(config, *s->authorizer_, *s->reads_, active);
  s->service_ = std::make_unique<RefusingService>(std::move(active));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen_address, credentials, &s->port_);
  builder.RegisterService(s->read_service_.get());
  builder.RegisterCallbackGenericService(s->service_.get());
  // As the active server: agents ping every second; let them, so they are not cut off for it.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    return Unavailable("standby: cannot listen on " + config.listen_address +
                       " (address in use, or not an address of this machine?); set "
                       "listen_address in controller.yaml");
  }
  spdlog::info(
      "standby controller listening on {} (port {}): answering reads from etcd, refusing the "
      "other calls until elected",
      config.listen_address, s->port_);
  return s;
}

StandbyServer::~StandbyServer() { Shutdown(); }

void StandbyServer::SetEtcdClient(std::shared_ptr<etcd::EtcdClient> client) {
  reads_->SetClient(std::move(client));
}

void StandbyServer::Shutdown() {
  if (!server_) return;
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

}  // namespace regen
