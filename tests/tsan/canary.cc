// tsan_canary: a deliberate data race, run by ctest in build-tsan only (tests/tsan/CMakeLists.txt)
// and expected to make ThreadSanitizer report it. It proves that the TSan build still checks
// Regen's own code: the compile-time ignore list (tests/tsan/ignorelist.txt) and the runtime
// suppressions (tests/tsan/suppressions.txt) hide only gRPC's code. Single-threaded main; the
// races are between the threads it starts (or gRPC's).
//   tsan_canary plain: two std::threads write one int.
//   tsan_canary grpc:  a gRPC callback handler (called from the gRPC header templates the ignore
//                      list leaves uninstrumented) writes a member that another thread writes
//                      too, unsynchronized (a relaxed flag, which orders nothing for TSan, only
//                      makes it wait for the handler).
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "common/proto/regen.grpc.pb.h"

namespace {

struct Shared {
  int value = 0;  // deliberately unguarded
};

void __attribute__((noinline)) CanaryWrite(Shared& s, int v) { s.value = v; }

int PlainRace() {
  Shared s;
  std::thread a([&] { CanaryWrite(s, 1); });
  std::thread b([&] { CanaryWrite(s, 2); });
  a.join();
  b.join();
  return s.value == 0 ? 1 : 0;
}

class CanaryService final : public regen::v1::AdminService::CallbackService {
 public:
  grpc::ServerUnaryReactor* ListServices(grpc::CallbackServerContext* ctx,
                                         const regen::v1::ListServicesRequest*,
                                         regen::v1::ListServicesResponse*) override {
    CanaryWrite(shared, 1);  // on a gRPC thread (or the main thread, if gRPC polls there)
    handled.store(true, std::memory_order_relaxed);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  Shared shared;
  std::atomic<bool> handled{false};
};

int GrpcRace() {
  CanaryService service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "tsan_canary: cannot start a gRPC server\n");
    return 2;
  }
  // Started before the call: whichever thread runs the handler, its write is not ordered
  // before this thread's.
  std::thread other([&service] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!service.handled.load(std::memory_order_relaxed) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    CanaryWrite(service.shared, 2);
  });
  auto stub = regen::v1::AdminService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  regen::v1::ListServicesResponse response;
  grpc::Status status = stub->ListServices(&ctx, {}, &response);
  other.join();
  server->Shutdown();
  return status.ok() ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "plain") == 0) return PlainRace();
  if (argc == 2 && std::strcmp(argv[1], "grpc") == 0) return GrpcRace();
  std::fprintf(stderr, "usage: tsan_canary plain|grpc\n");
  return 2;
}
