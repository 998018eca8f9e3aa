// The desired-vs-actual plan for one host's domains: a pure function, the heart of the agent's
// level-triggered loop. Any thread.
#pragma once

#include <string>
#include <vector>

#include "agent/hypervisor.h"
#include "common/model.h"

namespace regen {

struct ReconcileAction {
  enum class Kind {
    kCreate,    // desired, no domain: define and start it
    kRecreate,  // desired, domain exists but is the wrong generation, or failed and restarted here
    kDestroy,   // a Regen domain that is not desired here (moved, removed): destroy and undefine
  };
  Kind kind;
  std::string name;
  InstanceSpec spec;  // for kCreate / kRecreate
  std::string reason;
};
const char* ActionKindName(ReconcileAction::Kind kind);

// A desired instance whose domain exists but does not run: the patent's failure detection.
struct DetectedFailure {
  std::string instance;
  int64_t generation = 0;
  DomainState state = DomainState::kUnknown;
  std::string reason;
};

// A name clash with a domain Regen did not create: never touched, only reported.
struct Conflict {
  std::string name;
  std::string message;
};

struct ReconcilePlan {
  std::vector<ReconcileAction> actions;
  std::vector<DetectedFailure> failures;
  std::vector<Conflict> conflicts;
  bool empty() const { return actions.empty() && failures.empty() && conflicts.empty(); }
};

struct ReconcileOptions {
  // Standalone mode (no controller): a failed domain is re-created here, same generation.
  // With a controller: it is only reported; the controller heals it elsewhere (never twice).
  bool restart_failed_locally = false;
};

// `desired`: the instances this host must run. `actual`: every domain on the host. Domains
// without Regen metadata are never destroyed or re-created. Actions are ordered: destroys first
// (they free resources), then re-creations, then creations; each group by name.
ReconcilePlan PlanReconcile(const std::vector<InstanceSpec>& desired,
                            const std::vector<DomainInfo>& actual, const ReconcileOptions& options);

}  // namespace regen
