// A standby controller's read-only view of the cluster (HA mode): the state stored in etcd, loaded
// into a throwaway in-memory Controller whose read methods build the answers, so a standby answers
// ListServices, GetService, ListInstances, ListHosts, UpgradeStatusGet and MaintenanceStatusGet
// exactly as the active controller would for the same stored state. The throwaway controller
// writes (what Load adds) only to its own memory: a standby never writes to etcd. The view is
// reused for max_age, and after that too while the store's counter key has not moved (every
// store transaction moves it). Thread-safe: any thread (gRPC threads); reads are serialized.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "config/controller_config.h"
#include "controller/controller.h"
#include "controller/etcd_store.h"
#include "etcd/etcd_client.h"

namespace regen {

class StandbyReads {
 public:
  // `timeout`: of each etcd call (a read on an unreachable etcd fails within about that).
  explicit StandbyReads(const ControllerConfig& config,
                        std::chrono::milliseconds max_age = std::chrono::milliseconds(250),
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  ~StandbyReads();
  StandbyReads(const StandbyReads&) = delete;
  StandbyReads& operator=(const StandbyReads&) = delete;

  // The etcd client, once the HA controller connected (null: not connected).
  void SetClient(std::shared_ptr<etcd::EtcdClient> client) EXCLUDES(mu_);
  bool connected() const EXCLUDES(mu_);

  // Runs `read` on a view of the stored state at most max_age old (or unchanged since), with
  // the etcd revision the view is known current at. FAILED_PRECONDITION when not connected;
  // UNAVAILABLE "cannot read the cluster state from etcd: ..." when etcd cannot be read (or the
  // stored state cannot be loaded).
  Status Read(const std::function<void(const Controller&, int64_t revision)>& read) EXCLUDES(mu_);

  // How many times the state was loaded from etcd (for tests and logs).
  int64_t loads() const EXCLUDES(mu_);

 private:
  struct View;
  // Makes view_ current: REQUIRES the lock.
  Status Refresh() REQUIRES(mu_);
  Status Reload(int64_t counter_revision, int64_t revision) REQUIRES(mu_);

  const ControllerConfig config_;
  const std::chrono::milliseconds max_age_;
  const std::chrono::milliseconds timeout_;
  mutable Mutex mu_;
  std::shared_ptr<etcd::EtcdClient> client_ GUARDED_BY(mu_);
  std::unique_ptr<EtcdStore> store_ GUARDED_BY(mu_);  // read-only: never a Transaction
  std::unique_ptr<View> view_ GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point checked_ GUARDED_BY(mu_);
  int64_t loads_ GUARDED_BY(mu_) = 0;
};

}  // namespace regen
