// Watches every key under a prefix from a background thread: one callback per event, in revision
// order; after a broken stream it resumes on the next endpoint from the revision after the last
// event it delivered (nothing lost, nothing twice). Start, Stop and destroy from any one thread;
// the callbacks run on the watch thread and must not call Stop() or destroy the watch.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "etcd/etcd_client.h"

namespace grpc {
class ClientContext;
}

namespace regen::etcd {

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for a delete: the key and the deletion's revision (mod_revision)
};

class EtcdWatch {
 public:
  using EventCallback = std::function<void(const WatchEvent&)>;
  // Called at most once, when the watch cannot go on: etcd compacted its history past the
  // revision to resume from (the caller must re-read and watch again). The thread then ends.
  using BrokenCallback = std::function<void(Status)>;

  // Watches `prefix` from `start_revision` (0 = changes after now). Returns once etcd confirmed
  // the watch, or an error when no member did within `timeout`.
  static Result<std::unique_ptr<EtcdWatch>> Start(std::shared_ptr<EtcdClient> client,
                                                  std::string prefix, int64_t start_revision,
                                                  EventCallback on_event, BrokenCallback on_broken,
                                                  std::chrono::milliseconds timeout);
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  void Stop() EXCLUDES(mu_);  // joins the thread; idempotent
  // Streams opened after the first (reconnections).
  int64_t reconnects() const { return reconnects_.load(); }

 private:
  EtcdWatch(std::shared_ptr<EtcdClient> client, std::string prefix, int64_t start_revision,
            EventCallback on_event, BrokenCallback on_broken);
  void Run();
  // One stream until it breaks; false when the watch must end (stopped or broken for good).
  bool RunStream(int attempt) EXCLUDES(mu_);
  bool Stopped() EXCLUDES(mu_);

  std::shared_ptr<EtcdClient> client_;
  const std::string prefix_;
  EventCallback on_event_;
  BrokenCallback on_broken_;
  int64_t next_revision_;  // watch thread only: where a new stream starts
  mutable Mutex mu_;
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool created_ GUARDED_BY(mu_) = false;
  grpc::ClientContext* stream_ctx_ GUARDED_BY(mu_) = nullptr;
  std::atomic<int64_t> reconnects_{0};
  std::thread thread_;
};

}  // namespace regen::etcd
