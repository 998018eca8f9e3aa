#include "controller/admin_service.h"

#include <grpcpp/grpcpp.h>

#include <optional>

#include "common/log.h"
#include "common/proto/regen.grpc.pb.h"
#include "controller/server.h"

namespace regen {

namespace {

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  explicit AdminServiceImpl(ControllerServer& server) : server_(server) {}

  // OK when the caller may use `rpc` (see Authorizer); the refusal is logged.
  grpc::Status Allowed(grpc::ServerContext* context, const char* rpc, bool needs_admin) {
    Caller caller = CallerOf(context);
    Status s = server_.authorizer().AuthorizeAdmin(caller, rpc, needs_admin);
    if (s.ok()) return grpc::Status::OK;
    spdlog::warn("regenctl call from {} refused: {}", caller.peer, s.message());
    return ToGrpc(s);
  }

  template <typename Resp>
  grpc::Status Reply(Result<Resp> r, Resp* out) {
    if (!r.ok()) return ToGrpc(r.status());
    *out = std::move(r).value();
    return grpc::Status::OK;
  }

  grpc::Status ApplyService(grpc::ServerContext* context, const v1::ApplyServiceRequest* req,
                            v1::ApplyServiceResponse* resp) override {
    if (grpc::Status a = Allowed(context, "ApplyService", true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::ApplyServiceResponse>>(
                     [&] { return server_.controller().ApplyService(*req); }),
                 resp);
  }
  grpc::Status ListServices(grpc::ServerContext* context, const v1::ListServicesRequest*,
                            v1::ListServicesResponse* resp) override {
    if (grpc::Status a = Allowed(context, "ListServices", false); !a.ok()) return a;
    *resp =
        server_.Call<v1::ListServicesResponse>([&] { return server_.controller().ListServices(); });
    return grpc::Status::OK;
  }
  grpc::Status GetService(grpc::ServerContext* context, const v1::GetServiceRequest* req,
                          v1::GetServiceResponse* resp) override {
    if (grpc::Status a = Allowed(context, "GetService", false); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::GetServiceResponse>>(
                     [&] { return server_.controller().GetService(req->name()); }),
                 resp);
  }
  grpc::Status ListInstances(grpc::ServerContext* context, const v1::ListInstancesRequest* req,
                             v1::ListInstancesResponse* resp) override {
    if (grpc::Status a = Allowed(context, "ListInstances", false); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::ListInstancesResponse>>(
                     [&] { return server_.controller().ListInstances(req->service()); }),
                 resp);
  }
  grpc::Status ListHosts(grpc::ServerContext* context, const v1::ListHostsRequest*,
                         v1::ListHostsResponse* resp) override {
    if (grpc::Status a = Allowed(context, "ListHosts", false); !a.ok()) return a;
    *resp = server_.Call<v1::ListHostsResponse>([&] { return server_.controller().ListHosts(); });
    return grpc::Status::OK;
  }
  grpc::Status Failover(grpc::ServerContext* context, const v1::FailoverRequest* req,
                        v1::FailoverResponse* resp) override {
    if (grpc::Status a = Allowed(context, "Failover", true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::FailoverResponse>>(
                     [&] { return server_.controller().Failover(*req); }),
                 resp);
  }
  grpc::Status Drain(grpc::ServerContext* context, const v1::DrainRequest* req,
                     v1::DrainResponse* resp) override {
    if (grpc::Status a = Allowed(context, "Drain", true); !a.ok()) return a;
    return Reply(
        server_.Call<Result<v1::DrainResponse>>([&] { return server_.controller().Drain(*req); }),
        resp);
  }
  grpc::Status Events(grpc::ServerContext* context, const v1::EventsRequest* req,
                      grpc::ServerWriter<v1::Event>* writer) override {
    if (grpc::Status a = Allowed(context, "Events", false); !a.ok()) return a;
    std::optional<SlotGuard> follower;
    if (req->follow()) {
      follower.emplace(server_.event_followers());
      if (!follower->held()) {
        return {grpc::StatusCode::RESOURCE_EXHAUSTED,
                "too many event streams follow already (" +
                    std::to_string(server_.event_followers().max()) + "); try again later"};
      }
    }
    int64_t after = req->after_sequence();
    while (!context->IsCancelled()) {
      auto batch = server_.Call<Result<std::vector<EventRecord>>>(
          [&] { return server_.controller().EventsAfter(after, 500); });
      if (!batch.ok()) return ToGrpc(batch.status());
      for (const auto& e : *batch) {
        v1::Event ev;
        ev.set_sequence(e.sequence);
        ev.set_unix_ms(e.unix_ms);
        ev.set_kind(EventKindName(e.kind));
        ev.set_service(e.service);
        ev.set_instance(e.instance);
        ev.set_host(e.host);
        ev.set_message(e.message);
        ev.set_json(e.json);
        if (!writer->Write(ev)) return grpc::Status::OK;
        after = e.sequence;
      }
      if (batch->size() == 500) continue;
      if (!req->follow()) return grpc::Status::OK;
      server_.WaitForEvent(after, std::chrono::milliseconds(500));
    }
    return grpc::Status::OK;
  }

  grpc::Status UpgradeStart(grpc::ServerContext* context, const v1::UpgradeStartRequest* req,
                            v1::UpgradeStatus* resp) override {
    if (grpc::Status a = Allowed(context, "UpgradeStart", true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::UpgradeStatus>>(
                     [&] { return server_.controller().UpgradeStart(*req); }),
                 resp);
  }
  grpc::Status UpgradeStatusGet(grpc::ServerContext* context, const v1::UpgradeServiceRequest* req,
                                v1::UpgradeStatus* resp) override {
    if (grpc::Status a = Allowed(context, "UpgradeStatusGet", false); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::UpgradeStatus>>(
                     [&] { return server_.controller().UpgradeGet(req->service()); }),
                 resp);
  }
  grpc::Status UpgradePause(grpc::ServerContext* context, const v1::UpgradeServiceRequest* req,
                            v1::UpgradeStatus* resp) override {
    if (grpc::Status a = Allowed(context, "UpgradePause", true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::UpgradeStatus>>(
                     [&] { return server_.controller().UpgradePause(*req); }),
                 resp);
  }
  grpc::Status UpgradeResume(grpc::ServerContext* context, const v1::UpgradeServiceRequest* req,
                             v1::UpgradeStatus* resp) override {
    if (grpc::Status a = Allowed(context, "UpgradeResume", true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::UpgradeStatus>>(
                     [&] { return server_.controller().UpgradeResume(*req); }),
                 resp);
  }
  grpc::Status UpgradeNextUd(grpc::ServerContext* context, const v1::UpgradeServiceRequest* req,
                             v1::UpgradeStatus* resp) override {
    if (grpc::Status a = Allowed(context, "UpgradeNextUd", true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::UpgradeStatus>>(
                     [&] { return server_.controller().UpgradeNextUd(*req); }),
                 resp);
  }
  grpc::Status UpgradeRollback(grpc::ServerContext* context, const v1::UpgradeServiceRequest* req,
                               v1::UpgradeStatus* resp) override {
    if (grpc::Status a = Allowed(context, "UpgradeRollback", true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::UpgradeStatus>>(
                     [&] { return server_.controller().UpgradeRollback(*req); }),
                 resp);
  }
  grpc::Status MaintenanceStart(grpc::ServerContext* context,
                                const v1::MaintenanceStartRequest* req,
                                v1::MaintenanceStatus* resp) override {
    if (grpc::Status a = Allowed(context, "MaintenanceStart", true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::MaintenanceStatus>>(
                     [&] { return server_.controller().MaintenanceStart(*req); }),
                 resp);
  }
  grpc::Status MaintenanceEnd(grpc::ServerContext* context, const v1::MaintenanceEndRequest* req,
                              v1::MaintenanceStatus* resp) override {
    if (grpc::Status a = Allowed(context, "MaintenanceEnd", true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::MaintenanceStatus>>(
                     [&] { return server_.controller().MaintenanceEnd(*req); }),
                 resp);
  }
  grpc::Status MaintenanceStatusGet(grpc::ServerContext* context,
                                    const v1::MaintenanceStatusRequest*,
                                    v1::MaintenanceStatus* resp) override {
    if (grpc::Status a = Allowed(context, "MaintenanceStatusGet", false); !a.ok()) return a;
    *resp = server_.Call<v1::MaintenanceStatus>(
        [&] { return server_.controller().MaintenanceStatusGet(); });
    return grpc::Status::OK;
  }

  // Issue 15, finding 12: service delete, host undrain/cordon/uncordon.
  grpc::Status DeleteService(grpc::ServerContext* context, const v1::DeleteServiceRequest* req,
                             v1::DeleteServiceResponse* resp) override {
    if (grpc::Status a = Allowed(context, "DeleteService", true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::DeleteServiceResponse>>(
                     [&] { return server_.controller().DeleteService(*req); }),
                 resp);
  }
  grpc::Status ChangeHost(grpc::ServerContext* context, const char* rpc, const v1::HostRequest* req,
                          HostVerb verb, v1::HostInfo* resp) {
    if (grpc::Status a = Allowed(context, rpc, true); !a.ok()) return a;
    return Reply(server_.Call<Result<v1::HostInfo>>(
                     [&] { return server_.controller().ChangeHost(*req, verb); }),
                 resp);
  }
  grpc::Status UndrainHost(grpc::ServerContext* context, const v1::HostRequest* req,
                           v1::HostInfo* resp) override {
    return ChangeHost(context, "UndrainHost", req, HostVerb::kUndrain, resp);
  }
  grpc::Status CordonHost(grpc::ServerContext* context, const v1::HostRequest* req,
                          v1::HostInfo* resp) override {
    return ChangeHost(context, "CordonHost", req, HostVerb::kCordon, resp);
  }
  grpc::Status UncordonHost(grpc::ServerContext* context, const v1::HostRequest* req,
                            v1::HostInfo* resp) override {
    return ChangeHost(context, "UncordonHost", req, HostVerb::kUncordon, resp);
  }

 private:
  ControllerServer& server_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeAdminService(ControllerServer& server) {
  return std::make_unique<AdminServiceImpl>(server);
}

}  // namespace regen
