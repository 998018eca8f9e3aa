// Leader election through etcd's v3election service (the HA mode's active controller): Campaign
// blocks until this campaigner leads (with a deadline, cancellable from another thread), Leader,
// Proclaim, Resign, and an observer thread that reports every new leader. EtcdElection is
// thread-safe (one Campaign at a time per object); EtcdLeaderObserver: Start/Stop/destroy from
// one thread, its callback runs on the observer thread and must not Stop or destroy it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "etcd/etcd_client.h"

namespace grpc {
class ClientContext;
}

namespace regen::etcd {

// The campaigner's key while it leads: `key` (under `name`/) was created at `revision` and is
// attached to `lease`; when the lease ends, the key goes and the leadership with it. EtcdStore's
// write guard is (key, revision).
struct LeaderKey {
  std::string name;
  std::string key;
  int64_t revision = 0;
  int64_t lease = 0;
};

class EtcdElection {
 public:
  EtcdElection(std::shared_ptr<EtcdClient> client, std::string name)
      : client_(std::move(client)), name_(std::move(name)) {}

  // Becomes a candidate with `value` (e.g. the controller's address) under `lease` (kept alive by
  // the caller, EtcdKeepAlive) and blocks until it leads. DEADLINE_EXCEEDED after `timeout`,
  // UNAVAILABLE "cancelled" after CancelCampaign(); etcd then withdraws the candidacy. Fails over
  // to another member when one goes away while waiting.
  Result<LeaderKey> Campaign(const std::string& value, int64_t lease,
                             std::chrono::milliseconds timeout) EXCLUDES(mu_);
  // Ends the Campaign running now (any thread).
  void CancelCampaign() EXCLUDES(mu_);
  // The current leader's key and value; nullopt when there is none.
  Result<std::optional<KeyValue>> Leader(EtcdClient::Timeout timeout = std::nullopt);
  // Changes the leader's value without a new election (fails when `leader` no longer leads).
  Status Proclaim(const LeaderKey& leader, const std::string& value,
                  EtcdClient::Timeout timeout = std::nullopt);
  // Gives the leadership up (deletes the key); the next candidate leads.
  Status Resign(const LeaderKey& leader, EtcdClient::Timeout timeout = std::nullopt);

  const std::string& name() const { return name_; }

 private:
  std::shared_ptr<EtcdClient> client_;
  const std::string name_;
  Mutex mu_;
  bool cancelled_ GUARDED_BY(mu_) = false;
  grpc::ClientContext* campaign_ctx_ GUARDED_BY(mu_) = nullptr;
};

// Reports each new leader of an election (etcd's Observe stream), resuming on another member
// after a broken stream (the current leader is reported again then).
class EtcdLeaderObserver {
 public:
  using Callback = std::function<void(const KeyValue& leader)>;
  EtcdLeaderObserver(std::shared_ptr<EtcdClient> client, std::string name, Callback on_leader);
  ~EtcdLeaderObserver();
  EtcdLeaderObserver(const EtcdLeaderObserver&) = delete;
  EtcdLeaderObserver& operator=(const EtcdLeaderObserver&) = delete;
  void Stop() EXCLUDES(mu_);  // joins the thread; idempotent

 private:
  void Run();
  void RunStream() EXCLUDES(mu_);

  std::shared_ptr<EtcdClient> client_;
  const std::string name_;
  Callback on_leader_;
  Mutex mu_;
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  grpc::ClientContext* stream_ctx_ GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

}  // namespace regen::etcd
