// EtcdStore: the controller's Store (controller/store.h) in etcd, for the HA mode. Every
// Transaction is one etcd Txn guarded by the active controller's election key, so a deposed
// controller can never write. Used from the controller's main thread only, like every Store
// (SetWriteGuard/ClearWriteGuard may also be called from another thread).
//
// Keys under the prefix (default "/regen/"), values JSON as controller/store_codec.h encodes them:
//   hosts/<name>  services/<name>  instances/<name>  operations/<id>
//   meta/<key> (raw value; the key may have '/': upgrade/<service>)
//   events/<sequence, 20 digits>  dns/<zone>/<name> (empty value)
//   counter: {"last_event": N, "commit": "<token of the last transaction>"}
// Keys below a record's key outside meta/ (DESIGN's agent lease key hosts/<host>/alive) are not the
// store's: LoadAll leaves them out, and a role limited to hosts/<host>/ cannot touch the host's
// record. Each Transaction: the body's writes are buffered (the last write of a key wins), then
// sent as one Txn: compare [guard key's create_revision == the guard's revision] and [counter's
// mod_revision == the one this store last saw]; success = the writes + the counter (new last
// event, a unique commit token); failure = read the guard key and the counter. Outcomes:
//   - committed: OK.
//   - the guard key is gone or was re-created: FAILED_PRECONDITION "not the active controller
//     (election key ... changed)", nothing written.
//   - only the counter moved (another writer under the same guard, or this store's first write
//     after another controller's): the counter is re-read and the body runs again (at most 3
//     times), so a body must only write through its StoreTxn.
//   - the commit token found in the counter after a lost connection: the Txn was applied, OK.
//   - over etcd's limits (128 operations, 1.5 MiB including the counter): INVALID_ARGUMENT, the
//     transaction is not split.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/thread_annotations.h"
#include "controller/store.h"
#include "etcd/etcd_client.h"

namespace regen {

struct EtcdStoreOptions {
  std::string prefix = "/regen/";           // ends with '/'
  std::chrono::milliseconds timeout{5000};  // of each etcd call
};

class EtcdStore : public Store {
 public:
  // Reads the counter (not the records: LoadAll does). Errors: etcd unreachable, a corrupt counter.
  static Result<std::unique_ptr<EtcdStore>> Open(std::shared_ptr<etcd::EtcdClient> client,
                                                 EtcdStoreOptions options = {});

  // From now on a Transaction commits only while `key` exists with this create revision: the
  // election leader key of this controller (etcd::LeaderKey key/revision).
  void SetWriteGuard(const std::string& key, int64_t create_revision) EXCLUDES(mu_);
  // Writes unguarded again (single-writer tools and tests).
  void ClearWriteGuard() EXCLUDES(mu_);

  Result<StoreSnapshot> LoadAll() override;
  bool FailedWritesAreFatal() const override { return true; }
  Status Transaction(const std::function<Status(StoreTxn&)>& body) override;
  Result<std::vector<EventRecord>> EventsAfter(int64_t after, int64_t limit) override;
  Result<std::optional<OperationRecord>> FindOperation(const std::string& id) override;
  Result<std::set<std::string>> DnsNames(const std::string& zone) override;

  const std::string& prefix() const { return options_.prefix; }

 private:
  struct Guard {
    std::string key;
    int64_t create_revision = 0;
  };
  struct Counter {
    int64_t last_event = 0;
    int64_t mod_revision = 0;  // 0: no counter yet
    std::string commit;
  };
  class Buffer;

  EtcdStore(std::shared_ptr<etcd::EtcdClient> client, EtcdStoreOptions options);
  std::optional<Guard> guard() const EXCLUDES(mu_);
  Result<Counter> ReadCounter(int64_t revision);
  static Result<Counter> ParseCounter(const etcd::RangeResult& range);
  // One attempt: OK, or the reason it did not commit; `retry` is set when the counter moved.
  Status TryCommit(const Buffer& buffer, const std::optional<Guard>& guard, bool* retry);
  Status CheckAppliedAfterError(const Status& error, const std::string& token, int64_t last_event);
  std::string NewToken();

  std::shared_ptr<etcd::EtcdClient> client_;
  EtcdStoreOptions options_;
  Counter counter_;  // main thread: as of this store's last read or commit
  std::string store_id_;
  int64_t commits_ = 0;
  mutable Mutex mu_;
  std::optional<Guard> guard_ GUARDED_BY(mu_);
};

}  // namespace regen
