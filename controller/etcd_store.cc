#include "controller/etcd_store.h"

#include <cinttypes>
#include <cstdio>
#include <map>
#include <random>

#include "controller/store_codec.h"

namespace regen {
namespace {

using nlohmann::json;

constexpr int kMaxAttempts = 3;

std::string EventKey(const std::string& prefix, int64_t sequence) {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%020" PRId64, sequence);
  return prefix + "events/" + digits;
}

// A record's name becomes part of its key: it must be one path segment.
Status CheckSegment(const std::string& what, const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos) {
    return InvalidArgument("store: " + what + " \"" + name +
                           "\" cannot be a key segment (empty, or has a '/')");
  }
  return Status::Ok();
}

}  // namespace

// The writes of one Transaction body, buffered until the commit.
class EtcdStore::Buffer : public StoreTxn {
 public:
  Buffer(const std::string& prefix, int64_t last_event) : p_(prefix), last_event_(last_event) {}

  Status PutHost(const HostRecord& h) override {
    return Set("host", "hosts/", h.name, HostToJson(h).dump());
  }
  Status PutService(const ServiceRecord& s) override {
    return Set("service", "services/", s.name, ServiceToJson(s).dump());
  }
  Status DeleteService(const std::string& name) override {
    return Set("service", "services/", name, std::nullopt);
  }
  Status PutInstance(const InstanceRecord& i) override {
    return Set("instance", "instances/", i.name, InstanceToJson(i).dump());
  }
  Status DeleteInstance(const std::string& name) override {
    return Set("instance", "instances/", name, std::nullopt);
  }
  Status PutOperation(const OperationRecord& o) override {
    return Set("operation", "operations/", o.id, OperationToJson(o).dump());
  }
  Status SetMeta(const std::string& key, const std::string& value) override {
    // Meta keys have '/' of their own ("upgrade/<service>").
    if (key.empty()) return InvalidArgument("store: empty meta key");
    writes_[p_ + "meta/" + key] = value;
    return Status::Ok();
  }
  Result<int64_t> AppendEvent(EventRecord event) override {
    event.sequence = ++last_event_;
    writes_[EventKey(p_, event.sequence)] = EventToJson(event).dump();
    return event.sequence;
  }
  Status PutDnsName(const std::string& zone, const std::string& name) override {
    RETURN_IF_ERROR(CheckSegment("DNS zone", zone));
    return Set("DNS name", "dns/" + zone + "/", name, std::string());
  }
  Status DeleteDnsName(const std::string& zone, const std::string& name) override {
    RETURN_IF_ERROR(CheckSegment("DNS zone", zone));
    return Set("DNS name", "dns/" + zone + "/", name, std::nullopt);
  }

  // key -> value, nullopt = delete.
  const std::map<std::string, std::optional<std::string>>& writes() const { return writes_; }
  int64_t last_event() const { return last_event_; }

 private:
  Status Set(const std::string& what, const std::string& dir, const std::string& name,
             std::optional<std::string> value) {
    RETURN_IF_ERROR(CheckSegment(what, name));
    writes_[p_ + dir + name] = std::move(value);
    return Status::Ok();
  }

  const std::string& p_;
  int64_t last_event_;
  std::map<std::string, std::optional<std::string>> writes_;
};

EtcdStore::EtcdStore(std::shared_ptr<etcd::EtcdClient> client, EtcdStoreOptions options)
    : client_(std::move(client)), options_(std::move(options)) {
  std::random_device random;
  std::mt19937_64 bits((static_cast<uint64_t>(random()) << 32) ^ random());
  char id[40];
  std::snprintf(id, sizeof id, "%016" PRIx64 "%016" PRIx64, bits(), bits());
  store_id_ = id;
}

Result<std::unique_ptr<EtcdStore>> EtcdStore::Open(std::shared_ptr<etcd::EtcdClient> client,
                                                   EtcdStoreOptions options) {
  if (options.prefix.empty() || options.prefix.back() != '/') {
    return InvalidArgument("store: etcd key prefix \"" + options.prefix + "\" must end with '/'");
  }
  std::unique_ptr<EtcdStore> store(new EtcdStore(std::move(client), std::move(options)));
  ASSIGN_OR_RETURN(store->counter_, store->ReadCounter(0));
  return store;
}

void EtcdStore::SetWriteGuard(const std::string& key, int64_t create_revision) {
  MutexLock lock(mu_);
  guard_ = Guard{key, create_revision};
}

void EtcdStore::ClearWriteGuard() {
  MutexLock lock(mu_);
  guard_.reset();
}

std::optional<EtcdStore::Guard> EtcdStore::guard() const {
  MutexLock lock(mu_);
  return guard_;
}

std::string EtcdStore::NewToken() { return store_id_ + "-" + std::to_string(++commits_); }

Result<EtcdStore::Counter> EtcdStore::ParseCounter(const etcd::RangeResult& range) {
  if (range.kvs.empty()) return Counter{};
  ASSIGN_OR_RETURN(json j, ParseRecord(range.kvs[0].value, "the event counter"));
  return Counter{j.value("last_event", int64_t{0}), range.kvs[0].mod_revision,
                 j.value("commit", "")};
}

Result<EtcdStore::Counter> EtcdStore::ReadCounter(int64_t revision) {
  auto range = client_->Range(options_.prefix + "counter", "", 0, revision, options_.timeout);
  if (!range.ok()) return range.status().WithContext("store: reading the event counter");
  return ParseCounter(*range);
}

Status EtcdStore::Transaction(const std::function<Status(StoreTxn&)>& body) {
  std::optional<Guard> guard = this->guard();
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    Buffer buffer(options_.prefix, counter_.last_event);
    RETURN_IF_ERROR(body(buffer));
    if (buffer.writes().empty()) return Status::Ok();
    bool retry = false;
    Status s = TryCommit(buffer, guard, &retry);
    if (!retry) return s;
  }
  return Unavailable("store: the event counter " + options_.prefix + "counter changed under " +
                     std::to_string(kMaxAttempts) +
                     " attempts of one transaction: another writer holds the same write guard");
}

Status EtcdStore::TryCommit(const Buffer& buffer, const std::optional<Guard>& guard, bool* retry) {
  using etcd::Compare;
  using etcd::TxnOp;
  const std::string counter_key = options_.prefix + "counter";
  etcd::TxnRequest txn;
  if (guard) {
    txn.compares.push_back(
        Compare::CreateRevision(guard->key, Compare::Op::kEqual, guard->create_revision));
    txn.failure.push_back(TxnOp::Get(guard->key));
  }
  txn.compares.push_back(
      Compare::ModRevision(counter_key, Compare::Op::kEqual, counter_.mod_revision));
  txn.failure.push_back(TxnOp::Get(counter_key));
  for (const auto& [key, value] : buffer.writes()) {
    txn.success.push_back(value ? TxnOp::Put(key, *value) : TxnOp::Delete(key));
  }
  std::string token = NewToken();
  txn.success.push_back(
      TxnOp::Put(counter_key, json{{"last_event", buffer.last_event()}, {"commit", token}}.dump()));
  if (txn.success.size() > etcd::kEtcdMaxTxnOps) {
    return InvalidArgument("store: a transaction of " + std::to_string(buffer.writes().size()) +
                           " writes (+ the event counter) is over etcd's " +
                           std::to_string(etcd::kEtcdMaxTxnOps) +
                           " operations in one Txn (--max-txn-ops); it is not split: nothing "
                           "was written");
  }
  auto result = client_->Txn(txn, options_.timeout);
  if (!result.ok()) {
    if (result.status().code() == Code::kInvalidArgument) {
      return result.status().WithContext(
          "store: a transaction of " + std::to_string(buffer.writes().size()) +
          " writes was refused, it is not split; nothing was written");
    }
    return CheckAppliedAfterError(result.status(), token, buffer.last_event());
  }
  if (result->succeeded) {
    counter_ = {buffer.last_event(), result->revision, token};
    return Status::Ok();
  }
  size_t read = 0;
  if (guard) {
    const etcd::RangeResult& g = result->reads.at(read++);
    if (g.kvs.empty() || g.kvs[0].create_revision != guard->create_revision) {
      std::string now = g.kvs.empty() ? "it is gone"
                                      : "it was created again at revision " +
                                            std::to_string(g.kvs[0].create_revision);
      return FailedPrecondition("store: not the active controller (election key " + guard->key +
                                " changed: " + now + ", this controller's dates from revision " +
                                std::to_string(guard->create_revision) +
                                "); nothing of the transaction was written");
    }
  }
  ASSIGN_OR_RETURN(Counter now, ParseCounter(result->reads.at(read)));
  counter_ = now;
  if (now.commit == token) return Status::Ok();  // an earlier attempt of this very Txn applied
  *retry = true;
  return Status::Ok();
}

Status EtcdStore::CheckAppliedAfterError(const Status& error, const std::string& token,
                                         int64_t last_event) {
  // The connection may have broken after etcd applied the Txn: its token in the counter says so.
  auto now = ReadCounter(0);
  if (now.ok() && now->commit == token && now->last_event == last_event) {
    counter_ = *now;
    return Status::Ok();
  }
  return error.WithContext(
      "store: the transaction was not confirmed (not applied, unless etcd "
      "applies it late)");
}

Result<StoreSnapshot> EtcdStore::LoadAll() {
  const std::string& p = options_.prefix;
  auto head = client_->Get(p + "counter", options_.timeout);
  if (!head.ok()) return head.status().WithContext("store: reading the event counter");
  ASSIGN_OR_RETURN(Counter counter, ParseCounter(*head));
  const int64_t at = head->revision;  // every range at one revision: one consistent snapshot
  // A record's key is DIR/NAME; keys below it (an agent's lease key hosts/<host>/alive) are not
  // records and are left out.
  auto read = [&](const std::string& dir, bool records = true) -> Result<etcd::RangeResult> {
    auto r = client_->GetPrefix(p + dir, 0, at, options_.timeout);
    if (!r.ok()) return r.status().WithContext("store: reading " + p + dir);
    if (records) {
      std::erase_if(r->kvs, [&](const etcd::KeyValue& kv) {
        return kv.key.find('/', p.size() + dir.size()) != std::string::npos;
      });
    }
    return r;
  };
  StoreSnapshot snap;
  ASSIGN_OR_RETURN(etcd::RangeResult hosts, read("hosts/"));
  for (const auto& kv : hosts.kvs) {
    std::string name = kv.key.substr(p.size() + 6);
    ASSIGN_OR_RETURN(json j, ParseRecord(kv.value, "host " + name));
    ASSIGN_OR_RETURN(snap.hosts[name], HostFromJson(name, j));
  }
  ASSIGN_OR_RETURN(etcd::RangeResult services, read("services/"));
  for (const auto& kv : services.kvs) {
    std::string name = kv.key.substr(p.size() + 9);
    ASSIGN_OR_RETURN(json j, ParseRecord(kv.value, "service " + name));
    ASSIGN_OR_RETURN(snap.services[name], ServiceFromJson(name, j));
  }
  ASSIGN_OR_RETURN(etcd::RangeResult instances, read("instances/"));
  for (const auto& kv : instances.kvs) {
    std::string name = kv.key.substr(p.size() + 10);
    ASSIGN_OR_RETURN(json j, ParseRecord(kv.value, "instance " + name));
    ASSIGN_OR_RETURN(snap.instances[name], InstanceFromJson(name, j));
  }
  ASSIGN_OR_RETURN(etcd::RangeResult operations, read("operations/"));
  for (const auto& kv : operations.kvs) {
    std::string id = kv.key.substr(p.size() + 11);
    ASSIGN_OR_RETURN(json j, ParseRecord(kv.value, "operation " + id));
    ASSIGN_OR_RETURN(OperationRecord op, OperationFromJson(id, j));
    if (op.state == "running") snap.operations[id] = op;  // done ones are not resumed
  }
  ASSIGN_OR_RETURN(etcd::RangeResult meta, read("meta/", /*records=*/false));
  for (const auto& kv : meta.kvs) snap.meta[kv.key.substr(p.size() + 5)] = kv.value;
  snap.last_event_sequence = counter.last_event;
  counter_ = counter;
  return snap;
}

Result<std::vector<EventRecord>> EtcdStore::EventsAfter(int64_t after, int64_t limit) {
  const std::string dir = options_.prefix + "events/";
  auto range = client_->Range(EventKey(options_.prefix, after + 1), etcd::PrefixEnd(dir), limit, 0,
                              options_.timeout);
  if (!range.ok()) return range.status().WithContext("store: reading events");
  std::vector<EventRecord> out;
  for (const auto& kv : range->kvs) {
    std::string digits = kv.key.substr(dir.size());
    int64_t sequence = std::strtoll(digits.c_str(), nullptr, 10);
    ASSIGN_OR_RETURN(json j, ParseRecord(kv.value, "event " + digits));
    ASSIGN_OR_RETURN(EventRecord e, EventFromJson(sequence, j));
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::optional<OperationRecord>> EtcdStore::FindOperation(const std::string& id) {
  auto range = client_->Get(options_.prefix + "operations/" + id, options_.timeout);
  if (!range.ok()) return range.status().WithContext("store: reading operation " + id);
  if (range->kvs.empty()) return std::optional<OperationRecord>();
  ASSIGN_OR_RETURN(json j, ParseRecord(range->kvs[0].value, "operation " + id));
  ASSIGN_OR_RETURN(OperationRecord op, OperationFromJson(id, j));
  return std::optional<OperationRecord>(std::move(op));
}

Result<std::set<std::string>> EtcdStore::DnsNames(const std::string& zone) {
  const std::string dir = options_.prefix + "dns/" + zone + "/";
  auto range = client_->GetPrefix(dir, 0, 0, options_.timeout);
  if (!range.ok()) return range.status().WithContext("store: reading DNS names of " + zone);
  std::set<std::string> out;
  for (const auto& kv : range->kvs) out.insert(kv.key.substr(dir.size()));
  return out;
}

}  // namespace regen
