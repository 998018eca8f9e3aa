// Bounds on what a caller can hold on the controller before and after authenticating: a Hello
// deadline for agent streams (a connection that never says who it is is cancelled), and a count
// limit for long-lived streams (pending Hellos, `events --follow`). Used by the gRPC handlers
// (controller/server.cc); any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <set>
#include <thread>

#include "common/thread_annotations.h"

namespace grpc {
class ServerContextBase;
}

namespace regen {

// The limits the server applies; defaults for a real cluster, tests shorten them.
struct StreamLimits {
  std::chrono::milliseconds hello_timeout{10000};  // Connect -> first message (hello)
  int max_pending_hellos = 256;                    // streams that have not said hello yet
  int max_event_followers = 64;                    // concurrent `events --follow` streams
  size_t max_agent_queue_bytes = 256u << 20;       // unsent messages to one agent
};

// Cancels the streams registered with Arm that are not Disarmed within their timeout. One
// thread of its own (started lazily, stopped by the destructor).
class HelloTimer {
 public:
  explicit HelloTimer(std::chrono::milliseconds timeout) : timeout_(timeout) {}
  ~HelloTimer();
  HelloTimer(const HelloTimer&) = delete;
  HelloTimer& operator=(const HelloTimer&) = delete;

  void Arm(grpc::ServerContextBase* context);
  // False when the timer already cancelled the stream.
  bool Disarm(grpc::ServerContextBase* context);

 private:
  void Loop();
  const std::chrono::milliseconds timeout_;
  Mutex mu_;
  std::condition_variable cv_;
  std::map<grpc::ServerContextBase*, std::chrono::steady_clock::time_point> armed_ GUARDED_BY(mu_);
  std::set<grpc::ServerContextBase*> fired_ GUARDED_BY(mu_);  // cancelled, not yet disarmed
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_ GUARDED_BY(mu_);
};

// A counting limit: Take() succeeds while fewer than `max` are held.
class StreamSlots {
 public:
  explicit StreamSlots(int max) : max_(max) {}
  bool Take() {
    MutexLock lock(mu_);
    if (held_ >= max_) return false;
    ++held_;
    return true;
  }
  void Give() {
    MutexLock lock(mu_);
    --held_;
  }
  int max() const { return max_; }

 private:
  const int max_;
  Mutex mu_;
  int held_ GUARDED_BY(mu_) = 0;
};

// Holds one slot for a scope (`held()` false when none was free).
class SlotGuard {
 public:
  explicit SlotGuard(StreamSlots& slots) : slots_(slots), held_(slots.Take()) {}
  ~SlotGuard() { Release(); }
  SlotGuard(const SlotGuard&) = delete;
  SlotGuard& operator=(const SlotGuard&) = delete;
  bool held() const { return held_; }
  void Release() {
    if (held_) slots_.Give();
    held_ = false;
  }

 private:
  StreamSlots& slots_;
  bool held_;
};

}  // namespace regen
