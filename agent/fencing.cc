// The agent's fencing (controller mode): the lease and maintenance hold the controller link
// renews, fencing when both ran out, the record of every domain destroyed for it, and ignoring
// desired sets sent before the controller heard of a fence. Agent members; they run on the main
// loop unless they say otherwise.
#include <algorithm>

#include "agent/agent.h"
#include "common/log.h"

namespace regen {

void Agent::SetControllerDesired(std::vector<InstanceSpec> desired,
                                 std::map<std::string, HealthCheck> health_checks,
                                 std::optional<std::vector<StageRequest>> stage) {
  Post([this, desired = std::move(desired), checks = std::move(health_checks),
        stage = std::move(stage)]() mutable {
    if (hello_fence_seq_ < fence_log_.seq()) {
      // Sent before the controller heard of this host's fence: it may name the generations the
      // fence destroyed. The link says Hello again; the set sent after that one counts.
      spdlog::warn(
          "ignoring a desired set of {} instances from the controller: it predates this host's "
          "fence report",
          desired.size());
      return;
    }
    spdlog::info("desired set from the controller: {} instances ({} health-checked)",
                 desired.size(), checks.size());
    controller_desired_ = std::move(desired);
    health_checks_ = std::move(checks);
    if (stage) stage_wanted_ = std::move(stage);
    ApplyStaging();
    reconcile_requested_ = true;
    if (reconcile_trigger_.empty()) reconcile_trigger_ = "desired set changed";
  });
}

void Agent::StartLease() {
  const auto now = clock_.Now();
  Clock::TimePoint until = now + config_.fencing_lease;
  std::optional<Clock::TimePoint> hold;
  std::optional<Clock::TimePoint> renewed;
  if (auto earlier = lease_file_.Load()) {
    // What the earlier run had left, and never more than a lease from its last renewal (the
    // controller counts host_down_after from there; fencing_lease may be shorter now).
    until = std::min(until, earlier->lease_until);
    if (earlier->last_renewal) {
      renewed = std::min(*earlier->last_renewal, now);
      until = std::min(until, *renewed + config_.fencing_lease);
    }
    if (earlier->hold_until && *earlier->hold_until > now) hold = earlier->hold_until;
    auto ms = [&](Clock::TimePoint t) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count();
    };
    if (until <= now && !hold) {
      spdlog::error(
          "this agent ran before in this boot and its lease ran out {} ms ago (last renewal {} ms "
          "ago): starting fenced, its managed domains are destroyed until the lease is renewed",
          -ms(until), renewed ? -ms(*renewed) : -1);
    } else {
      spdlog::info(
          "this agent ran before in this boot: its lease has {} ms left (fencing at once if none "
          "is), its maintenance hold {} ms",
          ms(until), hold ? ms(*hold) : 0);
    }
  }
  lease_.Start(until, renewed);
  lease_.SetHold(hold);
  lease_file_.Save(lease_.Snapshot());
}

void Agent::RenewLease(Clock::TimePoint until) {
  // The lease itself is thread-safe: the link and the backstop see the renewal at once.
  if (lease_.Renew(until)) lease_file_.Save(lease_.Snapshot());
  ReconcileIfUnfenced("lease renewed");
}

void Agent::EndLease(const std::string& why) {
  if (lease_.EndNow()) {
    spdlog::error("{}: ending this host's fencing lease now", why);
    lease_file_.Save(lease_.Snapshot());
  }
  Post([] {});  // wakes the main loop: it fences in this pass
}

void Agent::ForgetControllerDesired(const std::string& why) {
  Call<bool>([this, &why] {
    controller_desired_.reset();
    health_checks_.clear();
    fence_log_.NoteFence();  // the link says Hello again; sets sent before that one are ignored
    spdlog::warn("{}: forgetting the controller's desired set until it answers the next Hello",
                 why);
    return true;
  });
}

void Agent::SetHold(std::optional<Clock::TimePoint> until) {
  auto before = lease_.Snapshot().hold_until;
  lease_.SetHold(until);
  if (until != before) lease_file_.Save(lease_.Snapshot());
  if (until.has_value() != before.has_value()) {  // a hold begins or ends (not each extension)
    Post([this, held = until.has_value()] {
      if (held) {
        spdlog::warn(
            "maintenance hold from the controller: keeping every domain for {} ms even without "
            "lease renewals",
            lease_.HoldRemaining().count());
        Record("*", "hold", std::to_string(lease_.HoldRemaining().count()) + " ms");
      } else {
        spdlog::info("maintenance hold ended by the controller: the fencing lease counts again");
        Record("*", "hold-ended", "");
      }
    });
  }
  ReconcileIfUnfenced("maintenance hold");
}

void Agent::ReconcileIfUnfenced(const char* why) {
  Post([this, why] {
    if (fenced_ && !lease_.Expired()) {
      reconcile_requested_ = true;  // un-fence now
      if (reconcile_trigger_.empty()) reconcile_trigger_ = why;
    }
  });
}

void Agent::NoteHello(uint64_t fence_seq) {
  Post([this, fence_seq] { hello_fence_seq_ = std::max(hello_fence_seq_, fence_seq); });
}

bool Agent::fenced() {
  return Call<bool>([this] { return fenced_; });
}

void Agent::ApplyLease() {
  const LeaseSnapshot lease = lease_.Snapshot();
  const bool expired = clock_.Now() >= lease.until();
  // The lease ran out and was renewed since, while this loop was busy (a long libvirt call, a
  // stall): the fencing backstop has killed the domains' qemus and the controller may have healed
  // them elsewhere, so this is a fence all the same (lifted below at once; nothing is created
  // before a desired set sent after the controller heard of it).
  const bool lapsed = lease.lapses > lapses_seen_;
  lapses_seen_ = lease.lapses;
  if ((expired || lapsed) && !fenced_) {
    fenced_ = true;
    fence_log_.NoteFence();
    // Never follow the old set again: after un-fencing only a set sent after the controller
    // heard of this fence is created (it re-instantiates with generation + 1).
    controller_desired_.reset();
    health_checks_.clear();
    int managed = 0;
    for (const auto& d : last_domains_) managed += d.metadata.managed ? 1 : 0;
    auto silent =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_.Now() - lease.last_renewal);
    const std::string from = config_.etcd ? "etcd (this host's own etcd lease)"
                                          : "the controller at " + config_.controller_address;
    if (expired) {
      spdlog::error(
          "fencing: no lease renewal from {} for {} ms (fencing lease {} ms); destroying the {} "
          "managed domains of this host so none can run twice",
          from, silent.count(), config_.fencing_lease.count(), managed);
      Record("*", "fenced", "no lease renewal for " + std::to_string(silent.count()) + " ms");
    } else {
      spdlog::error(
          "fencing: the lease ran out while the main loop was busy and was renewed by {} since; "
          "destroying the {} managed domains of this host all the same (the controller may "
          "have healed them elsewhere)",
          from, managed);
      Record("*", "fenced", "the lease ran out while the main loop was busy");
    }
    KillForFence("at the fence, by the last listing");  // before any (slow) libvirt call
  } else if (!expired && fenced_) {
    fenced_ = false;
    spdlog::warn(
        "lease renewed by {}: fencing lifted; waiting for the controller's next desired set",
        config_.etcd ? "etcd" : "the controller");
    Record("*", "unfenced", "lease renewed");
  }
  if (fenced_) {
    desired_ = std::vector<InstanceSpec>();
  } else {
    desired_ = controller_desired_;  // unknown until the controller sends one: destroy nothing
  }
}

void Agent::KillForFence(const char* when) {
  if (!fence_kill_ || !fenced_) return;
  const std::vector<std::string> names = LiveManagedDomains();
  if (names.empty()) return;
  auto started = std::chrono::steady_clock::now();
  int killed = fence_kill_(names);
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);
  if (killed == 0) {
    spdlog::debug("fencing: no qemu process left to kill for {} live managed domains ({})",
                  names.size(), when);
    return;
  }
  spdlog::error(
      "fencing: SIGKILLed {} qemu processes of {} live managed domains ({}; {} us); libvirt "
      "destroys them next",
      killed, names.size(), when, took.count());
}

void Agent::RecordFenced(const std::string& name) {
  FencedRecord r;
  r.instance = name;
  for (const auto& d : last_domains_) {
    if (d.name != name) continue;
    if (!d.metadata.instance.empty()) r.instance = d.metadata.instance;
    r.generation = d.metadata.generation;
  }
  r.fenced_unix_ms = clock_.WallMillis();
  auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(
      clock_.Now() - lease_.Snapshot().last_renewal);
  r.reason = "no lease renewal for " + std::to_string(silent.count()) + " ms";
  spdlog::error(
      "fencing: destroyed instance {} generation {} ({}); the controller is told in "
      "the next Hello",
      r.instance, r.generation, r.reason);
  fence_log_.Add(std::move(r));
}

}  // namespace regen
