#include "controller/host_ops.h"

#include "common/log.h"
#include "common/names.h"

namespace regen {

namespace {

// The state `verb` leaves the host in, or the refusal for a host in `state`.
Result<HostState> Target(const std::string& host, HostState state, HostVerb verb) {
  const std::string is = "host " + host + " is " + HostStateName(state);
  switch (verb) {
    case HostVerb::kUndrain:
      if (state == HostState::kDraining) return HostState::kUp;
      if (state == HostState::kCordoned) {
        return FailedPrecondition(is + ", not draining; use `regenctl host uncordon " + host + "`");
      }
      return FailedPrecondition(is + ", not draining: nothing to undrain");
    case HostVerb::kCordon:
      if (state == HostState::kUp) return HostState::kCordoned;
      if (state == HostState::kDraining) {
        return FailedPrecondition(is + " (it takes no new instances already); undrain it first");
      }
      if (state == HostState::kCordoned) return FailedPrecondition(is + " already");
      return FailedPrecondition(is + "; only an up host can be cordoned");
    case HostVerb::kUncordon:
      if (state == HostState::kCordoned) return HostState::kUp;
      if (state == HostState::kDraining) {
        return FailedPrecondition(is + ", not cordoned; use `regenctl host undrain " + host + "`");
      }
      return FailedPrecondition(is + ", not cordoned: nothing to uncordon");
  }
  return InvalidArgument("unknown host operation");
}

}  // namespace

const char* HostVerbName(HostVerb verb) {
  switch (verb) {
    case HostVerb::kUndrain:
      return "undrain";
    case HostVerb::kCordon:
      return "cordon";
    case HostVerb::kUncordon:
      return "uncordon";
  }
  return "unknown";
}

Status HostOps::Apply(const v1::HostRequest& request, HostVerb verb) {
  const std::string& name = request.host();
  RETURN_IF_ERROR(ValidateName("host", name));
  const std::string& op = request.operation_id();
  if (!op.empty()) {
    ASSIGN_OR_RETURN(auto done, core_.state.FindOperation(op));
    if (done) return Status::Ok();  // applied before: nothing happens twice
  }
  const HostRecord* cur = core_.state.host(name);
  if (cur == nullptr) return NotFound("host \"" + name + "\" is not known");
  // A suspect or down host keeps what the operator made it (held): the verb applies to that,
  // and the host comes back to the result.
  const bool away = cur->state == HostState::kSuspect || cur->state == HostState::kDown;
  const HostState as = away ? cur->held : cur->state;
  ASSIGN_OR_RETURN(HostState target, Target(name, as, verb));
  HostRecord next = *cur;
  next.held = target;
  if (!away) next.state = target;
  const std::string msg = std::string(HostStateName(as)) + " -> " + HostStateName(target) + ": " +
                          HostVerbName(verb) + " requested by operator" +
                          (away ? std::string(" (the host is ") + HostStateName(cur->state) +
                                      "; it comes back " + HostStateName(target) + ")"
                           : target == HostState::kUp ? " (takes new instances again)"
                                                      : " (no new instances; running ones stay)");
  StateChange change;
  change.hosts.push_back(next);
  change.events.push_back(core_.MakeEvent(EventKind::kHostState, nullptr, name, msg));
  if (!op.empty()) {
    int64_t now = core_.clock.WallMillis();
    change.operations.push_back({op, HostVerbName(verb), name, "{}", "done", now, now});
  }
  core_.Commit(std::move(change));
  Status s = core_.alloc().SetHostState(name, next.state);
  if (!s.ok()) spdlog::error("allocator: host {}: {}", name, s.message());
  spdlog::info("op={} kind={} target={}: host {}", op, HostVerbName(verb), name, msg);
  return Status::Ok();
}

}  // namespace regen
