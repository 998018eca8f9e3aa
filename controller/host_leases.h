// The hosts' leases in HA mode (DESIGN "Liveness, fencing and high availability"): each agent keeps
// its own etcd lease and key <prefix>hosts/<host>/alive; the active controller reads them all once
// and then watches them here, and its main loop judges from a snapshot: a host whose key etcd
// deleted after the last put the controller knows of has fenced itself and is down. Controllers
// come and go without touching a lease. Thread-safe: the watch thread writes, any thread reads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "etcd/etcd_client.h"

namespace regen {

namespace etcd {
class EtcdWatch;
}

// What etcd said of one host's alive key.
struct HostLeaseRecord {
  int64_t put_revision = 0;     // the last put of the key (0: none seen)
  int64_t delete_revision = 0;  // the last deletion of the key (0: none seen)
  int64_t lease = 0;            // the lease of the last put
  bool alive() const { return put_revision > delete_revision; }
};

// The view the main loop judges from (a fake in unit tests).
class HostLeaseSource {
 public:
  virtual ~HostLeaseSource() = default;
  struct Snapshot {
    // The revision of the first full read: a host without a record had no key then (its lease
    // had expired, or it never had one), as if deleted at this revision.
    int64_t read_revision = 0;
    std::map<std::string, HostLeaseRecord> hosts;
  };
  virtual Snapshot Get() const = 0;
};

// Whether the lease of `host` is known gone: etcd deleted its alive key (or had none at the first
// read) after the last put known, from the watch or from the agent's Hello (`hello_revision`,
// which may be ahead of the watch). Sets *gone_revision to the deletion's revision.
bool LeaseGone(const HostLeaseSource::Snapshot& view, const std::string& host,
               int64_t hello_revision, int64_t* gone_revision);

// The host named by a key "<prefix>hosts/<host>/alive" ("" for any other key).
std::string HostOfAliveKey(const std::string& prefix, const std::string& key);
std::string AliveKey(const std::string& prefix, const std::string& host);

class HostLeaseWatch : public HostLeaseSource {
 public:
  // Reads every alive key under `prefix` and watches them from the revision after that read.
  // `on_broken` runs (on the watch thread) when the watch cannot go on: etcd compacted its
  // history past the revision to resume from; the view is then stale for good.
  static Result<std::unique_ptr<HostLeaseWatch>> Start(std::shared_ptr<etcd::EtcdClient> client,
                                                       std::string prefix,
                                                       std::chrono::milliseconds timeout,
                                                       std::function<void(Status)> on_broken);
  ~HostLeaseWatch() override;
  HostLeaseWatch(const HostLeaseWatch&) = delete;
  HostLeaseWatch& operator=(const HostLeaseWatch&) = delete;

  Snapshot Get() const override EXCLUDES(mu_);
  void Stop();

 private:
  HostLeaseWatch(std::shared_ptr<etcd::EtcdClient> client, std::string prefix);
  void OnEvent(bool put, const etcd::KeyValue& kv) EXCLUDES(mu_);

  std::shared_ptr<etcd::EtcdClient> client_;
  const std::string prefix_;
  mutable Mutex mu_;
  Snapshot view_ GUARDED_BY(mu_);
  std::unique_ptr<etcd::EtcdWatch> watch_;
};

}  // namespace regen
