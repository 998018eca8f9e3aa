// The HA mode's standby (controller.yaml store: etcd): while this controller does not lead, it
// listens on listen_address. It answers the read-only AdminService calls (ListServices,
// GetService, ListInstances, ListHosts, UpgradeStatusGet, MaintenanceStatusGet) itself from the
// state stored in etcd (controller/standby_reads.h: the active controller's own answers for that
// state), with controller.yaml's auth rules; ListHosts says so in served_by. It refuses every other
// call (AgentService.Connect, the writes, Events), and the reads too until it has an etcd client,
// with UNAVAILABLE "standby controller; the active controller is at ADDRESS" so agents and regenctl
// move on to the active one; a read that cannot reach etcd gets the same message followed by
// " (cannot read the cluster state from etcd: ...)". Start/Shutdown/SetEtcdClient from one thread;
// the address callback runs on gRPC threads.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/grpc_tls.h"
#include "common/status.h"
#include "config/controller_config.h"
#include "etcd/etcd_client.h"

namespace grpc {
class Server;
class Service;
class CallbackGenericService;
}  // namespace grpc

namespace regen {

class Authorizer;
class StandbyReads;

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
  // ControllerServerCredentials). UNAVAILABLE when the address cannot be bound; the errors of
  // Authorizer::Create (controller/auth.h: a token file that cannot be read).
  static Result<std::unique_ptr<StandbyServer>> Start(const ControllerConfig& config,
                                                      ActiveAddress active);
  ~StandbyServer();
  StandbyServer(const StandbyServer&) = delete;
  StandbyServer& operator=(const StandbyServer&) = delete;

  // From now on reads are answered from etcd through `client` (null: refused again).
  void SetEtcdClient(std::shared_ptr<etcd::EtcdClient> client);
  // Stops listening (the port is free again when it returns); calls in flight are refused.
  // Idempotent.
  void Shutdown();
  int port() const { return port_; }

 private:
  StandbyServer() = default;

  std::unique_ptr<Authorizer> authorizer_;
  std::shared_ptr<TlsReloader> tls_reloader_;  // re-reads the tls files
  std::unique_ptr<StandbyReads> reads_;
  std::unique_ptr<grpc::Service> read_service_;
  std::unique_ptr<grpc::CallbackGenericService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace regen
