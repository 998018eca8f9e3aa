// Counts the RPCs regen-controller answered with an error, by method and gRPC status code, for
// the regen_rpc_errors_total metric. A gRPC server interceptor sees every reply (refusals of
// authentication included) without each handler having to count. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/support/server_interceptor.h>

#include "common/thread_annotations.h"

namespace regen {

class RpcErrorCounts {
 public:
  using Key = std::pair<std::string, std::string>;  // method ("/regen.v1.AdminService/Drain"), code
  void Add(const std::string& method, const std::string& code);
  std::map<Key, int64_t> Snapshot() const;

 private:
  mutable Mutex mu_;
  std::map<Key, int64_t> counts_ GUARDED_BY(mu_);
};

// The process-wide counts the server's interceptor feeds.
RpcErrorCounts& GlobalRpcErrors();

// For grpc::ServerBuilder::experimental().SetInterceptorCreators.
std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
RpcErrorInterceptors();

// "UNAUTHENTICATED", "NOT_FOUND", ...
std::string GrpcCodeName(int code);

}  // namespace regen
