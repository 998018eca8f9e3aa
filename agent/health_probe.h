// Health probes over the network: a TCP connect, or an HTTP GET expecting 2xx, to an instance's
// IPv4 address, bounded by the check's timeout. ProbeOnce blocks (any thread); the agent runs
// probes through a Prober so its main loop never waits on one. SocketProber is the real one (a
// few worker threads); tests may pass their own.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"
#include "config/service_spec.h"

namespace regen {

// One probe of `ip` per `check` (tcp: the connection is accepted; http: GET check.path answers
// with a 2xx status line), within check.timeout. OK, or UNAVAILABLE / DEADLINE_EXCEEDED /
// INVALID_ARGUMENT with a message naming the address and what went wrong (valid UTF-8, bounded:
// what the guest answered is quoted through SanitizeText).
Status ProbeOnce(const std::string& ip, const HealthCheck& check);

class Prober {
 public:
  using Done = std::function<void(Status)>;
  virtual ~Prober() = default;
  // Probes `ip` per `check` and calls `done` with the result, on a thread of the prober's choosing
  // (possibly the caller's). Thread-safe.
  virtual void Probe(const std::string& ip, const HealthCheck& check, Done done) = 0;
};

// Runs ProbeOnce on up to `max_threads` worker threads (started as needed); probes queue when all
// are busy. The destructor waits for the probes under way and drops the queued ones.
class SocketProber : public Prober {
 public:
  explicit SocketProber(size_t max_threads = 4);
  ~SocketProber() override;
  SocketProber(const SocketProber&) = delete;
  SocketProber& operator=(const SocketProber&) = delete;

  void Probe(const std::string& ip, const HealthCheck& check, Done done) override;

 private:
  void Work();

  const size_t max_threads_;
  Mutex mu_;
  std::condition_variable cv_;  // with mu_
  std::deque<std::function<void()>> queue_ GUARDED_BY(mu_);
  size_t idle_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ GUARDED_BY(mu_);
};

}  // namespace regen
