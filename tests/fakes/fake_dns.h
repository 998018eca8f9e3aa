// Fakes for the DNS seams (dns/dns_updater.h, dns/dns_poller.h): an updater that applies updates
// to an in-memory zone and can be told to fail or to block, and a resolver that answers from a
// map. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "dns/dns_poller.h"
#include "dns/dns_updater.h"

namespace regen::dns {

// Readable gtest output for the DNS value types.
inline void PrintTo(const RRsetReplacement& r, std::ostream* os) {
  *os << r.name << " =";
  for (const std::string& ip : r.addresses) *os << " " << ip;
}
inline void PrintTo(const ZoneUpdate& u, std::ostream* os) { *os << u.ToString(); }
inline void PrintTo(const AddressChange& c, std::ostream* os) {
  *os << c.name << ":";
  for (const std::string& ip : c.old_addresses) *os << " " << ip;
  *os << " ->";
  for (const std::string& ip : c.new_addresses) *os << " " << ip;
}

}  // namespace regen::dns

namespace regen::testing {

class FakeDnsUpdater : public dns::DnsUpdater {
 public:
  // Applies `update` to zone() (as a server would) unless failing; records every call.
  Status Apply(const dns::ZoneUpdate& update) override {
    MutexLock lock(mu_);
    calls_.push_back(update);
    ++in_apply_;
    changed_.notify_all();
    while (blocked_) changed_.wait(lock.native());
    --in_apply_;
    if (!fail_with_.ok()) return fail_with_;
    for (const std::string& name : update.deletes) zone_.erase(name);
    for (const dns::RRsetReplacement& set : update.replaces) {
      zone_[set.name] = {set.addresses.begin(), set.addresses.end()};
    }
    return lose_answer_with_;
  }
  std::string ServerName() const override { return "fake-dns:53"; }

  // Every Apply from now on fails with `status` (OK: succeeds again).
  void FailWith(Status status) {
    MutexLock lock(mu_);
    fail_with_ = std::move(status);
  }
  // Every Apply from now on is applied to zone() but returns `status` (an answer lost on the way
  // back: the server has the records, the caller does not know). OK: answers again.
  void LoseAnswersWith(Status status) {
    MutexLock lock(mu_);
    lose_answer_with_ = std::move(status);
  }
  // Puts records into zone() as someone other than Regen would (an operator's records).
  void SetRecords(const std::string& name, std::set<std::string> addresses) {
    MutexLock lock(mu_);
    zone_[name] = std::move(addresses);
  }
  // While blocked, Apply waits (a DNS server that does not answer).
  void SetBlocked(bool blocked) {
    MutexLock lock(mu_);
    blocked_ = blocked;
    changed_.notify_all();
  }
  // Waits until an Apply is in progress (blocked); false after `timeout`.
  bool WaitInApply(std::chrono::milliseconds timeout) {
    MutexLock lock(mu_);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (in_apply_ <= 0) {
      if (changed_.wait_until(lock.native(), deadline) == std::cv_status::timeout) {
        return in_apply_ > 0;
      }
    }
    return true;
  }
  std::vector<dns::ZoneUpdate> calls() const {
    MutexLock lock(mu_);
    return calls_;
  }
  dns::ZoneRecords zone() const {
    MutexLock lock(mu_);
    return zone_;
  }

 private:
  mutable Mutex mu_;
  std::condition_variable changed_;  // with mu_
  std::vector<dns::ZoneUpdate> calls_ GUARDED_BY(mu_);
  dns::ZoneRecords zone_ GUARDED_BY(mu_);
  Status fail_with_ GUARDED_BY(mu_);
  Status lose_answer_with_ GUARDED_BY(mu_);
  bool blocked_ GUARDED_BY(mu_) = false;
  int in_apply_ GUARDED_BY(mu_) = 0;
};

class FakeResolver : public dns::Resolver {
 public:
  std::map<std::string, dns::LookupResult> ResolveAll(
      const std::vector<std::string>& names) override {
    MutexLock lock(mu_);
    ++rounds_;
    std::map<std::string, dns::LookupResult> out;
    for (const std::string& name : names) {
      auto it = answers_.find(name);
      // Unknown names: NXDOMAIN, an answer without addresses.
      out[name] = it == answers_.end() ? dns::LookupResult{} : it->second;
    }
    return out;
  }
  void Set(const std::string& name, std::vector<std::string> addresses) {
    MutexLock lock(mu_);
    answers_[name] = {Status::Ok(), std::move(addresses)};
  }
  void Fail(const std::string& name, Status status) {
    MutexLock lock(mu_);
    answers_[name] = {std::move(status), {}};
  }
  void Remove(const std::string& name) {
    MutexLock lock(mu_);
    answers_.erase(name);
  }
  int rounds() const {
    MutexLock lock(mu_);
    return rounds_;
  }

 private:
  mutable Mutex mu_;
  std::map<std::string, dns::LookupResult> answers_ GUARDED_BY(mu_);
  int rounds_ GUARDED_BY(mu_) = 0;
};

}  // namespace regen::testing
