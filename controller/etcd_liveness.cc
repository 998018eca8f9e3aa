// The controller's side of the HA mode's host leases (DESIGN "Liveness, fencing and high
// availability"): agents keep their own leases in etcd; the controller admits only such agents,
// and declares a host down when etcd deleted its alive key (the agent fenced itself before the
// key's TTL could run out). Controller members; main loop thread.
#include "common/log.h"
#include "controller/controller.h"

namespace regen {

Status Controller::CheckLeaseMode(const v1::Hello& hello) const {
  const std::string& host = hello.host();
  if (core_.host_leases == nullptr) {
    if (!hello.etcd_lease()) return Status::Ok();
    return FailedPrecondition(
        "host " + host +
        ": its agent keeps its lease in etcd (agent.yaml etcd:), but this controller runs "
        "embedded (store: sqlite) and renews the agents' leases itself: remove the etcd block "
        "from that agent.yaml, or run the controllers with store: etcd");
  }
  if (!hello.etcd_lease()) {
    return FailedPrecondition(
        "host " + host +
        ": this controller runs in HA mode (store: etcd), where every agent keeps its own lease "
        "in etcd; add an etcd: block (endpoints, prefix, lease_ttl) to that host's agent.yaml");
  }
  int64_t gone = 0;
  if (LeaseGone(core_.host_leases->Get(), host, hello.etcd_lease_revision(), &gone)) {
    return FailedPrecondition(
        "host " + host + ": its etcd lease is gone (its alive key was deleted at revision " +
        std::to_string(gone) + ", after revision " + std::to_string(hello.etcd_lease_revision()) +
        " that this Hello names): it is taken back once it fenced and put "
        "its key again");
  }
  return Status::Ok();
}

void Controller::JudgeByEtcdLeases(bool maintenance) {
  const HostLeaseSource::Snapshot view = core_.host_leases->Get();
  std::vector<std::string> names;  // a copy: HostDown changes host records
  for (const auto& [name, rec] : core_.state.hosts()) names.push_back(name);
  for (const auto& name : names) {
    const HostRecord* h = core_.state.host(name);
    if (h == nullptr || h->state == regen::HostState::kDown) continue;
    const HostSession* session = core_.session(name);
    int64_t gone = 0;
    if (!LeaseGone(view, name, session == nullptr ? 0 : session->etcd_lease_revision, &gone)) {
      if (h->state == regen::HostState::kSuspect) {
        moves_.SetHostState(name, regen::HostState::kUp, "its etcd lease is alive again");
      }
      continue;
    }
    auto lease = core_.leases.Get(name);
    std::string why =
        "its etcd lease expired (alive key deleted at revision " + std::to_string(gone) + ")";
    if (DownDeferred(lease ? &*lease : nullptr, maintenance)) {
      if (h->state == regen::HostState::kUp) {
        moves_.SetHostState(name, regen::HostState::kSuspect,
                            why + "; down once the maintenance and its holds are over");
      }
      continue;
    }
    HostDown(name, why, 0);
  }
}

}  // namespace regen
