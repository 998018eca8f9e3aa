#include "controller/ha_standby.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include "common/log.h"
#include "controller/server.h"

namespace regen {
namespace {

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
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                   ControllerServerCredentials(config));
  std::unique_ptr<StandbyServer> s(new StandbyServer());
  s->service_ = std::make_unique<RefusingService>(std::move(active));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen_address, credentials, &s->port_);
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
  spdlog::info("standby controller listening on {} (port {}): refusing every call until elected",
               config.listen_address, s->port_);
  return s;
}

StandbyServer::~StandbyServer() { Shutdown(); }

void StandbyServer::Shutdown() {
  if (!server_) return;
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

}  // namespace regen
