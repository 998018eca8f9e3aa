#include "agent/etcd_lease.h"

#include <unistd.h>

#include <algorithm>

#include <grpcpp/grpcpp.h>

#include "common/log.h"
#include "etcd/etcd_channels.h"

namespace regen {

using std::chrono::milliseconds;

namespace {

constexpr milliseconds kConnectRetry(200);
constexpr milliseconds kFenceWait(50);  // how often a re-registration looks at the fence
// gRPC (1.51) may never finish a connection it first tried while etcd was starting (no leader
// yet: the member stalls before its SETTINGS frame), even after etcd is up; a fresh client in the
// same process connects at once (its own subchannels: etcd_channels.cc). So after this long with
// every call failing, the client is made anew.
constexpr milliseconds kFreshChannelsAfter(2000);
constexpr milliseconds kWarnEvery(3000);  // rate limit of the repeated warnings

int64_t Ms(Clock::Duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

}  // namespace

Result<etcd::EtcdOptions> AgentEtcdOptions(const AgentEtcdConfig& config) {
  ASSIGN_OR_RETURN(etcd::EtcdOptions o, EtcdClientOptions(config));
  // A renewal must end well inside renew_interval: each attempt against one member is short, so
  // a dead member is passed over within one renewal.
  const milliseconds call = std::max(milliseconds(20), config.renew_interval * 3 / 4);
  o.attempt_timeout = std::max(milliseconds(10), call / 2);
  o.default_timeout = std::max(milliseconds(1000), config.lease_ttl / 2);
  return o;
}

EtcdLease::EtcdLease(const AgentConfig& config, Agent& agent, Clock& clock)
    : config_(config),
      etcd_(*config_.etcd),
      agent_(agent),
      clock_(clock),
      key_(etcd_.prefix + "hosts/" + config_.host_name + "/alive"),
      call_timeout_(std::max(milliseconds(20), etcd_.renew_interval * 3 / 4)) {}

EtcdLease::~EtcdLease() { Stop(); }

void EtcdLease::Start() {
  {
    MutexLock lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Run(); });
}

void EtcdLease::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool EtcdLease::WaitStopped(SteadyTime until) {
  MutexLock lock(mu_);
  while (!stop_ && std::chrono::steady_clock::now() < until) cv_.wait_until(lock.native(), until);
  return stop_;
}

bool EtcdLease::WaitConnecting(SteadyTime until) {
  if (!client_) return WaitStopped(until);
  etcd::EtcdChannels& channels = client_->channels();
  while (std::chrono::steady_clock::now() < until) {
    {
      MutexLock lock(mu_);
      if (stop_) return true;
    }
    bool any_ready = false;
    for (size_t i = 0; i < channels.size(); ++i) {
      grpc::Channel& channel = *channels.Stubs(i).channel;
      grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
      if (state == GRPC_CHANNEL_READY) {
        any_ready = true;
        continue;
      }
      auto slice = std::min(until - std::chrono::steady_clock::now(),
                            std::chrono::steady_clock::duration(milliseconds(50)));
      channel.WaitForStateChange(state, std::chrono::system_clock::now() + slice);
    }
    if (any_ready) return WaitStopped(until);
  }
  MutexLock lock(mu_);
  return stop_;
}

int64_t EtcdLease::WaitRegistered(SteadyTime until) {
  MutexLock lock(mu_);
  while (!stop_ && revision_.load() == 0 && std::chrono::steady_clock::now() < until) {
    cv_.wait_until(lock.native(), until);
  }
  return revision_.load();
}

bool EtcdLease::AwaitKey(const std::atomic<bool>& stop) {
  SteadyTime next_log = std::chrono::steady_clock::now() + milliseconds(500);
  while (!stop.load()) {
    if (WaitRegistered(std::chrono::steady_clock::now() + milliseconds(100)) > 0) return true;
    std::string error;
    {
      MutexLock lock(mu_);
      if (stop_) return false;
      error = last_error_;
    }
    if (std::chrono::steady_clock::now() >= next_log) {
      spdlog::warn(
          "not saying Hello to the controller yet: this host's key {} is not in etcd{}; the "
          "fencing lease has {} ms left (then this host fences)",
          key_, error.empty() ? "" : " (" + error + ")",
          std::max<int64_t>(0, Ms(agent_.lease().until() - clock_.Now())));
      next_log = std::chrono::steady_clock::now() + kWarnEvery;
    }
  }
  return false;
}

void EtcdLease::Warn(const std::string& what) {
  auto now = std::chrono::steady_clock::now();
  if (now - last_warn_ < kWarnEvery) {
    ++suppressed_;
    return;
  }
  spdlog::warn("etcd lease of host {}: {}{}", config_.host_name, what,
               suppressed_ > 0 ? " (and " + std::to_string(suppressed_) + " more like it)" : "");
  last_warn_ = now;
  suppressed_ = 0;
}

void EtcdLease::SetError(const std::string& what) {
  MutexLock lock(mu_);
  last_error_ = what;
  Warn(what);
}

void EtcdLease::Run() {
  std::string endpoints;
  for (const auto& e : etcd_.endpoints) endpoints += (endpoints.empty() ? "" : ",") + e;
  spdlog::info(
      "host lease in etcd at {} (key {}, TTL {} s, renewed every {} ms; the controller's "
      "heartbeat acks renew nothing)",
      endpoints, key_, etcd_.lease_ttl.count() / 1000, etcd_.renew_interval.count());
  while (true) {
    {
      MutexLock lock(mu_);
      if (stop_) return;
    }
    const SteadyTime now = std::chrono::steady_clock::now();
    if (client_ && failing_since_ && now - *failing_since_ > kFreshChannelsAfter) {
      spdlog::debug("etcd: every call failed for {} ms: connecting with fresh channels",
                    Ms(now - *failing_since_));
      client_.reset();
      failing_since_ = now;
    }
    if (!client_) {
      auto options = AgentEtcdOptions(etcd_);
      auto client = options.ok() ? etcd::EtcdClient::Connect(*options)
                                 : Result<std::shared_ptr<etcd::EtcdClient>>(options.status());
      if (!client.ok()) {
        SetError("cannot connect to etcd: " + client.status().ToString() + "; retrying every " +
                 std::to_string(kConnectRetry.count()) + " ms");
        if (WaitStopped(std::chrono::steady_clock::now() + kConnectRetry)) return;
        continue;
      }
      client_ = std::move(*client);
    }
    if (lease_id_.load() == 0) {
      if (lost_once_ && !MayRegister()) {
        if (WaitStopped(std::chrono::steady_clock::now() + kFenceWait)) return;
        continue;
      }
      SteadyTime tried = std::chrono::steady_clock::now();
      if (!Register()) {
        if (!failing_since_) failing_since_ = tried;
        if (WaitConnecting(tried + kConnectRetry)) return;
        continue;
      }
      failing_since_.reset();
    }
    SteadyTime sent = std::chrono::steady_clock::now();
    if (!RenewOnce()) {
      if (lease_id_.load() == 0) continue;  // lost: see at once whether it may register again
      if (!failing_since_) failing_since_ = sent;
      if (WaitConnecting(sent + etcd_.renew_interval)) return;
      continue;
    }
    failing_since_.reset();
    if (WaitStopped(sent + etcd_.renew_interval)) return;
  }
}

bool EtcdLease::MayRegister() {
  LeaseSnapshot lease = agent_.lease().Snapshot();
  const Clock::TimePoint now = clock_.Now();
  // A maintenance hold keeps the domains by design (the controller heals nothing meanwhile): the
  // key comes back at once, or the hold's end would fence a host whose etcd merely blinked.
  if (lease.hold_until && *lease.hold_until > now) return true;
  return BackstopDecide(lease, now, Clock::Duration::max()).confirmed;
}

bool EtcdLease::Register() {
  const Clock::TimePoint sent = clock_.Now();
  auto grant = client_->GrantLease(etcd_.lease_ttl.count() / 1000);
  if (!grant.ok()) {
    SetError("cannot grant an etcd lease: " + grant.status().ToString() + "; retrying every " +
             std::to_string(kConnectRetry.count()) +
             " ms (this host fences when its fencing "
             "lease runs out)");
    return false;
  }
  nlohmann::json value{{"host", config_.host_name},
                       {"address", config_.address},
                       {"pid", static_cast<int64_t>(getpid())},
                       {"granted_unix_ms", clock_.WallMillis() - Ms(clock_.Now() - sent)}};
  auto put = client_->Put(key_, value.dump(), grant->id);
  if (!put.ok()) {
    SetError("cannot put " + key_ + ": " + put.status().ToString());
    (void)client_->RevokeLease(grant->id, call_timeout_);
    return false;
  }
  if (lost_once_) {
    // Before the fencing lease is renewed (un-fencing): nothing from the old lease's time counts.
    agent_.ForgetControllerDesired("etcd lease " + std::to_string(grant->id) +
                                   " replaces a lost one");
  }
  lease_id_ = grant->id;
  ++registrations_;
  {
    MutexLock lock(mu_);
    revision_ = *put;
    last_renewal_ = sent;
    last_error_.clear();
  }
  cv_.notify_all();
  spdlog::info("etcd: put {} on lease {} at revision {} (TTL {} s){}", key_, grant->id, *put,
               grant->ttl_seconds, lost_once_ ? " after the fence: registered again" : "");
  // The etcd lease started after `sent`: the fencing lease may count from then.
  agent_.RenewLease(sent + config_.fencing_lease);
  return true;
}

bool EtcdLease::RenewOnce() {
  const int64_t id = lease_id_.load();
  const Clock::TimePoint sent = clock_.Now();
  auto ttl = client_->KeepAliveOnce(id, call_timeout_);
  if (ttl.ok() && *ttl > 0) {
    ++renewals_;
    {
      MutexLock lock(mu_);
      last_renewal_ = sent;
      last_error_.clear();
    }
    // Always from the moment the renewal was sent, never from its answer.
    agent_.RenewLease(sent + config_.fencing_lease);
    return true;
  }
  if (ttl.ok() || ttl.status().code() == Code::kNotFound) {
    LeaseGone(ttl.ok() ? "etcd answered TTL 0" : ttl.status().message());
    return false;
  }
  SetError("renewal of etcd lease " + std::to_string(id) + " failed: " + ttl.status().ToString() +
           " (fencing lease " + std::to_string(Ms(agent_.lease().until() - clock_.Now())) +
           " ms left)");
  return false;
}

void EtcdLease::LeaseGone(const std::string& how) {
  const int64_t id = lease_id_.load();
  {
    MutexLock lock(mu_);
    revision_ = 0;
    last_error_ = "etcd lease " + std::to_string(id) + " is gone (" + how + ")";
  }
  lease_id_ = 0;
  lost_once_ = true;
  spdlog::error(
      "etcd lease {} is gone ({}): key {} is deleted and a controller may already be healing "
      "this host's instances elsewhere: fencing now; the key is put again once every managed "
      "domain is confirmed gone",
      id, how, key_);
  agent_.EndLease("etcd lease " + std::to_string(id) + " is gone");
}

nlohmann::json EtcdLease::StatusJson() const {
  nlohmann::json j{{"key", key_},
                   {"lease_id", lease_id_.load()},
                   {"revision", revision_.load()},
                   {"renewals", renewals_.load()},
                   {"registrations", registrations_.load()},
                   {"ttl_ms", etcd_.lease_ttl.count()},
                   {"renew_interval_ms", etcd_.renew_interval.count()}};
  MutexLock lock(mu_);
  j["last_renewal_age_ms"] = last_renewal_ ? Ms(clock_.Now() - *last_renewal_) : int64_t{-1};
  if (!last_error_.empty()) j["last_error"] = last_error_;
  return j;
}

}  // namespace regen
