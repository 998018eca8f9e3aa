#include "dns/dns_poller.h"

#include <algorithm>

namespace regen::dns {
namespace {

std::vector<std::string> Normalized(std::vector<std::string> addresses) {
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  return addresses;
}

}  // namespace

std::vector<AddressChange> DetectAddressChanges(const std::map<std::string, LookupResult>& results,
                                                KnownAddresses* known) {
  std::vector<AddressChange> changes;
  std::erase_if(*known, [&](const auto& entry) { return !results.contains(entry.first); });
  for (const auto& [name, result] : results) {
    if (!result.status.ok()) continue;
    std::vector<std::string> now = Normalized(result.addresses);
    auto it = known->find(name);
    if (it == known->end()) {
      known->emplace(name, std::move(now));
      continue;
    }
    if (it->second == now) continue;
    changes.push_back({name, it->second, now});
    it->second = std::move(now);
  }
  return changes;
}

DnsPoller::DnsPoller(Resolver& resolver, DnsPollerOptions options, ChangeCallback on_change)
    : resolver_(resolver), options_(options), on_change_(std::move(on_change)) {}

DnsPoller::~DnsPoller() { Stop(); }

void DnsPoller::SetNames(std::set<std::string> names) {
  bool added = false;
  {
    MutexLock lock(mu_);
    for (const std::string& name : names) added = added || !names_.contains(name);
    names_ = std::move(names);
    poll_now_ = poll_now_ || added;
  }
  if (added) wake_.notify_all();
}

std::vector<AddressChange> DnsPoller::PollOnce() {
  MutexLock poll_lock(poll_mu_);
  std::vector<std::string> names;
  {
    MutexLock lock(mu_);
    names.assign(names_.begin(), names_.end());
  }
  std::map<std::string, LookupResult> results;
  if (!names.empty()) results = resolver_.ResolveAll(names);
  // A resolver that drops a name makes it "failed", not "gone".
  for (const std::string& name : names) {
    if (!results.contains(name)) results[name].status = Internal("resolver gave no result");
  }
  std::vector<AddressChange> changes;
  {
    MutexLock lock(mu_);
    changes = DetectAddressChanges(results, &known_);
    ++polls_;
  }
  if (on_change_) {
    for (const AddressChange& change : changes) on_change_(change);
  }
  return changes;
}

KnownAddresses DnsPoller::Known() const {
  MutexLock lock(mu_);
  return known_;
}

int64_t DnsPoller::polls() const {
  MutexLock lock(mu_);
  return polls_;
}

void DnsPoller::Start() {
  MutexLock lock(mu_);
  if (worker_.joinable()) return;
  stopping_ = false;
  worker_ = std::thread([this] {
    while (true) {
      {
        MutexLock lock(mu_);
        poll_now_ = false;
      }
      PollOnce();
      MutexLock lock(mu_);
      const auto deadline = std::chrono::steady_clock::now() + options_.interval;
      while (!stopping_ && !poll_now_ &&
             wake_.wait_until(lock.native(), deadline) != std::cv_status::timeout) {
      }
      if (stopping_) return;
    }
  });
}

void DnsPoller::Stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

}  // namespace regen::dns
