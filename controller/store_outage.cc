// Controller's side of a state store that refuses writes (issue 15; rule: no VM is stopped for
// something that happened to the controller alone): re-reading the store after a refused write
// and replaying, from what the agents last said, what the refused steps were about. Main loop
// thread only (called from Tick).
#include <algorithm>

#include "common/log.h"
#include "common/store_refusal.h"
#include "controller/controller.h"

namespace regen {

Status Controller::StepRefusal() const {
  std::string why = core_.step_store_error ? core_.step_store_error->message() : "";
  std::string applied =
      core_.step_commits == 0
          ? "nothing of the request was applied"
          : "the request was applied in part (" + std::to_string(core_.step_commits) +
                " of its writes were stored; the controller carries on from there)";
  return Unavailable(std::string(kStoreRefusedPrefix) + " (" + why + "): " + applied +
                     "; the controller keeps its hosts and VMs as they are and writes again once "
                     "the store does (see the controller's log); retry then");
}

void Controller::OnStepException() {
  core_.resync_needed = true;
  replay_pending_ = true;
}

bool Controller::ResyncWithStore() {
  const auto instances = core_.state.instances();
  const auto hosts = core_.state.hosts();
  const int64_t revision = core_.state.topology_revision();
  Status loaded = core_.state.Load();
  if (!loaded.ok()) {
    spdlog::error(
        "state store: re-reading it after a refused write failed: {}; tried again in "
        "{} ms, writes wait until then",
        loaded.message(), resync_interval_ms_);
    return false;
  }
  // Memory-only fields an agent restates (heartbeat time, applied revision) come back from the
  // lease keeper and the next Hello; the records themselves are the store's now.
  Status rebuilt = core_.RebuildAllocator();
  if (!rebuilt.ok()) {
    spdlog::error("state store: the allocator could not be rebuilt from it: {}", rebuilt.message());
    return false;
  }
  bool same = core_.state.instances() == instances && core_.state.topology_revision() == revision;
  for (const auto& [name, h] : core_.state.hosts()) {
    auto old = hosts.find(name);
    same = same && old != hosts.end() && old->second.state == h.state &&
           old->second.address == h.address && old->second.capacity == h.capacity;
  }
  same = same && hosts.size() == core_.state.hosts().size();
  if (!same) {
    // A write whose outcome the store could not tell (an I/O error at commit) was applied after
    // all: the topology and the published locations start from the store's view, as at a load.
    spdlog::warn(
        "state store: re-read state differs from memory (a refused write was stored "
        "after all); continuing from the store's");
    desired_.Reset();
    core_.topology_dirty = true;
  }
  core_.resync_needed = false;
  spdlog::debug("state store re-read after {} refused writes in {} ms; writing again",
                core_.outage_refusals, core_.clock.WallMillis() - core_.outage_since_ms);
  return true;
}

void Controller::ReplayAfterResync() {
  EnsureServiceInstances();
  std::vector<std::string> hosts;
  for (const auto& [name, session] : core_.sessions) {
    if (session.sink != nullptr) hosts.push_back(name);
  }
  for (const std::string& host : hosts) {
    HostSession* session = core_.session(host);
    if (session == nullptr || !session->unregistered) continue;
    const v1::Hello hello = *session->unregistered;
    if (!StoreHostRecord(hello)) break;
    session->unregistered.reset();
    healer_.RecreateFenced(host, BoundFenced(hello.fenced()));
  }
  for (const std::string& host : hosts) {
    if (core_.step_store_error) break;
    HostSession* session = core_.session(host);
    if (session == nullptr || session->sink == nullptr || !session->reported) continue;
    // The last report as if it were new: failures, gone domains, health verdicts, finished
    // moves and running instances that the refused steps did not store.
    std::set<std::string> services;
    ReportOutcome outcome =
        ClassifyReport(host, {}, session->domains, core_.state.instances(), session->complete);
    ApplyReport(host, outcome, services);
  }
  desired_.SyncTopology();
  // Every host's desired set once, the re-registered ones included.
  for (const std::string& host : hosts) desired_.PushDesired(host);
  if (core_.step_store_error) {
    // Refused again: after the next re-read, waiting longer each time (up to 2 s) so that a long
    // outage does not log the same failures twice a second.
    resync_interval_ms_ = std::min<int64_t>(resync_interval_ms_ * 2, 2000);
    return;
  }
  replay_pending_ = false;
  resync_interval_ms_ = 500;
}

}  // namespace regen
