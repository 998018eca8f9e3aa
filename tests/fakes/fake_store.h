// Fakes of the controller's Store seam (controller/store.h): FakeStore keeps everything in memory
// with the same all-or-nothing transactions as SqliteStore; FaultyStore wraps any Store and fails
// a chosen write (the Nth transaction), as a full disk or a lock held too long would. Header-only;
// test thread only.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "controller/store.h"

namespace regen::testing {

class FakeStore : public Store {
 public:
  Result<StoreSnapshot> LoadAll() override {
    StoreSnapshot snap = data_.snapshot;
    snap.last_event_sequence = data_.events.empty() ? 0 : data_.events.back().sequence;
    return snap;
  }

  Status Transaction(const std::function<Status(StoreTxn&)>& body) override {
    Txn txn(data_);  // writes go to a copy, swapped in on success
    RETURN_IF_ERROR(body(txn));
    data_ = std::move(txn.data);
    ++commits_;
    return Status::Ok();
  }

  Result<std::vector<EventRecord>> EventsAfter(int64_t after, int64_t limit) override {
    std::vector<EventRecord> out;
    for (const auto& e : data_.events) {
      if (e.sequence > after && static_cast<int64_t>(out.size()) < limit) out.push_back(e);
    }
    return out;
  }

  Result<std::optional<OperationRecord>> FindOperation(const std::string& id) override {
    auto it = data_.all_operations.find(id);
    if (it == data_.all_operations.end()) return std::optional<OperationRecord>();
    return std::optional<OperationRecord>(it->second);
  }

  Result<std::set<std::string>> DnsNames(const std::string& zone) override {
    auto it = data_.dns_names.find(zone);
    return it == data_.dns_names.end() ? std::set<std::string>() : it->second;
  }

  int commits() const { return commits_; }

 private:
  struct Data {
    StoreSnapshot snapshot;
    std::map<std::string, OperationRecord> all_operations;
    std::vector<EventRecord> events;
    std::map<std::string, std::set<std::string>> dns_names;
  };

  class Txn : public StoreTxn {
   public:
    explicit Txn(const Data& d) : data(d) {}
    Status PutHost(const HostRecord& h) override {
      data.snapshot.hosts[h.name] = h;
      return Status::Ok();
    }
    Status PutService(const ServiceRecord& s) override {
      data.snapshot.services[s.name] = s;
      return Status::Ok();
    }
    Status DeleteService(const std::string& name) override {
      data.snapshot.services.erase(name);
      return Status::Ok();
    }
    Status PutInstance(const InstanceRecord& i) override {
      data.snapshot.instances[i.name] = i;
      return Status::Ok();
    }
    Status DeleteInstance(const std::string& name) override {
      data.snapshot.instances.erase(name);
      return Status::Ok();
    }
    Status PutOperation(const OperationRecord& op) override {
      data.all_operations[op.id] = op;
      if (op.state == "running") {
        data.snapshot.operations[op.id] = op;
      } else {
        data.snapshot.operations.erase(op.id);
      }
      return Status::Ok();
    }
    Status SetMeta(const std::string& key, const std::string& value) override {
      data.snapshot.meta[key] = value;
      return Status::Ok();
    }
    Result<int64_t> AppendEvent(EventRecord e) override {
      e.sequence = data.events.empty() ? 1 : data.events.back().sequence + 1;
      data.events.push_back(e);
      return e.sequence;
    }
    Status PutDnsName(const std::string& zone, const std::string& name) override {
      data.dns_names[zone].insert(name);
      return Status::Ok();
    }
    Status DeleteDnsName(const std::string& zone, const std::string& name) override {
      data.dns_names[zone].erase(name);
      return Status::Ok();
    }
    Data data;
  };

  Data data_;
  int commits_ = 0;
};

// Wraps a Store; transaction number `fail_at` (1-based, counted from construction) fails with
// UNAVAILABLE before anything of it is written; 0 = never. FailAll(true) fails every one until
// FailAll(false) (a full disk). Reads pass through.
class FaultyStore : public Store {
 public:
  FaultyStore(Store& inner, int fail_at) : inner_(inner), fail_at_(fail_at) {}

  Result<StoreSnapshot> LoadAll() override { return inner_.LoadAll(); }
  Status Transaction(const std::function<Status(StoreTxn&)>& body) override {
    if (++transactions_ == fail_at_ || fail_all_) {
      return Unavailable("store: injected failure of write " + std::to_string(transactions_) +
                         " (disk I/O error)");
    }
    return inner_.Transaction(body);
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
  int transactions() const { return transactions_; }
  void FailAll(bool on) { fail_all_ = on; }

 private:
  Store& inner_;
  int fail_at_;
  bool fail_all_ = false;
  int transactions_ = 0;
};

}  // namespace regen::testing
