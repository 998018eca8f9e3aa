#include "controller/host_leases.h"

#include <algorithm>

#include "common/log.h"
#include "etcd/etcd_watch.h"

namespace regen {

namespace {
constexpr std::string_view kAliveSuffix = "/alive";
}

bool LeaseGone(const HostLeaseSource::Snapshot& view, const std::string& host,
               int64_t hello_revision, int64_t* gone_revision) {
  auto it = view.hosts.find(host);
  int64_t put = it == view.hosts.end() ? 0 : it->second.put_revision;
  int64_t gone = it == view.hosts.end() ? view.read_revision : it->second.delete_revision;
  *gone_revision = gone;
  return gone > 0 && gone > std::max(put, hello_revision);
}

std::string AliveKey(const std::string& prefix, const std::string& host) {
  return prefix + "hosts/" + host + std::string(kAliveSuffix);
}

std::string HostOfAliveKey(const std::string& prefix, const std::string& key) {
  const std::string hosts = prefix + "hosts/";
  if (key.size() <= hosts.size() + kAliveSuffix.size() ||
      key.compare(0, hosts.size(), hosts) != 0 ||
      key.compare(key.size() - kAliveSuffix.size(), kAliveSuffix.size(), kAliveSuffix) != 0) {
    return "";
  }
  std::string host = key.substr(hosts.size(), key.size() - hosts.size() - kAliveSuffix.size());
  return host.find('/') == std::string::npos ? host : "";
}

Result<std::unique_ptr<HostLeaseWatch>> HostLeaseWatch::Start(
    std::shared_ptr<etcd::EtcdClient> client, std::string prefix, std::chrono::milliseconds timeout,
    std::function<void(Status)> on_broken) {
  std::unique_ptr<HostLeaseWatch> w(new HostLeaseWatch(std::move(client), std::move(prefix)));
  const std::string hosts = w->prefix_ + "hosts/";
  auto read = w->client_->GetPrefix(hosts, 0, 0, timeout);
  if (!read.ok()) {
    return Unavailable("reading the hosts' leases under " + hosts + ": " + read.status().message());
  }
  {
    MutexLock lock(w->mu_);
    w->view_.read_revision = read->revision;
    for (const auto& kv : read->kvs) {
      std::string host = HostOfAliveKey(w->prefix_, kv.key);
      if (host.empty()) continue;
      w->view_.hosts[host] = HostLeaseRecord{kv.mod_revision, 0, kv.lease};
    }
    spdlog::info("host leases in etcd at revision {}: {} hosts alive", read->revision,
                 w->view_.hosts.size());
  }
  auto watch = etcd::EtcdWatch::Start(
      w->client_, hosts, read->revision + 1,
      [raw = w.get()](const etcd::WatchEvent& e) {
        raw->OnEvent(e.type == etcd::WatchEvent::Type::kPut, e.kv);
      },
      std::move(on_broken), timeout);
  if (!watch.ok()) return watch.status();
  w->watch_ = std::move(*watch);
  return w;
}

HostLeaseWatch::HostLeaseWatch(std::shared_ptr<etcd::EtcdClient> client, std::string prefix)
    : client_(std::move(client)), prefix_(std::move(prefix)) {}

HostLeaseWatch::~HostLeaseWatch() { Stop(); }

void HostLeaseWatch::Stop() {
  if (watch_) watch_->Stop();
}

void HostLeaseWatch::OnEvent(bool put, const etcd::KeyValue& kv) {
  std::string host = HostOfAliveKey(prefix_, kv.key);
  if (host.empty()) return;
  MutexLock lock(mu_);
  HostLeaseRecord& r = view_.hosts[host];
  if (put) {
    if (!r.alive())
      spdlog::info("host {}: lease {} in etcd (revision {})", host, kv.lease, kv.mod_revision);
    r.put_revision = kv.mod_revision;
    r.lease = kv.lease;
  } else {
    spdlog::warn("host {}: etcd deleted its alive key at revision {} (lease {} expired)", host,
                 kv.mod_revision, r.lease);
    r.delete_revision = kv.mod_revision;
  }
}

HostLeaseSource::Snapshot HostLeaseWatch::Get() const {
  MutexLock lock(mu_);
  return view_;
}

}  // namespace regen
