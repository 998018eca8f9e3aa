#include "controller/ha_controller.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "common/log.h"
#include "config/etcd_config.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Between two attempts while etcd cannot be reached.
constexpr milliseconds kRetry{1000};
// One Campaign call; a candidate whose call ends re-campaigns with the same lease (etcd finds its
// own key again, so a response lost in flight costs nothing).
constexpr milliseconds kCampaignTimeout{10000};
// The fuse ends the process this long before the lease would expire unrenewed: etcd's own
// expiry is later still (it counts from when it received the renewal we count from sending it).
constexpr milliseconds kFuseMargin{200};

// Logs the first failure of a kind and then every tenth (etcd down: one line every ~10 s).
void LogRetry(const char* what, int attempt, const Status& s) {
  if (attempt == 1 || attempt % 10 == 0) {
    spdlog::warn("{} (attempt {}, retrying every {} ms): {}", what, attempt, kRetry.count(),
                 s.ToString());
  }
}

bool IsGuardRefusal(const Status& s) {
  return s.code() == Code::kFailedPrecondition &&
         s.message().find("not the active controller") != std::string::npos;
}

// The EtcdStore as the controller uses it: a write refused by the election guard means another
// controller leads now; this one must stop at once.
class DeposingStore final : public Store {
 public:
  explicit DeposingStore(Store& inner) : inner_(inner) {}
  Result<StoreSnapshot> LoadAll() override { return inner_.LoadAll(); }
  Status Transaction(const std::function<Status(StoreTxn&)>& body) override {
    Status s = inner_.Transaction(body);
    if (IsGuardRefusal(s)) Deposed(s.message());
    return s;
  }
  Result<std::vector<EventRecord>> EventsAfter(int64_t after, int64_t limit) override {
    return inner_.EventsAfter(after, limit);
  }
  Result<std::optional<OperationRecord>> FindOperation(const std::string& id) override {
    return inner_.FindOperation(id);
  }
  Result<std::set<std::string>> DnsNames(const std::string& zone) override {
    return inner_.DnsNames(zone);
  }

 private:
  Store& inner_;
};

}  // namespace

void Deposed(const std::string& why) {
  spdlog::critical("deposed: {}; exiting with status {} (restart as a standby)", why,
                   kDeposedExitCode);
  if (auto logger = spdlog::default_logger()) logger->flush();
  std::fflush(stderr);
  std::_Exit(kDeposedExitCode);
}

Result<etcd::EtcdOptions> EtcdOptionsFromConfig(const EtcdConfig& config) {
  ASSIGN_OR_RETURN(etcd::EtcdOptions o, EtcdClientOptions(config));
  // Short attempts: a member that does not answer must not eat the election lease's TTL.
  const milliseconds ttl = config.election_ttl;
  o.attempt_timeout = std::clamp(ttl / 3, milliseconds(300), milliseconds(2000));
  return o;
}

HaController::HaController(const ControllerConfig& config)
    : config_(config), election_name_(config.etcd.prefix + "election") {}

HaController::~HaController() {
  Stop();
  {
    MutexLock lock(mu_);
    fuse_stop_ = true;
  }
  cv_.notify_all();
  if (fuse_.joinable()) fuse_.join();
  if (observer_) observer_->Stop();
  if (keepalive_) keepalive_->Stop();
  if (standby_) standby_->Shutdown();
}

std::string HaController::ActiveAddress() const {
  MutexLock lock(mu_);
  return active_address_;
}

bool HaController::stopped() const {
  MutexLock lock(mu_);
  return stop_;
}

bool HaController::WaitStopped(milliseconds d) {
  MutexLock lock(mu_);
  auto until = Clock::now() + d;
  while (!stop_ && Clock::now() < until) cv_.wait_until(lock.native(), until);
  return stop_;
}

void HaController::Stop() {
  std::shared_ptr<etcd::EtcdElection> election;
  {
    MutexLock lock(mu_);
    stop_ = true;
    election = election_;
  }
  cv_.notify_all();
  if (election) election->CancelCampaign();
}

Status HaController::ConnectEtcd() {
  ASSIGN_OR_RETURN(etcd::EtcdOptions options, EtcdOptionsFromConfig(config_.etcd));
  for (int attempt = 1;; ++attempt) {
    auto client = etcd::EtcdClient::Connect(options);
    if (client.ok()) {
      client_ = *client;
      if (standby_) standby_->SetEtcdClient(client_);  // it answers reads from etcd from now on
      break;
    }
    LogRetry("connecting to etcd", attempt, client.status());
    if (WaitStopped(kRetry)) return Unavailable("stopped");
  }
  {
    MutexLock lock(mu_);
    election_ = std::make_shared<etcd::EtcdElection>(client_, election_name_);
  }
  observer_ = std::make_unique<etcd::EtcdLeaderObserver>(
      client_, election_name_, [this](const etcd::KeyValue& leader) {
        bool changed = false;
        {
          MutexLock lock(mu_);
          changed = active_address_ != leader.value;
          active_address_ = leader.value;
        }
        if (changed) spdlog::info("the active controller is at {}", leader.value);
      });
  return Status::Ok();
}

Status HaController::NewLease() {
  if (keepalive_) keepalive_->Stop();
  keepalive_.reset();
  const int64_t ttl = config_.etcd.election_ttl.count() / 1000;
  for (int attempt = 1;; ++attempt) {
    auto lease = client_->GrantLease(ttl);
    if (lease.ok()) {
      lease_id_ = lease->id;
      lease_ttl_ = lease->ttl_seconds;
      break;
    }
    LogRetry("granting the election lease in etcd", attempt, lease.status());
    if (WaitStopped(kRetry)) return Unavailable("stopped");
  }
  if (lease_ttl_ != ttl) {
    spdlog::warn(
        "etcd granted the election lease a TTL of {}s, not etcd.election_ttl {}s (etcd's "
        "minimum): a failover may take that long",
        lease_ttl_, ttl);
  }
  keepalive_ = std::make_unique<etcd::EtcdKeepAlive>(client_, lease_id_, lease_ttl_,
                                                     [this](Status s) { OnLeaseLost(s); });
  spdlog::info("election lease {:x} granted (TTL {}s)", lease_id_, lease_ttl_);
  return Status::Ok();
}

void HaController::OnLeaseLost(const Status& status) {
  if (active_.load()) Deposed("the election lease was lost: " + status.ToString());
  spdlog::warn("standby: the election lease was lost ({}); campaigning again with a new one",
               status.ToString());
  std::shared_ptr<etcd::EtcdElection> election;
  {
    MutexLock lock(mu_);
    election = election_;
  }
  if (election) election->CancelCampaign();
}

Result<etcd::LeaderKey> HaController::Campaign() {
  std::shared_ptr<etcd::EtcdElection> election;
  {
    MutexLock lock(mu_);
    election = election_;
  }
  for (int attempt = 1;; ++attempt) {
    if (stopped()) return Unavailable("stopped");
    if (!keepalive_ || keepalive_->lost()) RETURN_IF_ERROR(NewLease());
    auto leader = election->Campaign(config_.advertise_address, lease_id_, kCampaignTimeout);
    if (leader.ok()) return leader;
    if (leader.status().code() == Code::kDeadlineExceeded) {
      attempt = 0;  // still a candidate, nobody else failed: not worth a line
      continue;
    }
    if (stopped()) return Unavailable("stopped");
    if (keepalive_->lost()) continue;  // cancelled by OnLeaseLost: a new lease first
    LogRetry("campaigning for the active controller", attempt, leader.status());
    if (WaitStopped(kRetry)) return Unavailable("stopped");
  }
}

Status HaController::OpenStore() {
  EtcdStoreOptions options;
  options.prefix = config_.etcd.prefix;
  for (int attempt = 1;; ++attempt) {
    auto store = EtcdStore::Open(client_, options);
    if (store.ok()) {
      etcd_store_ = std::move(*store);
      break;
    }
    LogRetry("opening the store in etcd", attempt, store.status());
    if (WaitStopped(kRetry)) return Unavailable("stopped");
  }
  etcd_store_->SetWriteGuard(leader_.key, leader_.revision);
  store_ = std::make_unique<DeposingStore>(*etcd_store_);
  return Status::Ok();
}

Status HaController::StartStandby() {
  ASSIGN_OR_RETURN(standby_, StandbyServer::Start(config_, [this] { return ActiveAddress(); }));
  return Status::Ok();
}

Result<Store*> HaController::WaitUntilActive() {
  spdlog::info("HA mode: etcd {} (prefix {}), election {} as {}", config_.etcd.endpoints.front(),
               config_.etcd.prefix, election_name_, config_.advertise_address);
  RETURN_IF_ERROR(ConnectEtcd());
  ASSIGN_OR_RETURN(leader_, Campaign());
  active_ = true;
  // A lease lost while Campaign answered: OnLeaseLost saw active_ false, so look again.
  if (keepalive_->lost()) Deposed("the election lease was lost as this controller was elected");
  fuse_ = std::thread([this] { FuseLoop(); });
  spdlog::info(
      "elected: this controller is the active one (election key {}, revision {}, lease "
      "{:x}, TTL {}s)",
      leader_.key, leader_.revision, lease_id_, lease_ttl_);
  RETURN_IF_ERROR(OpenStore());
  if (standby_) standby_->Shutdown();
  return store_.get();
}

bool HaController::Leading() const {
  return active_.load() && Clock::now() < keepalive_->expiry() - kFuseMargin;
}

void HaController::FuseLoop() {
  MutexLock lock(mu_);
  while (!fuse_stop_) {
    Clock::time_point fire = keepalive_->expiry() - kFuseMargin;
    Clock::time_point now = Clock::now();
    if (now >= fire) {
      Deposed("the election lease was not renewed for its TTL (" + std::to_string(lease_ttl_) +
              "s): etcd unreachable or too slow; another controller may lead now");
    }
    cv_.wait_until(lock.native(), std::min(fire, now + milliseconds(100)));
  }
}

void HaController::Resign() {
  {
    MutexLock lock(mu_);
    fuse_stop_ = true;
  }
  cv_.notify_all();
  if (fuse_.joinable()) fuse_.join();
  if (keepalive_) keepalive_->Stop();
  if (client_ && lease_id_ != 0) {
    Status s = client_->RevokeLease(lease_id_, milliseconds(1000));
    if (s.ok()) {
      spdlog::info("election lease {:x} revoked: {}", lease_id_,
                   active_ ? "a standby takes over now" : "candidacy withdrawn");
    } else {
      spdlog::warn("revoking election lease {:x}: {} (it expires within {}s)", lease_id_,
                   s.ToString(), lease_ttl_);
    }
  }
}

}  // namespace regen
