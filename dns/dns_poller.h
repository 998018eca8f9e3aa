// The DNS poller of the agent: resolves the names of the services that have an instance on this
// host every interval and reports each name whose addresses changed, so the agent can tell the
// local instances. Resolver is the seam (c-ares in cares_resolver.cc, a fake in tests);
// DetectAddressChanges is the pure decision. DnsPoller's methods are thread-safe; callbacks run
// on the thread that polls.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace regen::dns {

// The answer for one name.
struct LookupResult {
  // OK: the server answered; `addresses` is the A RRset (empty for NXDOMAIN or no A records).
  // An error: no usable answer (timeout, SERVFAIL, REFUSED): the name's addresses are unknown.
  Status status;
  std::vector<std::string> addresses;  // dotted IPv4, sorted, unique
};

class Resolver {
 public:
  virtual ~Resolver() = default;
  // Looks up the A records of every name at once; returns one result per name. Blocks up to the
  // implementation's timeout. One caller at a time.
  virtual std::map<std::string, LookupResult> ResolveAll(const std::vector<std::string>& names) = 0;
};

// A name whose A records changed between two polls.
struct AddressChange {
  std::string name;
  std::vector<std::string> old_addresses;  // sorted
  std::vector<std::string> new_addresses;  // sorted; empty when the name is gone
  bool operator==(const AddressChange&) const = default;
};

// Addresses last seen per name.
using KnownAddresses = std::map<std::string, std::vector<std::string>>;

// Compares a poll's results with `known` and updates `known`. Rules:
//  - a name seen for the first time sets the baseline and is no change (the agent knows no
//    earlier address to compare with);
//  - a failed lookup changes nothing (no flapping when the server is slow or down);
//  - a successful answer with other addresses (fewer, more, none at all) is a change;
//  - names not in `results` are forgotten (no longer watched).
// Addresses are compared as sets; the order the server returns them in does not matter.
std::vector<AddressChange> DetectAddressChanges(const std::map<std::string, LookupResult>& results,
                                                KnownAddresses* known);

struct DnsPollerOptions {
  std::chrono::milliseconds interval{5000};  // agent.yaml dns_poll_interval
};

class DnsPoller {
 public:
  using ChangeCallback = std::function<void(const AddressChange& change)>;

  // `resolver` must outlive the poller.
  DnsPoller(Resolver& resolver, DnsPollerOptions options, ChangeCallback on_change);
  ~DnsPoller();  // Stop()s
  DnsPoller(const DnsPoller&) = delete;
  DnsPoller& operator=(const DnsPoller&) = delete;

  // The names to watch from the next poll on (absolute or not, as the resolver takes them). When
  // a name is new, the worker (Start) polls at once instead of at the end of its interval: a
  // name's first answer is its baseline, and one taken late would hide a change made meanwhile.
  void SetNames(std::set<std::string> names);
  // Resolves every watched name now, calls on_change for each change and returns the changes.
  std::vector<AddressChange> PollOnce();
  // Addresses last seen (for status output and tests).
  KnownAddresses Known() const;
  int64_t polls() const;

  // A thread that polls now and then every interval (real time); Stop() joins it.
  void Start();
  void Stop();

 private:
  Resolver& resolver_;
  const DnsPollerOptions options_;
  const ChangeCallback on_change_;

  Mutex poll_mu_ ACQUIRED_BEFORE(mu_);  // one poll at a time; taken before mu_
  mutable Mutex mu_;
  std::condition_variable wake_;  // with mu_
  std::set<std::string> names_ GUARDED_BY(mu_);
  KnownAddresses known_ GUARDED_BY(mu_);
  int64_t polls_ GUARDED_BY(mu_) = 0;
  bool stopping_ GUARDED_BY(mu_) = false;
  bool poll_now_ GUARDED_BY(mu_) = false;  // a new name waits for its baseline
  std::thread worker_;  // started under mu_ by Start(); joined by Stop()
};

}  // namespace regen::dns
