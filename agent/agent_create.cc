// The agent's actions on domains (Agent members): a reconcile's actions in batches of
// parallel_starts (agent.yaml; RunAction touches only thread-safe members and runs on a thread per
// action when a batch has more than one, inline otherwise; FinishAction's bookkeeping stays on the
// main loop), the creation of a domain (every name and path the controller sent is checked before
// anything on disk changes; the lease is checked again right before the domain starts), and the
// retry backoff of failed actions (a failed destroy is retried within kDestroyRetryMax: it may be
// all that stands between the instance and a duplicate).
#include <algorithm>
#include <filesystem>
#include <thread>

#include "agent/agent.h"
#include "agent/domain_xml.h"
#include "agent/event_delivery.h"
#include "agent/nocloud_seed.h"
#include "common/log.h"
#include "config/fields.h"

namespace regen {

namespace {
constexpr auto kMaxBackoff = std::chrono::seconds(60);
// Failed destroys (controller mode): first retry after at most kDestroyRetryMin, then at most
// every kDestroyRetryMax; the fencing backstop trips if they keep failing past the lease.
constexpr auto kDestroyRetryMin = std::chrono::milliseconds(100);
constexpr auto kDestroyRetryMax = std::chrono::milliseconds(250);
// A destroy failing every kDestroyRetryMax is logged at the first failure and every kLogEvery-th.
constexpr int64_t kLogEvery = 20;
}  // namespace

Agent::ActionOutcome Agent::RunAction(const ReconcileAction& action) {
  ActionOutcome out;
  if (action.kind != ReconcileAction::Kind::kCreate) {
    out.destroy = hypervisor_.DestroyAndUndefine(action.name);
    if (!out.destroy.ok() && out.destroy.code() != Code::kNotFound) return out;
    if (action.kind == ReconcileAction::Kind::kDestroy) {
      disks_.Remove(action.name);
      RemoveNoCloudSeeds(config_.state_dir, action.name);
      return out;
    }
  }
  out.create = CreateDomain(action.spec);
  return out;
}

void Agent::FinishAction(const ReconcileAction& action, const ActionOutcome& out) {
  const char* kind = ActionKindName(action.kind);
  const Status& d = out.destroy;
  if (!d.ok() && d.code() != Code::kNotFound) {
    int64_t failures = NoteFailure(action.name, /*destroy=*/true);
    if (failures % kLogEvery == 1) {
      spdlog::error("{} {}: destroy failed ({} times in a row){}: {}", kind, action.name, failures,
                    fenced_ ? " while fenced" : "", d.message());
      Record(action.name, std::string(kind) + "-failed", d.message());
    }
    return;
  }
  if (action.kind == ReconcileAction::Kind::kDestroy) {
    if (fenced_) RecordFenced(action.name);
    open_failures_.erase(action.name);
    backoff_.erase(action.name);
    spdlog::info("destroyed instance {}: {}", action.name, action.reason);
    Record(action.name, "destroyed", action.reason);
    return;
  }
  const Status& s = out.create;
  if (s.code() == Code::kFailedPrecondition && controller_mode() && lease_.Expired()) {
    // Not the instance's failure: the next pass fences.
    spdlog::warn("{} {}: not started: {}", kind, action.name, s.message());
    Record(action.name, std::string(kind) + "-skipped", s.message());
    return;
  }
  if (!s.ok()) {
    spdlog::error("{} {}: {}", kind, action.name, s.message());
    Record(action.name, std::string(kind) + "-failed", s.message());
    NoteFailure(action.name, /*destroy=*/false);
    return;
  }
  backoff_.erase(action.name);
  int64_t now = clock_.WallMillis();
  auto open = open_failures_.find(action.name);
  if (open != open_failures_.end()) {
    FailureRecord& rec = failures_[open->second];
    rec.recreated_unix_ms = now;
    spdlog::info("instance {} re-created generation={} {} ms after detection", action.name,
                 action.spec.generation, now - rec.detected_unix_ms);
    open_failures_.erase(open);
  }
  std::string what = action.kind == ReconcileAction::Kind::kCreate ? "created" : "recreated";
  spdlog::info("{} instance {} service={} ud={} version={} generation={}: {}", what, action.name,
               action.spec.service, action.spec.update_domain, action.spec.version,
               action.spec.generation, action.reason);
  Record(action.name, what, action.reason);
}

void Agent::RunActions(const std::vector<const ReconcileAction*>& batch) {
  std::vector<ActionOutcome> outcomes(batch.size());
  if (batch.size() == 1) {
    outcomes[0] = RunAction(*batch[0]);
  } else {
    // Each action on a thread of its own (at most parallel_starts at once): libvirt starts
    // several domains at once, so a host taking over a failed host's instances pays about one
    // start, not one per instance. Only thread-safe members are touched (RunAction).
    std::vector<std::thread> threads;
    threads.reserve(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      threads.emplace_back([this, &outcomes, &batch, i] { outcomes[i] = RunAction(*batch[i]); });
    }
    for (auto& t : threads) t.join();
  }
  for (size_t i = 0; i < batch.size(); ++i) FinishAction(*batch[i], outcomes[i]);
}

void Agent::ExecutePlan(const std::vector<ReconcileAction>& actions) {
  auto relist = [this] {
    // So status and the report show what the actions left, not what they found.
    auto after = hypervisor_.ListDomains();
    if (after.ok()) SetListing(std::move(after).value());
  };
  // The actions (one per instance) run in batches of up to parallel_starts at once.
  std::vector<const ReconcileAction*> due;
  for (const auto& action : actions) {
    if (!InBackoff(action.name)) due.push_back(&action);
  }
  bool changed = false;
  for (size_t next = 0; next < due.size();) {
    if (loop_.stopping()) break;  // SIGTERM: do not start another (slow) create
    // The lease ran out during a batch of (slow) creates: fence now, not after the batch (the
    // fencing backstop gives the main loop only fencing_backstop_after).
    if (controller_mode() && !fenced_ && lease_.Expired()) break;
    const size_t n = std::min(static_cast<size_t>(std::max<int64_t>(1, config_.parallel_starts)),
                              due.size() - next);
    std::vector<const ReconcileAction*> batch(due.begin() + next, due.begin() + next + n);
    next += n;
    RunActions(batch);
    changed = true;
    bool created = std::any_of(batch.begin(), batch.end(), [](const ReconcileAction* a) {
      return a->kind != ReconcileAction::Kind::kDestroy;
    });
    if (controller_mode() && created) {
      // New domains are reported as they run, not after all the batches.
      relist();
      ReportIfChanged();
      changed = false;
    }
  }
  if (changed) relist();
}

Result<Agent::CheckedCreate> Agent::CheckCreate(const InstanceSpec& spec) {
  // Names become file names under state_dir; files named must be under image_dirs.
  RETURN_IF_ERROR(ValidateInstanceNames(spec));
  const std::string context = "instance " + spec.name;
  CheckedCreate checked;
  DomainXmlOptions& opts = checked.options;
  opts.domain_type = domain_type().type;  // resolved at connect (auto)
  if (opts.domain_type.empty()) {
    return Unavailable(context + ": the domain type is not known yet (libvirt not connected)");
  }
  opts.bridge = config_.ovs_bridge;
  if (!spec.image.empty()) {
    auto image = image_dirs_.Confine("image", spec.image);
    if (!image.ok() && image.status().code() == Code::kNotFound) {
      return NotFound(context + ": image " + spec.image + " of version " + spec.version +
                      " does not exist on this host");
    }
    if (!image.ok()) return image.status().WithContext(context);
    checked.image = *image;
    opts.disk_path = disks_.OverlayPath(spec);  // made by Prepare once everything is checked
  }
  if (!spec.domain_template.empty()) {
    // The template is a file on this host, like the image (service spec versions.V).
    auto path = image_dirs_.Confine("domain_template", spec.domain_template);
    if (!path.ok()) return path.status().WithContext(context);
    auto text = ReadConfigFile(*path);
    if (!text.ok()) {
      return InvalidArgument(context + ": domain_template: " + text.status().message());
    }
    opts.template_text = std::move(*text);
    // A template that attaches the cloud-init seed ({{seed}}: real cloud images) gets one per
    // generation, written once everything is checked (CreateDomain).
    if (opts.template_text.find("{{seed}}") != std::string::npos) {
      opts.seed_path = SeedPath(config_.state_dir, spec);
    }
  }
  // Every domain gets the org.regen.events.0 channel: the agent writes the instance's events to
  // its socket (agent/event_delivery.h).
  opts.events_socket = EventsSocketPath(config_.state_dir, spec.name);
  if (opts.events_socket.size() > kMaxUnixSocketPath) {
    spdlog::warn(
        "instance {}: no events channel: {} is longer than a unix socket path may be "
        "(choose a shorter state_dir); its events go to its event file only",
        spec.name, opts.events_socket);
    opts.events_socket.clear();
  }
  return checked;
}

Status Agent::CreateDomain(const InstanceSpec& spec) {
  ASSIGN_OR_RETURN(CheckedCreate checked, CheckCreate(spec));
  DomainXmlOptions& opts = checked.options;
  // The whole spec is checked (BuildDomainXml is pure) before the first file is touched.
  ASSIGN_OR_RETURN(std::string xml, BuildDomainXml(spec, opts));
  if (!spec.image.empty()) {
    // An image staged here for this version (upgrades) backs the overlay; else the image itself.
    std::string staged = stager_.StagedPath(spec.service, spec.version, spec.image);
    ASSIGN_OR_RETURN(std::string disk,
                     disks_.Prepare(spec, staged.empty() ? checked.image : staged));
    if (disk != opts.disk_path) return Internal("instance " + spec.name + ": overlay " + disk);
  }
  if (!opts.seed_path.empty()) {
    RemoveNoCloudSeeds(config_.state_dir, spec.name);  // earlier generations' seeds
    ASSIGN_OR_RETURN(std::string seed, WriteNoCloudSeed(runner_, config_.state_dir, spec));
    if (seed != opts.seed_path) return Internal("instance " + spec.name + ": seed " + seed);
  }
  if (!opts.events_socket.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(config_.state_dir + "/channels", ec);
    if (ec) {
      spdlog::warn("instance {}: no events channel: cannot create {}/channels: {}", spec.name,
                   config_.state_dir, ec.message());
      opts.events_socket.clear();
      ASSIGN_OR_RETURN(xml, BuildDomainXml(spec, opts));
    } else {
      // A socket left by an earlier generation would make qemu's bind fail.
      std::filesystem::remove(opts.events_socket, ec);
    }
  }
  // Preparing the disk may take long (qemu-img): a domain started after the lease ran out may
  // already run elsewhere.
  if (controller_mode() && lease_.Expired()) {
    return FailedPrecondition("instance " + spec.name +
                              ": the fencing lease ran out while its disk was prepared");
  }
  // Known to the fencing backstop before its qemu exists: a main loop stuck in this start while
  // the lease runs out cannot keep the backstop from killing it.
  lease_.NoteStarting(spec.name);
  return hypervisor_.DefineAndStart(spec.name, xml);
}

bool Agent::InBackoff(const std::string& name) {
  auto it = backoff_.find(name);
  return it != backoff_.end() && clock_.Now() < it->second.next;
}

int64_t Agent::NoteFailure(const std::string& name, bool destroy) {
  // Creates: poll_interval doubled per failure in a row, at most 1024 polls and kMaxBackoff.
  // Destroys (controller mode): fast and bounded, and the main loop wakes for them.
  const bool fast = destroy && controller_mode();
  const BackoffPolicy policy =
      fast ? BackoffPolicy{std::min<std::chrono::milliseconds>(config_.poll_interval,
                                                               kDestroyRetryMin),
                           kDestroyRetryMax, 2}
           : BackoffPolicy{
                 config_.poll_interval,
                 std::min<std::chrono::milliseconds>(config_.poll_interval * 1024, kMaxBackoff), 2};
  auto it = backoff_.find(name);
  if (it == backoff_.end() || it->second.backoff.policy().max != policy.max) {
    it = backoff_.insert_or_assign(name, Retry{Backoff(policy), {}}).first;
  }
  Retry& r = it->second;
  r.next = clock_.Now() + r.backoff.Next();
  if (fast) next_retry_ = next_retry_ ? std::min(*next_retry_, r.next) : r.next;
  return r.backoff.failures();
}

}  // namespace regen
