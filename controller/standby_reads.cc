#include "controller/standby_reads.h"

#include <utility>

#include "common/clock.h"
#include "common/log.h"

namespace regen {
namespace {

// The throwaway controller's store: LoadAll returns the snapshot read from etcd; what the
// controller writes while it loads (instances a service lacks, a bumped topology revision) goes
// nowhere but its own memory, exactly as the active controller's memory would hold it.
class ScratchStore final : public Store {
 public:
  explicit ScratchStore(StoreSnapshot snapshot) : snapshot_(std::move(snapshot)) {}

  Result<StoreSnapshot> LoadAll() override { return snapshot_; }
  Status Transaction(const std::function<Status(StoreTxn&)>& body) override {
    Txn txn(snapshot_.last_event_sequence);
    return body(txn);
  }
  Result<std::vector<EventRecord>> EventsAfter(int64_t, int64_t) override {
    return std::vector<EventRecord>{};
  }
  Result<std::optional<OperationRecord>> FindOperation(const std::string& id) override {
    auto it = snapshot_.operations.find(id);
    if (it == snapshot_.operations.end()) return std::optional<OperationRecord>();
    return std::optional<OperationRecord>(it->second);
  }
  Result<std::set<std::string>> DnsNames(const std::string&) override {
    return std::set<std::string>{};
  }

 private:
  class Txn final : public StoreTxn {
   public:
    explicit Txn(int64_t& last_event) : last_event_(last_event) {}
    Status PutHost(const HostRecord&) override { return Status::Ok(); }
    Status PutService(const ServiceRecord&) override { return Status::Ok(); }
    Status DeleteService(const std::string&) override { return Status::Ok(); }
    Status PutInstance(const InstanceRecord&) override { return Status::Ok(); }
    Status DeleteInstance(const std::string&) override { return Status::Ok(); }
    Status PutOperation(const OperationRecord&) override { return Status::Ok(); }
    Status SetMeta(const std::string&, const std::string&) override { return Status::Ok(); }
    Result<int64_t> AppendEvent(EventRecord) override { return ++last_event_; }
    Status PutDnsName(const std::string&, const std::string&) override { return Status::Ok(); }
    Status DeleteDnsName(const std::string&, const std::string&) override { return Status::Ok(); }

   private:
    int64_t& last_event_;
  };

  StoreSnapshot snapshot_;
};

Status CannotRead(const Status& s) {
  return Unavailable("cannot read the cluster state from etcd: " + s.message());
}

}  // namespace

// One loaded state. Members in this order: the controller refers to the store and the clock.
struct StandbyReads::View {
  View(const ControllerConfig& config, StoreSnapshot snapshot)
      : store(std::move(snapshot)), controller(config, store, clock) {}
  ScratchStore store;
  RealClock clock;
  Controller controller;
  int64_t counter_revision = 0;  // the counter key's mod revision the state was read after
  int64_t revision = 0;          // etcd's revision the state is known current at
};

StandbyReads::StandbyReads(const ControllerConfig& config, std::chrono::milliseconds max_age,
                           std::chrono::milliseconds timeout)
    : config_(config), max_age_(max_age), timeout_(timeout) {}

StandbyReads::~StandbyReads() = default;

void StandbyReads::SetClient(std::shared_ptr<etcd::EtcdClient> client) {
  MutexLock lock(mu_);
  client_ = std::move(client);
  store_.reset();
  view_.reset();
}

bool StandbyReads::connected() const {
  MutexLock lock(mu_);
  return client_ != nullptr;
}

int64_t StandbyReads::loads() const {
  MutexLock lock(mu_);
  return loads_;
}

Status StandbyReads::Read(const std::function<void(const Controller&, int64_t)>& read) {
  MutexLock lock(mu_);
  if (!client_) return FailedPrecondition("not connected to etcd yet");
  RETURN_IF_ERROR(Refresh());
  read(view_->controller, view_->revision);
  return Status::Ok();
}

Status StandbyReads::Refresh() {
  const auto now = std::chrono::steady_clock::now();
  if (view_ && now - checked_ < max_age_) return Status::Ok();
  // The counter first: a transaction committed between this read and LoadAll below makes the
  // view newer than counter_revision says, so the next check loads again (never the reverse).
  auto head = client_->Get(config_.etcd.prefix + "counter", timeout_);
  if (!head.ok()) return CannotRead(head.status());
  const int64_t counter_revision = head->kvs.empty() ? 0 : head->kvs[0].mod_revision;
  if (view_ && view_->counter_revision == counter_revision) {
    view_->revision = head->revision;
    checked_ = now;
    return Status::Ok();
  }
  RETURN_IF_ERROR(Reload(counter_revision, head->revision));
  checked_ = now;
  return Status::Ok();
}

Status StandbyReads::Reload(int64_t counter_revision, int64_t revision) {
  if (!store_) {
    EtcdStoreOptions options;
    options.prefix = config_.etcd.prefix;
    options.timeout = timeout_;
    auto store = EtcdStore::Open(client_, options);
    if (!store.ok()) return CannotRead(store.status());
    store_ = std::move(*store);
  }
  auto snapshot = store_->LoadAll();
  if (!snapshot.ok()) return CannotRead(snapshot.status());
  auto view = std::make_unique<View>(config_, std::move(*snapshot));
  if (Status s = view->controller.Load(); !s.ok()) return CannotRead(s);
  view->counter_revision = counter_revision;
  view->revision = revision;
  view_ = std::move(view);
  ++loads_;
  spdlog::debug("standby: the cluster state loaded from etcd (revision {})", revision);
  return Status::Ok();
}

}  // namespace regen
