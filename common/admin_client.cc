#include "common/admin_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <random>
#include <utility>

#include <grpcpp/grpcpp.h>

namespace regen {

namespace {

// Fills an empty operation id of a mutating request.
template <typename Request>
void EnsureOperationId(Request& request) {
  if (request.operation_id().empty()) request.set_operation_id(NewOperationId());
}

bool ReadUrandom(unsigned char* out, size_t size) {
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::read(fd, out + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return got == size;
}

}  // namespace

std::string NewOperationId() {
  unsigned char bytes[16];
  if (!ReadUrandom(bytes, sizeof bytes)) {
    std::random_device device;
    for (size_t i = 0; i < sizeof bytes; i += 4) {
      uint32_t word = device();
      for (size_t j = 0; j < 4; ++j) bytes[i + j] = static_cast<unsigned char>(word >> (8 * j));
    }
  }
  std::string hex;
  hex.reserve(2 * sizeof bytes);
  static constexpr char kDigits[] = "0123456789abcdef";
  for (unsigned char b : bytes) {
    hex += kDigits[b >> 4];
    hex += kDigits[b & 0xf];
  }
  return hex;
}

namespace {

// The channel for `options.tls`; a channel that never connects when the credentials cannot be
// built (*error says why, and the client returns it before any call).
std::shared_ptr<grpc::ChannelInterface> MakeChannel(const std::string& address,
                                                    const AdminClientOptions& options,
                                                    Status* error) {
  auto credentials = MakeChannelCredentials(options.tls);
  if (!credentials.ok()) {
    *error = credentials.status();
    return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  }
  grpc::ChannelArguments args;
  ApplyServerName(options.tls, &args);
  return grpc::CreateCustomChannel(address, *credentials, args);
}

}  // namespace

AdminClient::AdminClient(std::string address, AdminClientOptions options)
    : address_(std::move(address)), options_(std::move(options)) {
  stub_ = v1::AdminService::NewStub(MakeChannel(address_, options_, &init_error_));
}

AdminClient::AdminClient(std::string address, std::shared_ptr<grpc::ChannelInterface> channel,
                         AdminClientOptions options)
    : address_(std::move(address)),
      options_(std::move(options)),
      stub_(v1::AdminService::NewStub(std::move(channel))) {}

void AdminClient::Authorize(grpc::ClientContext* context) const {
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
}

Status AdminClient::FromGrpc(const char* rpc, const grpc::Status& status) const {
  std::string message = status.error_message();
  if (message.empty())
    message = std::string(rpc) + " failed (gRPC code " +
              std::to_string(static_cast<int>(status.error_code())) + ")";
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return Status::Ok();
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED: {
      std::string text = "cannot reach the controller at " + address_ + ": " + message;
      if (!options_.unreachable_hint.empty()) text += " (" + options_.unreachable_hint + ")";
      return status.error_code() == grpc::StatusCode::UNAVAILABLE ? Unavailable(text)
                                                                  : DeadlineExceeded(text);
    }
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return InvalidArgument(message);
    case grpc::StatusCode::NOT_FOUND:
      return NotFound(message);
    case grpc::StatusCode::ALREADY_EXISTS:
      return AlreadyExists(message);
    case grpc::StatusCode::UNAUTHENTICATED:
      return Unauthenticated(message);
    case grpc::StatusCode::PERMISSION_DENIED:
      return PermissionDenied(message);
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return FailedPrecondition(message);
    default:
      return Internal(message);
  }
}

template <typename Response, typename Request, typename Call>
Result<Response> AdminClient::Unary(const char* rpc, const Request& request, Call call) {
  if (!init_error_.ok()) return init_error_;
  grpc::ClientContext context;
  Authorize(&context);
  context.set_deadline(std::chrono::system_clock::now() + options_.deadline);
  Response response;
  grpc::Status status = call(&context, request, &response);
  if (!status.ok()) return FromGrpc(rpc, status);
  return response;
}

// The stub's blocking method as a callable for Unary.
#define REGEN_STUB_CALL(method)                                 \
  [this](grpc::ClientContext* c, const auto& req, auto* resp) { \
    return stub_->method(c, req, resp);                         \
  }

Result<v1::ApplyServiceResponse> AdminClient::ApplyService(v1::ApplyServiceRequest request) {
  EnsureOperationId(request);
  return Unary<v1::ApplyServiceResponse>("ApplyService", request, REGEN_STUB_CALL(ApplyService));
}

Result<v1::ListServicesResponse> AdminClient::ListServices(const v1::ListServicesRequest& request) {
  return Unary<v1::ListServicesResponse>("ListServices", request, REGEN_STUB_CALL(ListServices));
}

Result<v1::GetServiceResponse> AdminClient::GetService(const v1::GetServiceRequest& request) {
  return Unary<v1::GetServiceResponse>("GetService", request, REGEN_STUB_CALL(GetService));
}

Result<v1::ListInstancesResponse> AdminClient::ListInstances(
    const v1::ListInstancesRequest& request) {
  return Unary<v1::ListInstancesResponse>("ListInstances", request, REGEN_STUB_CALL(ListInstances));
}

Result<v1::ListHostsResponse> AdminClient::ListHosts(const v1::ListHostsRequest& request) {
  return Unary<v1::ListHostsResponse>("ListHosts", request, REGEN_STUB_CALL(ListHosts));
}

Result<v1::FailoverResponse> AdminClient::Failover(v1::FailoverRequest request) {
  EnsureOperationId(request);
  return Unary<v1::FailoverResponse>("Failover", request, REGEN_STUB_CALL(Failover));
}

Result<v1::DrainResponse> AdminClient::Drain(v1::DrainRequest request) {
  EnsureOperationId(request);
  return Unary<v1::DrainResponse>("Drain", request, REGEN_STUB_CALL(Drain));
}

Result<v1::UpgradeStatus> AdminClient::UpgradeStart(v1::UpgradeStartRequest request) {
  EnsureOperationId(request);
  return Unary<v1::UpgradeStatus>("UpgradeStart", request, REGEN_STUB_CALL(UpgradeStart));
}

Result<v1::UpgradeStatus> AdminClient::UpgradeStatusGet(v1::UpgradeServiceRequest request) {
  EnsureOperationId(request);
  return Unary<v1::UpgradeStatus>("UpgradeStatusGet", request, REGEN_STUB_CALL(UpgradeStatusGet));
}

Result<v1::UpgradeStatus> AdminClient::UpgradePause(v1::UpgradeServiceRequest request) {
  EnsureOperationId(request);
  return Unary<v1::UpgradeStatus>("UpgradePause", request, REGEN_STUB_CALL(UpgradePause));
}

Result<v1::UpgradeStatus> AdminClient::UpgradeResume(v1::UpgradeServiceRequest request) {
  EnsureOperationId(request);
  return Unary<v1::UpgradeStatus>("UpgradeResume", request, REGEN_STUB_CALL(UpgradeResume));
}

Result<v1::UpgradeStatus> AdminClient::UpgradeNextUd(v1::UpgradeServiceRequest request) {
  EnsureOperationId(request);
  return Unary<v1::UpgradeStatus>("UpgradeNextUd", request, REGEN_STUB_CALL(UpgradeNextUd));
}

Result<v1::UpgradeStatus> AdminClient::UpgradeRollback(v1::UpgradeServiceRequest request) {
  EnsureOperationId(request);
  return Unary<v1::UpgradeStatus>("UpgradeRollback", request, REGEN_STUB_CALL(UpgradeRollback));
}

Result<v1::MaintenanceStatus> AdminClient::MaintenanceStart(v1::MaintenanceStartRequest request) {
  EnsureOperationId(request);
  return Unary<v1::MaintenanceStatus>("MaintenanceStart", request,
                                      REGEN_STUB_CALL(MaintenanceStart));
}

Result<v1::MaintenanceStatus> AdminClient::MaintenanceEnd(v1::MaintenanceEndRequest request) {
  EnsureOperationId(request);
  return Unary<v1::MaintenanceStatus>("MaintenanceEnd", request, REGEN_STUB_CALL(MaintenanceEnd));
}

Result<v1::MaintenanceStatus> AdminClient::MaintenanceStatusGet(
    const v1::MaintenanceStatusRequest& request) {
  return Unary<v1::MaintenanceStatus>("MaintenanceStatusGet", request,
                                      REGEN_STUB_CALL(MaintenanceStatusGet));
}

#undef REGEN_STUB_CALL

Status AdminClient::Events(int64_t after_sequence, bool follow,
                           const std::function<bool(const v1::Event&)>& on_event) {
  if (!init_error_.ok()) return init_error_;
  grpc::ClientContext context;
  Authorize(&context);
  if (!follow) context.set_deadline(std::chrono::system_clock::now() + options_.deadline);
  v1::EventsRequest request;
  request.set_after_sequence(after_sequence);
  request.set_follow(follow);
  std::unique_ptr<grpc::ClientReader<v1::Event>> reader = stub_->Events(&context, request);
  v1::Event event;
  bool stopped = false;
  while (reader->Read(&event)) {
    if (!on_event(event)) {
      stopped = true;
      context.TryCancel();
      while (reader->Read(&event)) {
      }
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (stopped) return Status::Ok();  // CANCELLED by us
  return FromGrpc("Events", status);
}

}  // namespace regen
