// A synchronous client of etcd 3.4's own gRPC API (KV, Txn, Lease) for the HA mode: several
// endpoints with failover, optional TLS and user/password auth. Every call has a deadline and
// returns Result/Status. Thread-safe: any thread may call any method at once (watch, keep-alive
// and election live in etcd_watch.h, etcd_keepalive.h, etcd_election.h and share this client).
//
// Failover: a call that fails with UNAVAILABLE or an attempt's timeout goes to the next endpoint
// until its own deadline. etcd has no request ids, so a write retried after a connection was lost
// mid-call may already have been applied once: Put and DeleteRange are idempotent, and a Txn that
// compares revisions must recognise its own earlier write when its compare fails (EtcdStore
// writes a unique commit token for this).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "etcd/etcd_options.h"

namespace regen::etcd {

class EtcdChannels;

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  bool operator==(const KeyValue&) const = default;
};

struct RangeResult {
  std::vector<KeyValue> kvs;  // sorted by key
  int64_t revision = 0;       // the store's revision the range was read at
  bool more = false;          // a limit cut the result short
};

// One condition of a Txn. Keys that do not exist have version, create and mod revision 0.
struct Compare {
  enum class Target { kVersion, kCreateRevision, kModRevision, kValue };
  enum class Op { kEqual, kGreater, kLess, kNotEqual };
  std::string key;
  Target target = Target::kVersion;
  Op op = Op::kEqual;
  int64_t number = 0;  // version or revision
  std::string value;   // kValue

  static Compare CreateRevision(std::string key, Op op, int64_t revision);
  static Compare ModRevision(std::string key, Op op, int64_t revision);
  static Compare Version(std::string key, Op op, int64_t version);
  static Compare Value(std::string key, Op op, std::string value);
};

// One operation of a Txn branch.
struct TxnOp {
  enum class Kind { kPut, kDelete, kDeletePrefix, kGet, kGetPrefix };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;  // kPut
  int64_t lease = 0;  // kPut: attach to this lease (0 = none)

  static TxnOp Put(std::string key, std::string value, int64_t lease = 0);
  static TxnOp Delete(std::string key);
  static TxnOp DeletePrefix(std::string prefix);
  static TxnOp Get(std::string key);
  static TxnOp GetPrefix(std::string prefix);
};

struct TxnRequest {
  std::vector<Compare> compares;  // all must hold for `success` to run
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
};

struct TxnResult {
  bool succeeded = false;  // the compares held: `success` ran (else `failure`)
  int64_t revision = 0;    // the store's revision after the Txn
  // The results of the branch's kGet/kGetPrefix operations, in order.
  std::vector<RangeResult> reads;
};

struct LeaseGrant {
  int64_t id = 0;
  int64_t ttl_seconds = 0;
};

// etcd's default limits (--max-txn-ops, --max-request-bytes): a request over them is refused.
inline constexpr size_t kEtcdMaxTxnOps = 128;
inline constexpr size_t kEtcdMaxRequestBytes = 1536 * 1024;

// The end of the key range of every key starting with `prefix` (etcd's range_end).
std::string PrefixEnd(const std::string& prefix);

class EtcdClient {
 public:
  using Timeout = std::optional<std::chrono::milliseconds>;  // nullopt: options.default_timeout

  // Prepares the channels and, with a user, authenticates (any member that answers). Does not
  // otherwise wait for a member: a cluster that is down makes the first calls fail.
  static Result<std::shared_ptr<EtcdClient>> Connect(const EtcdOptions& options);

  Result<RangeResult> Get(const std::string& key, Timeout timeout = std::nullopt);
  // Every key starting with `prefix`, at most `limit` (0 = all), read at `revision` (0 = latest).
  Result<RangeResult> GetPrefix(const std::string& prefix, int64_t limit = 0, int64_t revision = 0,
                                Timeout timeout = std::nullopt);
  // The key range [key, range_end), as etcd's RangeRequest.
  Result<RangeResult> Range(const std::string& key, const std::string& range_end, int64_t limit,
                            int64_t revision, Timeout timeout = std::nullopt);
  // Returns the store's revision after the write.
  Result<int64_t> Put(const std::string& key, const std::string& value, int64_t lease = 0,
                      Timeout timeout = std::nullopt);
  // Returns how many keys were deleted.
  Result<int64_t> Delete(const std::string& key, Timeout timeout = std::nullopt);
  Result<int64_t> DeletePrefix(const std::string& prefix, Timeout timeout = std::nullopt);
  // Refuses (INVALID_ARGUMENT, nothing sent) a Txn over kEtcdMaxTxnOps operations in a branch or
  // kEtcdMaxRequestBytes in all.
  Result<TxnResult> Txn(const TxnRequest& txn, Timeout timeout = std::nullopt);

  Result<LeaseGrant> GrantLease(int64_t ttl_seconds, Timeout timeout = std::nullopt);
  // Deletes every key attached to the lease. NOT_FOUND when it expired already.
  Status RevokeLease(int64_t id, Timeout timeout = std::nullopt);
  // One renewal; returns the new TTL, 0 when the lease expired or was revoked.
  Result<int64_t> KeepAliveOnce(int64_t id, Timeout timeout = std::nullopt);
  // Seconds the lease has left, -1 when it is gone.
  Result<int64_t> LeaseTimeToLive(int64_t id, Timeout timeout = std::nullopt);

  const EtcdOptions& options() const;
  // For etcd_watch, etcd_keepalive, etcd_election.
  EtcdChannels& channels() { return *channels_; }

 private:
  explicit EtcdClient(std::shared_ptr<EtcdChannels> channels) : channels_(std::move(channels)) {}
  std::chrono::milliseconds Resolve(Timeout timeout) const;

  std::shared_ptr<EtcdChannels> channels_;
};

}  // namespace regen::etcd
