// The HA mode's life of one regen-controller (controller.yaml store: etcd): it listens as a
// standby (controller/ha_standby.h), connects to etcd (retrying, never giving up, while etcd is
// unreachable), holds an etcd lease of etcd.election_ttl for its candidacy and campaigns; once
// elected it hands out an EtcdStore guarded by its election key. From then on a lost lease, a
// lease about to run out unrenewed, or a write refused by the guard ends the process at once
// (Deposed: exit status 75; systemd restarts it as a standby): a deposed controller neither
// writes nor acknowledges heartbeats.
// Threads: WaitUntilActive, Resign and the destructor from the daemon's main thread; Stop,
// ActiveAddress and active from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "config/controller_config.h"
#include "controller/etcd_store.h"
#include "controller/ha_standby.h"
#include "controller/store.h"
#include "etcd/etcd_client.h"
#include "etcd/etcd_election.h"
#include "etcd/etcd_keepalive.h"

namespace regen {

// The exit status of a deposed controller (EX_TEMPFAIL): not a configuration error, restart it.
inline constexpr int kDeposedExitCode = 75;
// Logs critical "deposed: WHY" and ends the process at once (_Exit, no destructors: nothing more
// may be written or acknowledged). Any thread.
[[noreturn]] void Deposed(const std::string& why);

// etcd's client options from controller.yaml's etcd block (the password read from its file).
Result<etcd::EtcdOptions> EtcdOptionsFromConfig(const EtcdConfig& config);

class HaController {
 public:
  explicit HaController(const ControllerConfig& config);
  ~HaController();
  HaController(const HaController&) = delete;
  HaController& operator=(const HaController&) = delete;

  // Listens on listen_address as a standby. Errors: the address cannot be bound.
  Status StartStandby();
  // Connects to etcd and campaigns (StartStandby first); returns once this controller leads,
  // with the standby stopped (listen_address free for the ControllerServer) and the store the
  // controller must use (valid until this object goes; a write refused by the guard ends the
  // process). Errors: UNAVAILABLE "stopped" after Stop(); the etcd settings cannot be used
  // (password file).
  Result<Store*> WaitUntilActive();
  // Ends WaitUntilActive (any thread, e.g. on SIGTERM).
  void Stop() EXCLUDES(mu_);
  // Gives the candidacy or the leadership up: stops renewing and revokes the lease, so a standby
  // takes over at once. Call after the ControllerServer stopped.
  void Resign();

  // The active controller's advertise_address as the election reports it; "" while unknown.
  std::string ActiveAddress() const EXCLUDES(mu_);
  bool active() const { return active_.load(); }
  // The etcd client (valid once WaitUntilActive returned a store): for the hosts' leases.
  std::shared_ptr<etcd::EtcdClient> client() const { return client_; }
  bool stopped() const EXCLUDES(mu_);  // Stop() was called
  // Active and the election lease is not about to run out unrenewed (the fuse's rule): heartbeats
  // may be acknowledged. Any thread, cheap.
  bool Leading() const;
  // The election key this controller leads with (valid once active).
  const etcd::LeaderKey& leader() const { return leader_; }

 private:
  Status ConnectEtcd() EXCLUDES(mu_);
  // A new lease and its keep-alive (after a start or a lost lease while standby).
  Status NewLease();
  Result<etcd::LeaderKey> Campaign() EXCLUDES(mu_);
  Status OpenStore();
  void OnLeaseLost(const Status& status) EXCLUDES(mu_);
  // The fuse: ends the process when the lease would run out unrenewed (active only).
  void FuseLoop() EXCLUDES(mu_);
  // Waits `d` or until Stop(); true when stopped.
  bool WaitStopped(std::chrono::milliseconds d) EXCLUDES(mu_);

  const ControllerConfig config_;
  const std::string election_name_;  // <prefix>election
  std::unique_ptr<StandbyServer> standby_;
  std::shared_ptr<etcd::EtcdClient> client_;
  std::unique_ptr<etcd::EtcdLeaderObserver> observer_;
  std::unique_ptr<etcd::EtcdKeepAlive> keepalive_;
  int64_t lease_id_ = 0;
  int64_t lease_ttl_ = 0;  // seconds, as granted
  etcd::LeaderKey leader_;
  std::unique_ptr<EtcdStore> etcd_store_;
  std::unique_ptr<Store> store_;  // etcd_store_, deposing on a refused write
  std::atomic<bool> active_{false};

  mutable Mutex mu_;
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool fuse_stop_ GUARDED_BY(mu_) = false;
  std::string active_address_ GUARDED_BY(mu_);
  // Created before the campaign loop, kept until destruction (Stop cancels its Campaign).
  std::shared_ptr<etcd::EtcdElection> election_ GUARDED_BY(mu_);
  std::thread fuse_;
};

}  // namespace regen
