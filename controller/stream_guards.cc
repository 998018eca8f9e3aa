#include "controller/stream_guards.h"

#include <grpcpp/server_context.h>

namespace regen {

HelloTimer::~HelloTimer() {
  std::thread thread;
  {
    MutexLock lock(mu_);
    stop_ = true;
    cv_.notify_all();
    thread = std::move(thread_);
  }
  if (thread.joinable()) thread.join();
}

void HelloTimer::Arm(grpc::ServerContextBase* context) {
  MutexLock lock(mu_);
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  armed_[context] = std::chrono::steady_clock::now() + timeout_;
  cv_.notify_all();
}

bool HelloTimer::Disarm(grpc::ServerContextBase* context) {
  MutexLock lock(mu_);
  armed_.erase(context);
  return fired_.erase(context) == 0;
}

void HelloTimer::Loop() {
  MutexLock lock(mu_);
  while (!stop_) {
    auto next = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    for (const auto& [context, deadline] : armed_) next = std::min(next, deadline);
    cv_.wait_until(lock.native(), next);
    auto now = std::chrono::steady_clock::now();
    for (auto it = armed_.begin(); it != armed_.end();) {
      if (it->second > now) {
        ++it;
        continue;
      }
      // Cancelling makes the handler's Read fail; the handler Disarms, which sees fired_.
      it->first->TryCancel();
      fired_.insert(it->first);
      it = armed_.erase(it);
    }
  }
}

}  // namespace regen
