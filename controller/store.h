// The controller's durable state behind the `Store` seam: SqliteStore (controller/sqlite_store.cc,
// the only SQLite user, WAL mode), EtcdStore (controller/etcd_store.h, the HA mode) and an
// in-memory fake in tests/fakes/fake_store.h. Every state change is one Transaction; after a
// restart LoadAll() returns what was committed. A Store is used from the controller's main thread
// only (not thread-safe).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/model.h"
#include "common/status.h"
#include "controller/host_index.h"
#include "controller/states.h"

namespace regen {

struct HostRecord {
  std::string name;
  std::string address;
  Resources capacity;
  HostState state = HostState::kUp;
  int64_t last_heartbeat_unix_ms = 0;
  int64_t applied_topology_revision = 0;
  // The libvirt domain type the agent's last Hello reported ("" before one), and why.
  std::string domain_type{};
  std::string domain_type_reason{};
  // What the operator made the host (up, cordoned or draining): the state it comes back to after
  // it was suspect or down.
  HostState held = HostState::kUp;
  bool operator==(const HostRecord&) const = default;
};

struct ServiceRecord {
  std::string name;
  std::string spec_yaml;   // as applied; re-parsed on load
  std::string version;     // current version
  int64_t generation = 0;  // bumped at every apply
  bool operator==(const ServiceRecord&) const = default;
};

struct InstanceRecord {
  std::string name;
  std::string service;
  int64_t index = 0;
  int64_t update_domain = 0;
  std::string version;
  int64_t generation = 0;
  Allocation allocation;  // host empty while pending
  InstanceState state = InstanceState::kPending;
  std::string reason;
  // A planned move (failover, drain): the host the instance leaves. The new host creates it only
  // once this host no longer runs it (never two copies). Empty otherwise.
  std::string moving_from;
  bool operator==(const InstanceRecord&) const = default;
};

// An operation in flight (heal, failover, drain, upgrade step); resumed after a restart.
struct OperationRecord {
  std::string id;
  std::string kind;     // heal | failover | drain | deploy | upgrade
  std::string subject;  // instance, host or service
  std::string payload_json;
  std::string state = "running";  // running | done | failed
  int64_t created_unix_ms = 0;
  int64_t updated_unix_ms = 0;
  bool operator==(const OperationRecord&) const = default;
};

struct EventRecord {
  int64_t sequence = 0;  // assigned by the store
  int64_t unix_ms = 0;
  EventKind kind = EventKind::kHostState;
  std::string service;
  std::string instance;
  std::string host;
  std::string message;
  std::string json;
  bool operator==(const EventRecord&) const = default;
};

struct StoreSnapshot {
  std::map<std::string, HostRecord> hosts;
  std::map<std::string, ServiceRecord> services;
  std::map<std::string, InstanceRecord> instances;
  std::map<std::string, OperationRecord> operations;  // not yet done
  std::map<std::string, std::string> meta;
  int64_t last_event_sequence = 0;
};

// The writes of one transaction, applied all or nothing.
class StoreTxn {
 public:
  virtual ~StoreTxn() = default;
  virtual Status PutHost(const HostRecord& host) = 0;
  virtual Status PutService(const ServiceRecord& service) = 0;
  virtual Status DeleteService(const std::string& name) = 0;
  virtual Status PutInstance(const InstanceRecord& instance) = 0;
  virtual Status DeleteInstance(const std::string& name) = 0;
  virtual Status PutOperation(const OperationRecord& op) = 0;
  virtual Status SetMeta(const std::string& key, const std::string& value) = 0;
  // Assigns and returns the event's sequence number.
  virtual Result<int64_t> AppendEvent(EventRecord event) = 0;
  // The DNS names the controller may have published A records of in `zone` (controller/
  // dns_wiring.h): added before an update that writes them can be sent, removed once the server
  // acknowledged their deletion. Both are idempotent.
  virtual Status PutDnsName(const std::string& zone, const std::string& name) = 0;
  virtual Status DeleteDnsName(const std::string& zone, const std::string& name) = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  virtual Result<StoreSnapshot> LoadAll() = 0;
  // Runs `body`; commits if it returns OK, rolls back otherwise (and on a commit failure).
  virtual Status Transaction(const std::function<Status(StoreTxn&)>& body) = 0;
  // Events with sequence > after, oldest first, at most `limit`.
  virtual Result<std::vector<EventRecord>> EventsAfter(int64_t after, int64_t limit) = 0;
  // Whether an operation id was already applied (done or running): idempotency of RPCs.
  virtual Result<std::optional<OperationRecord>> FindOperation(const std::string& id) = 0;
  // The names PutDnsName recorded for `zone` (other zones' names are not returned).
  virtual Result<std::set<std::string>> DnsNames(const std::string& zone) = 0;
  // Whether a refused Transaction must end the process. False (SQLite, the fakes): the controller
  // stays up, keeps renewing the agents' leases and re-reads the store before its next write
  // (ControllerCore::Commit). True (etcd, HA mode): a refusal there means this controller lost
  // its leadership or cannot know what etcd applied; it exits and a standby, whose agents hold
  // their leases in etcd, takes over.
  virtual bool FailedWritesAreFatal() const { return false; }
};

// Opens (creating if needed) the SQLite database at `path` in WAL mode.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace regen
