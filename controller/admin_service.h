// regenctl's AdminService on the controller (controller/server.h serves it): each RPC checks the
// caller's role (controller/auth.h), then runs on the controller's main loop through
// ControllerServer::Call. Its methods run on gRPC threads.
#pragma once

#include <memory>

namespace grpc {
class Service;
}  // namespace grpc

namespace regen {

class ControllerServer;

std::unique_ptr<grpc::Service> MakeAdminService(ControllerServer& server);

}  // namespace regen
