// Keeps one etcd lease alive from a background thread: a renewal every TTL/3 (after a failure, one
// every 200 ms on the next endpoint), and one report when the lease is lost. Construct, Stop and
// destroy from any one thread; `on_lost` runs on the keep-alive thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <thread>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "etcd/etcd_client.h"

namespace regen::etcd {

class EtcdKeepAlive {
 public:
  using Clock = std::chrono::steady_clock;
  // Starts renewing `lease_id` (granted just now with `ttl_seconds`). `on_lost(status)` is called
  // at most once, when etcd answers that the lease is gone (expired or revoked) or when no renewal
  // succeeded for a whole TTL since the last one (the lease must then be taken as expired); the
  // thread ends after it. It must not call Stop() or destroy this object.
  EtcdKeepAlive(std::shared_ptr<EtcdClient> client, int64_t lease_id, int64_t ttl_seconds,
                std::function<void(Status)> on_lost);
  ~EtcdKeepAlive();
  EtcdKeepAlive(const EtcdKeepAlive&) = delete;
  EtcdKeepAlive& operator=(const EtcdKeepAlive&) = delete;

  // Ends the renewals (the lease is left to expire; revoke it with EtcdClient::RevokeLease) and
  // joins the thread. Idempotent.
  void Stop() EXCLUDES(mu_);
  bool lost() const { return lost_.load(); }
  // When the lease expires at the latest given the renewals that succeeded (steady clock).
  Clock::time_point expiry() const EXCLUDES(mu_);
  int64_t renewals() const { return renewals_.load(); }

 private:
  void Run();
  // Waits until `until` or Stop(); true when stopped.
  bool WaitStopped(Clock::time_point until) EXCLUDES(mu_);

  std::shared_ptr<EtcdClient> client_;
  const int64_t lease_id_;
  const std::chrono::milliseconds ttl_;
  std::function<void(Status)> on_lost_;
  mutable Mutex mu_;
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  Clock::time_point expiry_ GUARDED_BY(mu_);
  std::atomic<bool> lost_{false};
  std::atomic<int64_t> renewals_{0};
  std::thread thread_;
};

}  // namespace regen::etcd
