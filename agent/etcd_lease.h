// The agent's own host lease in etcd (HA mode, agent.yaml `etcd:`): one thread grants an etcd
// lease of etcd.lease_ttl, puts <prefix>hosts/<host>/alive on it and renews it every
// etcd.renew_interval; each renewal renews the agent's fencing lease from the moment it was SENT.
// When etcd says the lease is gone (expired during a partition, or revoked) the agent fences at
// once and puts the key again (new lease, new revision) only once its managed domains are
// confirmed gone. Start/Stop from one thread; the views are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/agent.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "config/agent_config.h"
#include "etcd/etcd_client.h"

namespace regen {

// The etcd client options of agent.yaml's etcd block (reads etcd.password_file).
Result<etcd::EtcdOptions> AgentEtcdOptions(const AgentEtcdConfig& config);

class EtcdLease {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  // `config.etcd` must be set. `agent` must outlive this object.
  EtcdLease(const AgentConfig& config, Agent& agent, Clock& clock);
  ~EtcdLease();  // Stop()
  EtcdLease(const EtcdLease&) = delete;
  EtcdLease& operator=(const EtcdLease&) = delete;

  void Start();
  // Ends the thread. The etcd lease is left to expire (a restarted agent puts the key again).
  void Stop();

  // <prefix>hosts/<host>/alive.
  const std::string& key() const { return key_; }
  // The etcd revision of the latest Put of the key while it stands on a live lease; 0 before the
  // first Put and from when etcd said the lease is gone until the key is put again.
  int64_t revision() const { return revision_.load(); }
  int64_t lease_id() const { return lease_id_.load(); }
  int64_t renewals() const { return renewals_.load(); }
  // Waits until revision() > 0, Stop() or `until`; returns revision().
  int64_t WaitRegistered(SteadyTime until);
  // For the controller link, before each Hello (the controller trusts that the key exists): waits
  // until the key is put (true), or `stop` or Stop() (false), saying every few seconds why no
  // Hello goes out.
  bool AwaitKey(const std::atomic<bool>& stop);
  // For `regen-agent status`: lease id, revision, last renewal age, renewals, last error.
  nlohmann::json StatusJson() const;

 private:
  void Run();
  // Waits until `until` or Stop(); true when stopped.
  bool WaitStopped(SteadyTime until);
  // The same after a failure, meanwhile driving the channels' connection attempts: a sync gRPC
  // client makes progress on a connection only while some thread polls it, and short failed
  // calls alone would never let a new connection finish its handshake.
  bool WaitConnecting(SteadyTime until);
  // Grants a lease and puts the key on it; false (and a rate-limited warning) on failure.
  bool Register();
  // One KeepAliveOnce; handles success (true), a lost lease and failures.
  bool RenewOnce();
  void LeaseGone(const std::string& how);
  // After a lost lease: may the key be put again (fence confirmed, or a maintenance hold)?
  bool MayRegister();
  void Warn(const std::string& what) REQUIRES(mu_);
  void SetError(const std::string& what);

  const AgentConfig config_;
  const AgentEtcdConfig& etcd_;  // *config_.etcd
  Agent& agent_;
  Clock& clock_;
  const std::string key_;
  const std::chrono::milliseconds call_timeout_;  // < renew_interval: one hung call never
                                                  // eats the lease
  std::shared_ptr<etcd::EtcdClient> client_;      // the thread's

  std::atomic<int64_t> revision_{0};
  std::atomic<int64_t> lease_id_{0};
  std::atomic<int64_t> renewals_{0};
  std::atomic<int64_t> registrations_{0};
  bool lost_once_ = false;  // thread: a lease was lost; re-registering waits for the fence
  // thread: since when every call failed (none: the last one succeeded); past
  // kFreshChannelsAfter the client is made anew.
  std::optional<SteadyTime> failing_since_;

  mutable Mutex mu_;
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::optional<Clock::TimePoint> last_renewal_ GUARDED_BY(mu_);
  std::string last_error_ GUARDED_BY(mu_);
  SteadyTime last_warn_ GUARDED_BY(mu_){};
  int64_t suppressed_ GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace regen
