#include "etcd/etcd_keepalive.h"

#include <algorithm>

namespace regen::etcd {

using std::chrono::milliseconds;

EtcdKeepAlive::EtcdKeepAlive(std::shared_ptr<EtcdClient> client, int64_t lease_id,
                             int64_t ttl_seconds, std::function<void(Status)> on_lost)
    : client_(std::move(client)),
      lease_id_(lease_id),
      ttl_(milliseconds(std::max<int64_t>(1, ttl_seconds) * 1000)),
      on_lost_(std::move(on_lost)) {
  {
    MutexLock lock(mu_);
    expiry_ = Clock::now() + ttl_;
  }
  thread_ = std::thread([this] { Run(); });
}

EtcdKeepAlive::~EtcdKeepAlive() { Stop(); }

void EtcdKeepAlive::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

EtcdKeepAlive::Clock::time_point EtcdKeepAlive::expiry() const {
  MutexLock lock(mu_);
  return expiry_;
}

bool EtcdKeepAlive::WaitStopped(Clock::time_point until) {
  MutexLock lock(mu_);
  while (!stop_ && Clock::now() < until) cv_.wait_until(lock.native(), until);
  return stop_;
}

void EtcdKeepAlive::Run() {
  const milliseconds period = std::max(milliseconds(100), ttl_ / 3);
  Status last_error;
  while (true) {
    Clock::time_point sent = Clock::now();
    Clock::time_point expiry = this->expiry();
    if (sent >= expiry) {
      lost_ = true;
      on_lost_(Unavailable(
          "etcd lease " + std::to_string(lease_id_) + ": no renewal succeeded for its whole TTL (" +
          std::to_string(ttl_.count()) + " ms); last error: " + last_error.ToString()));
      return;
    }
    // An attempt never runs past the expiry: a late answer would not save the lease.
    auto left = std::chrono::duration_cast<milliseconds>(expiry - sent);
    auto ttl = client_->KeepAliveOnce(lease_id_, std::clamp(left, milliseconds(1), period));
    if (ttl.ok() && *ttl <= 0) {
      lost_ = true;
      on_lost_(NotFound("etcd lease " + std::to_string(lease_id_) +
                        " is gone (expired or revoked): etcd answered TTL 0"));
      return;
    }
    Clock::time_point next;
    if (ttl.ok()) {
      ++renewals_;
      {
        MutexLock lock(mu_);
        expiry_ = sent + milliseconds(*ttl * 1000);
      }
      next = sent + period;
    } else {
      last_error = ttl.status();
      next = Clock::now() + milliseconds(200);
    }
    if (WaitStopped(next)) return;
  }
}

}  // namespace regen::etcd
