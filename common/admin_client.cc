#include "common/admin_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <optional>
#include <random>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "common/controller_list.h"
#include "common/grpc_limits.h"
#include "common/store_refusal.h"

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

// The channel to `address` for `options.tls`; a channel that never connects when the credentials
// cannot be built (*error says why, and the client returns it before any call). One connection
// attempt lasts at most connect_timeout (gRPC 1.51 takes the minimum reconnect backoff as the
// connect timeout); a failed one is tried again after 100 ms to 1 s.
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
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(std::min(options.connect_timeout, options.deadline).count()));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxReceiveMessageSize(kMaxTopologyMessageBytes);  // lists of a large cluster
  args.SetMaxSendMessageSize(kMaxRequestMessageBytes);
  return grpc::CreateCustomChannel(address, *credentials, args);
}

std::vector<std::string> SplitAddresses(const std::string& text) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (true) {
    size_t comma = text.find(',', begin);
    std::string entry = text.substr(begin, comma == std::string::npos ? comma : comma - begin);
    entry.erase(0, entry.find_first_not_of(" \t"));
    entry.erase(entry.find_last_not_of(" \t") + 1);
    if (!entry.empty()) out.push_back(entry);
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  if (out.empty()) out.push_back(text);
  return out;
}

}  // namespace

// One controller address and its channel.
struct AdminClient::Target {
  std::string address;
  std::shared_ptr<grpc::ChannelInterface> channel;
  std::unique_ptr<v1::AdminService::Stub> stub;
};

// The order one call tries the targets in: the one that answered last, then the others in their
// order, except that a standby naming another target sends the call there next. Records what
// each target said, for the error when none answers.
class AdminClient::Attempts {
 public:
  Attempts(const AdminClient& client, size_t first) : client_(client), first_(first) {
    tried_.assign(client.targets_.size(), false);
  }
  // The next target to try; false when every one was tried.
  bool Next(size_t* index) {
    if (redirect_ && !tried_[*redirect_]) {
      *index = *redirect_;
    } else {
      size_t n = tried_.size(), i = 0;
      while (i < n && tried_[(first_ + i) % n]) ++i;
      if (i == n) return false;
      *index = (first_ + i) % n;
    }
    redirect_.reset();
    tried_[*index] = true;
    return true;
  }
  void Failed(size_t index, std::string what) {
    said_.push_back(client_.targets_[index]->address + ": " + what);
  }
  // A standby answered with `message`, naming `active` ("" = it does not know).
  void Standby(size_t index, const std::string& message, const std::string& active) {
    Failed(index, message);
    for (size_t i = 0; i < client_.targets_.size(); ++i) {
      if (client_.targets_[i]->address == active) redirect_ = i;
    }
  }
  // UNAVAILABLE naming every address tried and what it said.
  Status Error() const {
    std::string text;
    if (said_.size() == 1) {
      text = "cannot reach the controller at " + said_[0];
    } else {
      text = "cannot reach an active controller: ";
      for (size_t i = 0; i < said_.size(); ++i) text += (i ? "; " : "") + said_[i];
    }
    if (!client_.options_.unreachable_hint.empty()) {
      text += " (" + client_.options_.unreachable_hint + ")";
    }
    return Unavailable(text);
  }

 private:
  const AdminClient& client_;
  size_t first_;
  std::vector<bool> tried_;
  std::optional<size_t> redirect_;
  std::vector<std::string> said_;
};

AdminClient::AdminClient(std::string address, AdminClientOptions options)
    : AdminClient(SplitAddresses(address), std::move(options)) {}

AdminClient::AdminClient(std::vector<std::string> addresses, AdminClientOptions options)
    : options_(std::move(options)) {
  for (auto& address : addresses) {
    auto t = std::make_unique<Target>();
    t->address = std::move(address);
    Status error;
    t->channel = MakeChannel(t->address, options_, &error);
    if (!error.ok()) init_error_ = error;
    t->stub = v1::AdminService::NewStub(t->channel);
    targets_.push_back(std::move(t));
  }
}

AdminClient::AdminClient(std::string address, std::shared_ptr<grpc::ChannelInterface> channel,
                         AdminClientOptions options)
    : options_(std::move(options)) {
  auto t = std::make_unique<Target>();
  t->address = std::move(address);
  t->channel = std::move(channel);
  t->stub = v1::AdminService::NewStub(t->channel);
  targets_.push_back(std::move(t));
}

AdminClient::~AdminClient() = default;

std::string AdminClient::address() const { return targets_[Current()]->address; }

size_t AdminClient::Current() const {
  MutexLock lock(mu_);
  return current_;
}

void AdminClient::Remember(size_t index) {
  MutexLock lock(mu_);
  current_ = index;
}

void AdminClient::Authorize(grpc::ClientContext* context) const {
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
}

bool AdminClient::Connect(Target& target, std::string* why) const {
  auto timeout = std::min(options_.connect_timeout, options_.deadline);
  auto deadline = std::chrono::system_clock::now() + timeout;
  grpc_connectivity_state state = target.channel->GetState(/*try_to_connect=*/true);
  // A channel failed by an earlier call gets one more attempt before it counts as failed.
  bool fresh = state != GRPC_CHANNEL_TRANSIENT_FAILURE;
  while (state != GRPC_CHANNEL_READY) {
    if ((state == GRPC_CHANNEL_TRANSIENT_FAILURE && fresh) || state == GRPC_CHANNEL_SHUTDOWN) {
      *why = "could not connect (nothing listens there, or the TLS handshake failed)";
      return false;
    }
    if (!target.channel->WaitForStateChange(state, deadline)) {
      *why = "no connection within " + std::to_string(timeout.count()) + " ms";
      return false;
    }
    fresh = true;
    state = target.channel->GetState(/*try_to_connect=*/true);
  }
  return true;
}

Status AdminClient::FromGrpc(const char* rpc, const std::string& address,
                             const grpc::Status& status) const {
  std::string message = status.error_message();
  if (message.empty())
    message = std::string(rpc) + " failed (gRPC code " +
              std::to_string(static_cast<int>(status.error_code())) + ")";
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      message.rfind(kStoreRefusedPrefix, 0) == 0) {
    return Unavailable(message);  // the controller answered: its store refused (retry later)
  }
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return Status::Ok();
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED: {
      std::string text = "cannot reach the controller at " + address + ": " + message;
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

namespace {
// The active controller a standby names ("" = unknown), or nullopt if `status` is no standby's.
std::optional<std::string> StandbyAnswer(const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return std::nullopt;
  return StandbyRedirect(status.error_message());
}
}  // namespace

template <typename Response, typename Request, typename Call>
Result<Response> AdminClient::Unary(const char* rpc, const Request& request, Call call) {
  if (!init_error_.ok()) return init_error_;
  Attempts attempts(*this, Current());
  for (size_t i = 0; attempts.Next(&i);) {
    Target& target = *targets_[i];
    std::string why;
    if (!Connect(target, &why)) {
      attempts.Failed(i, why);
      continue;
    }
    grpc::ClientContext context;
    Authorize(&context);
    context.set_deadline(std::chrono::system_clock::now() + options_.deadline);
    Response response;
    grpc::Status status = call(*target.stub, &context, request, &response);
    if (status.ok()) {
      Remember(i);
      return response;
    }
    if (auto active = StandbyAnswer(status)) {
      attempts.Standby(i, status.error_message(), *active);
      continue;
    }
    Remember(i);
    return FromGrpc(rpc, target.address, status);
  }
  return attempts.Error();
}

// The stub's blocking method as a callable for Unary.
#define REGEN_STUB_CALL(method)                                                           \
  [](v1::AdminService::Stub& stub, grpc::ClientContext* c, const auto& req, auto* resp) { \
    return stub.method(c, req, resp);                                                     \
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

Result<v1::DeleteServiceResponse> AdminClient::DeleteService(v1::DeleteServiceRequest request) {
  EnsureOperationId(request);
  return Unary<v1::DeleteServiceResponse>("DeleteService", request, REGEN_STUB_CALL(DeleteService));
}

Result<v1::HostInfo> AdminClient::UndrainHost(v1::HostRequest request) {
  EnsureOperationId(request);
  return Unary<v1::HostInfo>("UndrainHost", request, REGEN_STUB_CALL(UndrainHost));
}

Result<v1::HostInfo> AdminClient::CordonHost(v1::HostRequest request) {
  EnsureOperationId(request);
  return Unary<v1::HostInfo>("CordonHost", request, REGEN_STUB_CALL(CordonHost));
}

Result<v1::HostInfo> AdminClient::UncordonHost(v1::HostRequest request) {
  EnsureOperationId(request);
  return Unary<v1::HostInfo>("UncordonHost", request, REGEN_STUB_CALL(UncordonHost));
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
  v1::EventsRequest request;
  request.set_after_sequence(after_sequence);
  request.set_follow(follow);
  Attempts attempts(*this, Current());
  for (size_t i = 0; attempts.Next(&i);) {
    Target& target = *targets_[i];
    std::string why;
    if (!Connect(target, &why)) {
      attempts.Failed(i, why);
      continue;
    }
    grpc::ClientContext context;
    Authorize(&context);
    if (!follow) context.set_deadline(std::chrono::system_clock::now() + options_.deadline);
    std::unique_ptr<grpc::ClientReader<v1::Event>> reader = target.stub->Events(&context, request);
    v1::Event event;
    bool stopped = false, received = false;
    while (reader->Read(&event)) {
      received = true;
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
    if (auto active = StandbyAnswer(status); active && !received) {
      attempts.Standby(i, status.error_message(), *active);
      continue;
    }
    Remember(i);
    return FromGrpc("Events", target.address, status);
  }
  return attempts.Error();
}

}  // namespace regen
