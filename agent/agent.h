// The per-host agent: one main-loop thread owns all state (desired set, last listing, failure
// records) and reconciles desired against actual domains on every event and every poll. Other
// threads (libvirt's event thread, the control socket) only Post() work to it. Public methods are
// thread-safe unless they say otherwise.
#pragma once

#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/disk_preparer.h"
#include "agent/domain_type.h"
#include "agent/domain_xml.h"
#include "agent/fence_log.h"
#include "agent/health_probe.h"
#include "agent/health_tracker.h"
#include "agent/host_paths.h"
#include "agent/hypervisor.h"
#include "agent/image_stager.h"
#include "agent/lease.h"
#include "agent/lease_file.h"
#include "agent/reconciler.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/event_loop.h"
#include "common/subprocess.h"
#include "common/thread_annotations.h"
#include "config/agent_config.h"

namespace regen {

// One detected failure of a desired instance, and what the agent did about it.
struct FailureRecord {
  std::string instance;
  int64_t generation = 0;
  std::string state;        // "crashed", "shutoff", ...
  std::string reason;       // libvirt's reason
  std::string detected_by;  // "event" | "poll" | "health_check"
  int64_t detected_unix_ms = 0;
  int64_t recreated_unix_ms = 0;  // 0 until re-created (standalone mode)
};

// One change the agent made or saw, for status and logs.
struct ChangeRecord {
  int64_t unix_ms = 0;
  std::string instance;
  std::string what;  // "created", "recreated", "destroyed", "failed", "create-failed", ...
  std::string detail;
};

class Agent {
 public:
  // `prober` runs the health probes (tests pass their own; it must outlive the agent); null: the
  // agent owns a SocketProber.
  Agent(AgentConfig config, Hypervisor& hypervisor, Clock& clock, CommandRunner& runner,
        Prober* prober = nullptr);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Starts the main loop. The hypervisor connection is tried at once and retried every poll.
  void Start();
  // Stops the main loop and waits for it. Domains keep running.
  void Stop();

  // Runs `fn` on the main loop.
  void Post(std::function<void()> fn) { loop_.Post(std::move(fn)); }
  // Runs `fn` on the main loop and returns its result (must not be called from the main loop).
  template <typename T>
  T Call(std::function<T()> fn) {
    return loop_.Call<T>(std::move(fn));
  }

  // Replaces the desired set for this host and reconciles.
  void SetDesired(std::vector<InstanceSpec> desired);
  // Asks for a reconcile as soon as possible.
  void RequestReconcile(std::string why);
  // The hypervisor process of domain `name` (libvirt id `domain_id`) exited; seen by the subreaper
  // long before libvirt's own event. If that domain is still the running instance, it is failed
  // now. Thread-safe.
  void NoteProcessExit(std::string name, int64_t domain_id, std::string detail);

  // ---- controller mode (driven by ControllerLink; all thread-safe) ----
  using DomainsReporter =
      std::function<void(const std::vector<DomainInfo>&, const HealthReport& health)>;
  using FailureReporter = std::function<void(const FailureRecord&)>;
  // Set before Start(). Called on the main loop: the listing whenever it changed, and every newly
  // detected failure (the controller heals it; the agent does not restart it).
  void SetReporters(DomainsReporter domains, FailureReporter failure);
  // Set before Start() (qemu drivers; agent/qemu_killer.h): SIGKILLs the hypervisor processes of
  // the named domains and returns how many it killed. When the agent fences it calls this for
  // every live managed domain first, then destroys them through libvirt as before.
  using FenceKillFn = std::function<int(const std::vector<std::string>& names)>;
  void SetFenceKill(FenceKillFn kill) { fence_kill_ = std::move(kill); }
  // The controller's desired set for this host (level-triggered: replaces the previous one), and
  // the health check of each instance that has one (instance -> check). While such an instance's
  // domain runs at its desired generation it is probed at its IP every check.interval (first one
  // interval after it is seen running); max_failed failures in a row report it failed (detected
  // by "health_check"), like a crash. Probes run on the prober, never on the main loop.
  // `stage`: the images the controller wants staged on this host (upgrades), nullopt = unchanged.
  // Staged images neither wanted nor used by a desired instance are removed.
  // After a fence, a desired set is ignored until NoteHello() says a Hello reported that fence:
  // one sent earlier may still name the generations the fence destroyed.
  void SetControllerDesired(std::vector<InstanceSpec> desired,
                            std::map<std::string, HealthCheck> health_checks = {},
                            std::optional<std::vector<StageRequest>> stage = std::nullopt);
  // The images staged here, or that could not be staged (reports carry them).
  std::vector<StagedImage> Staged() const { return stager_.Report(); }
  // The fencing lease now runs until `until` (never shortened). When it and any maintenance hold
  // have run out the agent fences: it destroys every managed domain, records each in the fence
  // log, forgets the controller's desired set and creates nothing until the lease is renewed.
  void RenewLease(Clock::TimePoint until);
  // The lease ends now (etcd mode: etcd says this host's lease is gone, so a controller may
  // already be healing its instances): the agent fences at once; a maintenance hold still counts.
  void EndLease(const std::string& why);
  // A new etcd lease replaces one that was lost (agent/etcd_lease.h), before it renews the
  // fencing lease: the controller's desired set is forgotten and only one sent after the next
  // Hello (which names the new key) is followed; a set received while the old lease was being
  // lost may name instances healed elsewhere since. Waits for the main loop (any other thread).
  void ForgetControllerDesired(const std::string& why);
  // A maintenance hold: keep every domain running until `until` even with no renewal; nullopt
  // ends any hold.
  void SetHold(std::optional<Clock::TimePoint> until);
  // A Hello went out carrying fence_log().Take() with sequence `fence_seq`; call it before any
  // desired set of that session reaches SetControllerDesired.
  void NoteHello(uint64_t fence_seq);
  // Thread-safe views for the controller link and the fencing backstop.
  Lease& lease() { return lease_; }
  FenceLog& fence_log() { return fence_log_; }
  // A fresh listing (for Hello), or nullopt while the hypervisor cannot be listed: the controller
  // must never take "I could not look" for "there is nothing here".
  std::optional<std::vector<DomainInfo>> Domains();
  // The health of every probed instance (for Hello; reports carry it too).
  HealthReport Health();
  bool fenced();
  // The domain type this agent creates domains with (domain_type auto: resolved at the first
  // connect; type "" before). Any thread.
  DomainTypeChoice domain_type() const;

  nlohmann::json StatusJson();
  // A fresh listing from libvirt (not the last reconcile's): [{name, id, state}] or
  // {"error": ...}. The chaos runner's truth on the test driver, whose domains live in-process.
  nlohmann::json LibvirtDomainsJson();
  std::vector<FailureRecord> Failures();
  std::vector<ChangeRecord> Changes();
  int64_t reconciles();

 private:
  // The main loop's hooks: when to wake next (poll, lease, probes), and the timed work after
  // the posted tasks (probes, fencing, poll, requested reconcile).
  EventLoop::TimePoint NextWake();
  void AfterTasks();
  void Poll();
  void ReloadDesiredFile();
  void EnsureConnected();
  // domain_type auto: asks libvirt and runs the KVM probe once (agent/domain_type.h).
  void ResolveDomainTypeOnce();
  void Reconcile(const std::string& trigger);
  // One action in two halves (agent/agent_create.cc): RunAction does the libvirt and disk work
  // and touches only thread-safe members (several run at once); FinishAction does the
  // bookkeeping (logs, records, backoff) on the main loop. RunActions runs a batch of actions for
  // distinct instances at once, then finishes them in order.
  struct ActionOutcome {
    Status destroy;  // the destroy's result (recreate, destroy)
    Status create;   // the create's result (create, recreate)
  };
  ActionOutcome RunAction(const ReconcileAction& action);
  void FinishAction(const ReconcileAction& action, const ActionOutcome& outcome);
  void RunActions(const std::vector<const ReconcileAction*>& batch);
  // A reconcile's actions, those not in backoff, in batches of parallel_starts (stops at
  // SIGTERM and when the lease runs out); new domains are reported after each batch.
  void ExecutePlan(const std::vector<ReconcileAction>& actions);
  // Marks listed domains whose qemu is known dead as crashed, until libvirt catches up.
  void ApplyProcessExits();
  // Records (and reports, in controller mode) one detected failure of a desired instance.
  void RecordFailure(const std::string& instance, int64_t generation, const std::string& state,
                     const std::string& reason, const std::string& detected_by,
                     int64_t detected_unix_ms);
  // agent/agent_create.cc: the XML options of a domain for `spec` once every name and path in it
  // is checked (nothing on disk touched yet), and the checked image (canonical, under
  // image_dirs; "" without one).
  struct CheckedCreate {
    DomainXmlOptions options;
    std::string image;
  };
  Result<CheckedCreate> CheckCreate(const InstanceSpec& spec);
  // Checks, prepares the disk, checks the lease again (controller mode: FailedPrecondition once
  // it ran out) and starts the domain.
  Status CreateDomain(const InstanceSpec& spec);
  void OnDomainEvent(const DomainEvent& event, int64_t seen_unix_ms);
  void Record(const std::string& instance, const std::string& what, const std::string& detail);
  bool InBackoff(const std::string& name);
  // One more failure in a row of `name`'s action; returns how many. A failed destroy (controller
  // mode) is retried within 250 ms, and the main loop wakes for it (next_retry_).
  int64_t NoteFailure(const std::string& name, bool destroy);
  bool controller_mode() const { return !config_.controller_address.empty(); }
  // Controller mode (agent/fencing.cc): fences or un-fences by the lease, and sets desired_
  // accordingly; records a managed domain destroyed while fenced; asks for a reconcile when a
  // renewal may un-fence.
  void ApplyLease();
  // At Start: a fresh lease, never longer than what an earlier run of this agent (same boot)
  // still had, and its maintenance hold.
  void StartLease();
  void RecordFenced(const std::string& name);
  // While fenced: SIGKILLs the processes of the live managed domains of last_domains_
  // (fence_kill_).
  void KillForFence(const char* when);
  void ReconcileIfUnfenced(const char* why);
  // Replaces last_domains_ with a successful listing and tells the lease what it showed.
  void SetListing(std::vector<DomainInfo> listed);
  // The managed domains of last_domains_ that may still run (not shut off, not crashed): what a
  // fence must kill and what the lease tells the backstop.
  std::vector<std::string> LiveManagedDomains() const;
  void ReportIfChanged();
  // StatusJson's lease part: fenced, lease and hold left, fences not yet reported.
  void AddLeaseStatus(nlohmann::json& j);
  // Staging: hands the wanted set and the images in use to the stager (controller mode).
  void RetryFailedStaging();
  void ApplyStaging();
  // Health checks: which instances to probe (after every listing), probes due now, one result.
  void SyncHealth();
  void DispatchProbes();
  void OnProbeResult(const std::string& instance, int64_t generation, const Status& result);

  const AgentConfig config_;
  Hypervisor& hypervisor_;
  Clock& clock_;
  CommandRunner& runner_;
  DiskPreparer disks_;
  const ImageDirs image_dirs_;  // where the controller may name files (agent.yaml image_dirs)

  EventLoop loop_;  // the main loop

  mutable Mutex domain_type_mu_;
  DomainTypeChoice domain_type_ GUARDED_BY(domain_type_mu_);  // written by the main loop once

  // Owned by the main loop thread.
  bool connected_ = false;
  std::string last_connect_error_;
  std::optional<std::vector<InstanceSpec>> desired_;  // unknown until loaded: destroy nothing
  std::string desired_error_;
  std::filesystem::file_time_type desired_mtime_{};
  std::vector<DomainInfo> last_domains_;
  bool reconcile_requested_ = false;
  std::string reconcile_trigger_;
  std::map<std::string, int64_t> event_seen_ms_;  // instance -> unexpected stop event time
  struct ProcessExit {
    int64_t domain_id = -1;
    std::string detail;
  };
  std::map<std::string, ProcessExit> exited_;    // domain -> its qemu exited (libvirt may lag)
  std::map<std::string, size_t> open_failures_;  // instance -> index into failures_
  // Controller mode.
  DomainsReporter domains_reporter_;
  FailureReporter failure_reporter_;
  FenceKillFn fence_kill_;
  std::optional<std::vector<InstanceSpec>> controller_desired_;
  std::map<std::string, HealthCheck> health_checks_;  // instance -> its check (controller's word)
  HealthMonitor health_;
  Lease lease_;           // thread-safe; the main loop fences by it
  FenceLog fence_log_;    // thread-safe
  LeaseFile lease_file_;  // thread-safe
  bool fenced_ = false;
  uint64_t lapses_seen_ = 0;      // LeaseSnapshot::lapses that ApplyLease has fenced for
  uint64_t hello_fence_seq_ = 0;  // fence_log_.seq() that the last Hello reported
  std::string reported_digest_;
  std::vector<FailureRecord> failures_;
  std::deque<ChangeRecord> changes_;
  struct Retry {
    Backoff backoff;        // failures in a row of this instance's last action
    Clock::TimePoint next;  // no new try before
  };
  std::map<std::string, Retry> backoff_;
  std::optional<Clock::TimePoint> next_retry_;  // the earliest failed destroy's retry
  int64_t reconciles_ = 0;
  int64_t last_reconcile_unix_ms_ = 0;
  Clock::TimePoint next_poll_{};
  Clock::TimePoint next_staging_retry_{};

  std::optional<std::vector<StageRequest>> stage_wanted_;  // unknown until the controller says

  Prober* prober_ = nullptr;
  // Its worker Post()s to this agent: destroyed before the queue it posts to.
  ImageStager stager_;
  // Declared last so it is destroyed first: its workers may still Post() results.
  std::unique_ptr<SocketProber> owned_prober_;
};

}  // namespace regen
