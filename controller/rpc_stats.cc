#include "controller/rpc_stats.h"

#include <grpcpp/grpcpp.h>

namespace regen {

void RpcErrorCounts::Add(const std::string& method, const std::string& code) {
  MutexLock lock(mu_);
  ++counts_[{method, code}];
}

std::map<RpcErrorCounts::Key, int64_t> RpcErrorCounts::Snapshot() const {
  MutexLock lock(mu_);
  return counts_;
}

RpcErrorCounts& GlobalRpcErrors() {
  static RpcErrorCounts* counts = new RpcErrorCounts();  // never destroyed: used by gRPC threads
  return *counts;
}

std::string GrpcCodeName(int code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(sizeof(kNames) / sizeof(kNames[0]))) return kNames[code];
  return "CODE_" + std::to_string(code);
}

namespace {

class ErrorCountingInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit ErrorCountingInterceptor(std::string method) : method_(std::move(method)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      if (!status.ok()) {
        GlobalRpcErrors().Add(method_, GrpcCodeName(static_cast<int>(status.error_code())));
      }
    }
    methods->Proceed();
  }

 private:
  std::string method_;
};

class ErrorCountingFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new ErrorCountingInterceptor(info->method() ? info->method() : "");
  }
};

}  // namespace

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
RpcErrorInterceptors() {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> out;
  out.push_back(std::make_unique<ErrorCountingFactory>());
  return out;
}

}  // namespace regen
