// The HA mode's standby (controller.yaml store: etcd): while this controller does not lead, it
// listens on listen_address and refuses every call (AgentService.Connect, every AdminService RPC)
// with UNAVAILABLE "standby controller; the active controller is at ADDRESS" so agents and
// regenctl move on to the active one. Start/Shutdown from one thread; the address callback runs on
// gRPC threads.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "config/controller_config.h"

namespace grpc {
class Server;
class CallbackGenericService;
}  // namespace grpc

namespace regen {

// What a standby answers: "standby controller; the active controller is at ADDRESS" (ADDRESS
// "unknown" when `active` is empty). Clients match the prefix kStandbyPrefix.
inline constexpr char kStandbyPrefix[] = "standby controller";
std::string StandbyMessage(const std::string& active);

class StandbyServer {
 public:
  // `active`: the active controller's advertise_address as the election knows it, "" when none
  // (thread-safe, cheap: called for every refused call).
  using ActiveAddress = std::function<std::string()>;
  // Listens on config.listen_address with the controller's own credentials (controller/server.h
  // ControllerServerCredentials). UNAVAILABLE when the address cannot be bound.
  static Result<std::unique_ptr<StandbyServer>> Start(const ControllerConfig& config,
                                                      ActiveAddress active);
  ~StandbyServer();
  StandbyServer(const StandbyServer&) = delete;
  StandbyServer& operator=(const StandbyServer&) = delete;

  // Stops listening (the port is free again when it returns); calls in flight are refused.
  // Idempotent.
  void Shutdown();
  int port() const { return port_; }

 private:
  StandbyServer() = default;

  std::unique_ptr<grpc::CallbackGenericService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace regen
