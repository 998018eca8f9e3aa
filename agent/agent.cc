#include "agent/agent.h"

#include <algorithm>

#include "common/backoff.h"
#include "common/log.h"
#include "config/fields.h"
#include "config/service_spec.h"

namespace regen {

namespace {
constexpr size_t kMaxChanges = 256;
constexpr auto kLeaseLook = std::chrono::milliseconds(100);

std::vector<DomainInfo> SortedByName(std::vector<DomainInfo> domains) {
  std::sort(domains.begin(), domains.end(),
            [](const DomainInfo& a, const DomainInfo& b) { return a.name < b.name; });
  return domains;
}
}  // namespace

Agent::Agent(AgentConfig config, Hypervisor& hypervisor, Clock& clock, CommandRunner& runner,
             Prober* prober)
    : config_(std::move(config)),
      hypervisor_(hypervisor),
      clock_(clock),
      runner_(runner),
      disks_(config_.state_dir, runner),
      image_dirs_(config_.image_dirs.empty() ? DefaultImageDirs(config_.state_dir)
                                             : config_.image_dirs),
      lease_(clock),
      fence_log_(config_.state_dir + "/fenced.json"),
      lease_file_(config_.state_dir + "/lease.json", CurrentBootId()),
      prober_(prober),
      stager_(config_.state_dir, image_dirs_) {
  stager_.SetOnChange([this] { Post([this] { ReportIfChanged(); }); });
  if (Status s = fence_log_.Load(); !s.ok()) spdlog::error("{}", s.message());
  if (prober_ == nullptr) {
    owned_prober_ = std::make_unique<SocketProber>();
    prober_ = owned_prober_.get();
  }
  hypervisor_.SetEventCallback([this](const DomainEvent& event) {
    int64_t seen = clock_.WallMillis();  // stamp on the event thread: detection time
    Post([this, event, seen] { OnDomainEvent(event, seen); });
  });
  hypervisor_.SetConnectionCallback([this](bool connected) {
    if (!connected) {
      Post([this] {
        if (connected_)
          spdlog::warn("libvirt connection to {} lost; reconnecting", config_.libvirt_uri);
        connected_ = false;
      });
    }
  });
}

Agent::~Agent() { Stop(); }

void Agent::Start() {
  // Controller mode: the controller must be reached within one lease of starting, or the
  // domains found here are destroyed (the controller may already run them elsewhere).
  if (controller_mode()) StartLease();
  next_poll_ = clock_.Now();
  EventLoop::Hooks hooks;
  hooks.next_wake = [this] { return NextWake(); };
  hooks.after_tasks = [this] { AfterTasks(); };
  loop_.Start(std::move(hooks));
}

void Agent::Stop() { loop_.Stop(); }

void Agent::SetDesired(std::vector<InstanceSpec> desired) {
  Post([this, desired = std::move(desired)]() mutable {
    desired_ = std::move(desired);
    RequestReconcile("desired set changed");
  });
}

void Agent::SetReporters(DomainsReporter domains, FailureReporter failure) {
  domains_reporter_ = std::move(domains);
  failure_reporter_ = std::move(failure);
}

std::optional<std::vector<DomainInfo>> Agent::Domains() {
  return Call<std::optional<std::vector<DomainInfo>>>(
      [this]() -> std::optional<std::vector<DomainInfo>> {
        if (!connected_) EnsureConnected();
        if (!connected_) return std::nullopt;
        auto listed = hypervisor_.ListDomains();
        if (!listed.ok()) return std::nullopt;
        SetListing(std::move(listed).value());
        return last_domains_;
      });
}

HealthReport Agent::Health() {
  return Call<HealthReport>([this] { return health_.Report(); });
}

void Agent::SetListing(std::vector<DomainInfo> listed) {
  last_domains_ = SortedByName(std::move(listed));
  ApplyProcessExits();
  lease_.NoteListing(LiveManagedDomains());
}

std::vector<std::string> Agent::LiveManagedDomains() const {
  std::vector<std::string> alive;
  for (const auto& d : last_domains_) {
    if (d.metadata.managed && d.state != DomainState::kShutoff &&
        d.state != DomainState::kCrashed) {
      alive.push_back(d.name);
    }
  }
  return alive;
}

void Agent::ApplyStaging() {
  if (!controller_desired_ || !stage_wanted_) return;  // never remove what may be in use
  std::set<ImageStager::Key> in_use;
  for (const auto& spec : *controller_desired_) {
    if (!spec.image.empty()) in_use.insert({spec.service, spec.version});
  }
  stager_.SetWanted(*stage_wanted_, in_use);
}

void Agent::RetryFailedStaging() {
  // An image that could not be staged (missing, disk full) is tried again every kStagingRetry:
  // an operator who fixes it sees the upgrade go on without touching the agent.
  constexpr auto kStagingRetry = std::chrono::seconds(5);
  if (clock_.Now() < next_staging_retry_) return;
  next_staging_retry_ = clock_.Now() + kStagingRetry;
  for (const auto& s : stager_.Report()) {
    if (s.error.empty()) continue;
    spdlog::info("image staging: trying {} version {} again", s.service, s.version);
    ApplyStaging();
    return;
  }
}

void Agent::ReportIfChanged() {
  if (!domains_reporter_) return;
  std::string digest;
  for (const auto& s : stager_.Report()) {
    digest += "staged:" + s.service + "/" + s.version + "/" + s.source + "/" + s.error + ";";
  }
  for (const auto& d : last_domains_) {
    digest += d.name + "/" + DomainStateName(d.state) + "/" + d.reason + "/" +
              std::to_string(d.metadata.generation) + ";";
  }
  HealthReport health = health_.Report();
  for (const auto& [name, h] : health) {
    // Not the error text: a report per changed message would be noise.
    digest += "health:" + name + "/" + std::to_string(h.generation) + "/" +
              HealthStateName(h.state) + "/" + (h.passed_once ? "passed" : "-") + "/" +
              std::to_string(h.consecutive_failures) + ";";
  }
  if (digest == reported_digest_) return;
  reported_digest_ = digest;
  domains_reporter_(last_domains_, health);
}

void Agent::RequestReconcile(std::string why) {
  Post([this, why = std::move(why)] {
    reconcile_requested_ = true;
    if (reconcile_trigger_.empty()) reconcile_trigger_ = why;
  });
}

EventLoop::TimePoint Agent::NextWake() {
  // The loop sleeps on the real clock; Clock stamps what it records.
  auto wake = next_poll_;
  if (controller_mode() && !fenced_) wake = std::min(wake, lease_.until());
  if (auto probe = health_.NextDue()) wake = std::min(wake, *probe);
  if (next_retry_) wake = std::min(wake, *next_retry_);
  // The loop sleeps on steady_clock, which stops while the host is suspended; the lease runs on
  // (CLOCK_BOOTTIME): look again soon, so that a host woken after its lease ran out fences at once.
  if (controller_mode() && !fenced_) wake = std::min(wake, clock_.Now() + kLeaseLook);
  return std::chrono::steady_clock::now() +
         std::max<Clock::Duration>(wake - clock_.Now(), Clock::Duration::zero());
}

void Agent::AfterTasks() {
  DispatchProbes();
  if (controller_mode() && !fenced_ && lease_.Expired()) {
    Reconcile("lease expired");  // fence at once, not at the next poll
  } else if (clock_.Now() >= next_poll_) {
    next_poll_ = clock_.Now() + config_.poll_interval;
    Poll();
  } else if (next_retry_ && clock_.Now() >= *next_retry_) {
    next_retry_.reset();
    Reconcile("destroy retry");
  } else if (reconcile_requested_) {
    std::string trigger = reconcile_trigger_;
    Reconcile(trigger.empty() ? "request" : trigger);
  }
}

void Agent::Poll() {
  ReloadDesiredFile();
  EnsureConnected();
  RetryFailedStaging();
  Reconcile("poll");
}

void Agent::ReloadDesiredFile() {
  if (config_.desired_file.empty() || controller_mode()) return;
  std::error_code ec;
  auto mtime = std::filesystem::last_write_time(config_.desired_file, ec);
  if (ec) {
    std::string err = "cannot read desired file " + config_.desired_file + ": " + ec.message();
    if (err != desired_error_) spdlog::error("{}; keeping the previous desired set", err);
    desired_error_ = err;
    return;
  }
  if (desired_ && mtime == desired_mtime_) return;
  auto loaded = LoadDesiredInstances(config_.desired_file);
  desired_mtime_ = mtime;
  if (!loaded.ok()) {
    desired_error_ = loaded.status().message();
    spdlog::error("desired file rejected, keeping the previous desired set: {}", desired_error_);
    return;
  }
  desired_error_.clear();
  spdlog::info("desired set loaded from {}: {} instances", config_.desired_file, loaded->size());
  desired_ = std::move(loaded).value();
  reconcile_requested_ = true;
}

void Agent::EnsureConnected() {
  if (connected_ && hypervisor_.Connected()) return;
  Status s = hypervisor_.Connect();
  if (!s.ok()) {
    if (s.message() != last_connect_error_) {
      spdlog::error("cannot connect to libvirt {}: {} (retrying every {} ms)", config_.libvirt_uri,
                    s.message(), config_.poll_interval.count());
    }
    last_connect_error_ = s.message();
    connected_ = false;
    return;
  }
  spdlog::info("connected to libvirt {}{}; relisting domains", config_.libvirt_uri,
               last_connect_error_.empty() ? "" : " again");
  last_connect_error_.clear();
  connected_ = true;
  ResolveDomainTypeOnce();
}

void Agent::ResolveDomainTypeOnce() {
  if (!domain_type().type.empty()) return;
  KvmProbeOptions options;
  options.work_dir = config_.state_dir;
  options.cache_file = config_.state_dir + "/domain-type.json";
  options.boot_id = CurrentBootId();
  DomainTypeChoice choice = ResolveDomainType(config_.domain_type, hypervisor_, runner_, options);
  spdlog::info("domains are created with type {}: {}", choice.type, choice.reason);
  MutexLock lock(domain_type_mu_);
  domain_type_ = std::move(choice);
}

DomainTypeChoice Agent::domain_type() const {
  MutexLock lock(domain_type_mu_);
  return domain_type_;
}

void Agent::OnDomainEvent(const DomainEvent& event, int64_t seen_unix_ms) {
  spdlog::debug("libvirt event domain={} event={} detail={}", event.name, event.event,
                event.detail);
  if (event.unexpected_stop) {
    event_seen_ms_[event.name] = seen_unix_ms;
    reconcile_requested_ = true;
    reconcile_trigger_ = "event";
  } else if (event.event == "stopped" || event.event == "undefined" || event.event == "crashed") {
    reconcile_requested_ = true;
    if (reconcile_trigger_.empty()) reconcile_trigger_ = "event";
  }
}

void Agent::NoteProcessExit(std::string name, int64_t domain_id, std::string detail) {
  int64_t seen = clock_.WallMillis();
  Post([this, name = std::move(name), domain_id, detail = std::move(detail), seen] {
    spdlog::debug("qemu of domain {} (id {}) exited: {}", name, domain_id, detail);
    exited_[name] = {domain_id, detail};
    if (!event_seen_ms_.count(name)) event_seen_ms_[name] = seen;
    // Report at once (controller mode): relisting now would wait ~200 ms for libvirt, which holds
    // the domain while it handles the qemu's end itself.
    if (controller_mode() && desired_ && !open_failures_.count(name)) {
      for (const auto& d : last_domains_) {
        if (d.name != name || d.id != domain_id || d.state != DomainState::kRunning) continue;
        bool wanted = std::any_of(desired_->begin(), desired_->end(), [&](const InstanceSpec& s) {
          return s.name == name && s.generation == d.metadata.generation;
        });
        if (wanted) {
          RecordFailure(name, d.metadata.generation, "crashed", "qemu exited: " + detail, "event",
                        seen);
        }
      }
    }
    reconcile_requested_ = true;
    reconcile_trigger_ = "event";
  });
}

void Agent::Reconcile(const std::string& trigger) {
  reconcile_requested_ = false;
  reconcile_trigger_.clear();
  // Before the connection check: a lease that ran out fences even while libvirt is unreachable
  // (else the main loop, woken by the expired lease, would spin retrying the connection).
  if (controller_mode()) ApplyLease();
  if (!connected_) EnsureConnected();
  if (!connected_) return;
  auto listed = hypervisor_.ListDomains();
  if (!listed.ok()) {
    spdlog::error("listing domains on {} failed: {}", config_.libvirt_uri,
                  listed.status().message());
    if (listed.status().code() == Code::kUnavailable) connected_ = false;
    return;
  }
  SetListing(std::move(listed).value());
  KillForFence("by a fresh listing");  // while fenced: what the destroys below would wait for
  ++reconciles_;
  last_reconcile_unix_ms_ = clock_.WallMillis();
  if (!desired_) {
    SyncHealth();
    ReportIfChanged();
    return;  // nothing is created or destroyed before the desired set is known
  }

  ReconcileOptions options;
  options.restart_failed_locally = config_.controller_address.empty();
  ReconcilePlan plan = PlanReconcile(*desired_, last_domains_, options);

  for (const auto& f : plan.failures) {
    if (open_failures_.count(f.instance)) continue;  // already known
    auto ev = event_seen_ms_.find(f.instance);
    if (ev != event_seen_ms_.end()) {
      RecordFailure(f.instance, f.generation, DomainStateName(f.state), f.reason, "event",
                    ev->second);
    } else {
      RecordFailure(f.instance, f.generation, DomainStateName(f.state), f.reason,
                    trigger == "event" ? "event" : "poll", clock_.WallMillis());
    }
  }
  event_seen_ms_.clear();
  for (const auto& c : plan.conflicts) {
    if (!InBackoff(c.name)) {
      spdlog::error("{}", c.message);
      NoteFailure(c.name, /*destroy=*/false);
    }
  }
  ExecutePlan(plan.actions);
  SyncHealth();
  ReportIfChanged();
}

void Agent::SyncHealth() {
  std::vector<HealthTarget> targets;
  if (desired_ && !fenced_) {
    for (const auto& spec : *desired_) {
      auto check = health_checks_.find(spec.name);
      if (check == health_checks_.end() || !HealthCheckApplies(check->second, spec.allocation.ip))
        continue;
      bool running =
          std::any_of(last_domains_.begin(), last_domains_.end(), [&](const DomainInfo& d) {
            return d.name == spec.name && d.metadata.managed &&
                   d.metadata.generation == spec.generation && d.state == DomainState::kRunning;
          });
      if (running)
        targets.push_back({spec.name, spec.generation, spec.allocation.ip, check->second});
    }
  }
  health_.Sync(targets, clock_.Now());
}

void Agent::DispatchProbes() {
  for (const auto& t : health_.TakeDue(clock_.Now())) {
    spdlog::debug("health probe of {} generation {}: {} {}:{}{}", t.instance, t.generation,
                  t.check.type, t.ip, t.check.port, t.check.type == "http" ? t.check.path : "");
    prober_->Probe(t.ip, t.check,
                   [this, instance = t.instance, generation = t.generation](Status result) {
                     Post([this, instance, generation, result] {
                       OnProbeResult(instance, generation, result);
                     });
                   });
  }
}

void Agent::OnProbeResult(const std::string& instance, int64_t generation, const Status& result) {
  if (!result.ok()) {
    spdlog::debug("health probe of {} generation {} failed: {}", instance, generation,
                  result.message());
  }
  auto verdict = health_.OnResult(instance, generation, result.ok(), result.message());
  if (verdict && !open_failures_.count(instance)) {
    RecordFailure(instance, generation, "running",
                  "health check failed " + std::to_string(verdict->failures) +
                      " times in a row: " + verdict->last_error,
                  "health_check", clock_.WallMillis());
  }
  ReportIfChanged();
}

void Agent::RecordFailure(const std::string& instance, int64_t generation, const std::string& state,
                          const std::string& reason, const std::string& detected_by,
                          int64_t detected_unix_ms) {
  FailureRecord rec;
  rec.instance = instance;
  rec.generation = generation;
  rec.state = state;
  rec.reason = reason;
  rec.detected_by = detected_by;
  rec.detected_unix_ms = detected_unix_ms;
  spdlog::warn("instance {} failed: domain {} ({}) generation={} detected_by={}", instance, state,
               reason, generation, detected_by);
  Record(instance, "failed", state + " (" + reason + ") detected by " + detected_by);
  open_failures_[instance] = failures_.size();
  failures_.push_back(rec);
  if (failure_reporter_) failure_reporter_(rec);
}

void Agent::ApplyProcessExits() {
  if (exited_.empty()) return;
  std::map<std::string, ProcessExit> still_lagging;
  for (auto& d : last_domains_) {
    auto it = exited_.find(d.name);
    if (it == exited_.end()) continue;
    // Only the very run whose qemu died: a re-created domain has a new id.
    if (d.state == DomainState::kRunning && d.id >= 0 && d.id == it->second.domain_id) {
      d.state = DomainState::kCrashed;
      d.reason = "qemu exited: " + it->second.detail;
      still_lagging.insert(*it);
    }
  }
  exited_ = std::move(still_lagging);
}

void Agent::Record(const std::string& instance, const std::string& what,
                   const std::string& detail) {
  changes_.push_back({clock_.WallMillis(), instance, what, detail});
  if (changes_.size() > kMaxChanges) changes_.pop_front();
}

}  // namespace regen
