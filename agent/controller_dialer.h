// Finds the active controller among the agent's controller addresses (HA, issue 14): dials every
// address at once, offers the first that accepts a connection (the one a standby named first,
// then the last one that answered, then the list's order), and dials each refused or standby
// address again on its own schedule (every 100 ms while the lease runs). Next and the reports run
// on the link's thread; Snapshot from any thread.
#pragma once

// Before grpcpp (see tests/unit/ctl/regenctl_test_fixture.h).
#include "common/thread_annotations.h"

#include <grpcpp/channel.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace regen {

class ControllerDialer {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  struct Hooks {
    // A new channel to `address` (its own subchannel; TLS files read now); null: cannot be built
    // (`*why` says why).
    std::function<std::shared_ptr<grpc::Channel>(const std::string& address, std::string* why)>
        make_channel;
    // Waits until `until` or until woken for Stop(); the link's condition variable.
    std::function<void(SteadyTime until)> wait_until;
    std::function<bool()> stopped;
    // True while the agent's lease (or a hold) runs: failed addresses are dialled again every
    // kRetry; after it, with backoff up to kMaxRetry.
    std::function<bool()> lease_running;
    // Called once each time every address has failed since the last answered session, with what
    // each said.
    std::function<void(const std::string& summary)> on_all_failed;
  };
  struct Ready {
    size_t index = 0;
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
  };
  // How an address shows in `regen-agent status`.
  struct View {
    std::string address;
    std::string state;  // "connected", "standby (active at X)", "connection refused ...", ...
  };

  static constexpr std::chrono::milliseconds kRetry{100};
  static constexpr std::chrono::milliseconds kMaxRetry{1000};
  // One connection attempt (TCP and TLS handshake) may take this long.
  static constexpr std::chrono::milliseconds kDialWindow{500};

  ControllerDialer(std::vector<std::string> addresses, Hooks hooks);

  const std::vector<std::string>& addresses() const { return addresses_; }
  // Blocks until an address accepts a connection (nullopt: stopped). Counts each dial.
  std::optional<Ready> Next(std::atomic<int64_t>* dial_attempts);
  // What the offered address turned out to be:
  // a standby naming `active` ("" = unknown): dialled again after kRetry, and `active` at once
  // (and offered first) when it is one of the addresses;
  void Standby(size_t index, const std::string& active);
  // the active controller: it answered the Hello (any thread);
  void Connected(size_t index);
  // its session ended: it is offered first from now on, and every address is dialled again at
  // once;
  void SessionEnded(size_t index);
  // no session, or one that ended unanswered (`why` says how): dialled again after kRetry.
  void Failed(size_t index, const std::string& why);
  // The address of the live session ("" if none) and what each address said last.
  std::string connected() const;
  std::vector<View> Snapshot() const;

 private:
  struct Target {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;  // dialling, or a standby's kept channel
    SteadyTime dial_started{};
    SteadyTime retry_at{};  // not offered nor dialled before
    int64_t failures = 0;   // in a row
    bool failed = false;    // since the last answered session
  };
  void DialDue(SteadyTime now, std::atomic<int64_t>* dial_attempts);
  // The first offerable address in preference order; settles channels that failed.
  std::optional<size_t> PickReady(SteadyTime now);
  void WaitForChange(SteadyTime now);
  void Fail(Target& t, const std::string& why, SteadyTime now);
  std::chrono::milliseconds RetryDelay(const Target& t) const;
  void SetState(size_t index, std::string state);
  void CheckAllFailed();

  const std::vector<std::string> addresses_;
  Hooks hooks_;
  std::vector<Target> targets_;
  std::optional<size_t> redirect_;   // a standby named it: offered first once
  std::optional<size_t> preferred_;  // the last one that answered
  bool all_failed_reported_ = false;
  std::set<std::string> unlisted_warned_;  // active addresses named by standbys, not listed

  mutable Mutex mu_;
  std::vector<std::string> states_ GUARDED_BY(mu_);
  std::string connected_ GUARDED_BY(mu_);
};

}  // namespace regen
