// Domain reports: a pure classification of what one host's agent reported (its domains and staged
// images) against the desired state, so the controller knows which instances run now, which
// failed, which planned moves may go on, and which upgrades may move; and the bounds put on the
// strings an agent sends before anything stores or prints them. No I/O; any thread.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/proto/regen.pb.h"
#include "controller/store.h"

namespace regen {

using StagedImages = std::map<std::pair<std::string, std::string>, v1::StagedImage>;

struct ReportOutcome {
  // Planned moves away from this host whose domain is gone: the new host may create them.
  std::vector<std::string> finished_moves;
  // Instances of this host (current generation) that were creating and now run.
  std::vector<std::string> now_running;
  // Active instances of this host (current generation) whose domain crashed or shut off.
  std::vector<std::string> failed;
  // Running instances of this host missing from a complete report: their domain is gone.
  std::vector<std::string> gone;
  // Active instances of this host (current generation) whose health check failed (the agent's
  // level, health_failed) and did not in the previous report of this session: each is healed
  // like a health-check DomainEvent (a verdict whose event was lost, say on a broken link).
  std::vector<std::string> health_failed;
  // Services with an instance on this host whose health probe passed for the first time (for
  // this generation): an upgrade waiting for it may move on.
  std::set<std::string> newly_passed;
};

// `before` and `now`: the host's reported domains by name, the previous report and this one.
// `complete`: `now` lists every domain of the host (a Hello, a DomainsReport with complete set);
// only then does a missing domain count as gone.
ReportOutcome ClassifyReport(const std::string& host,
                             const std::map<std::string, v1::DomainStatus>& before,
                             const std::map<std::string, v1::DomainStatus>& now,
                             const std::map<std::string, InstanceRecord>& instances,
                             bool complete = false);

// The DomainEvent a health_failed domain stands for (detected by the health check).
v1::DomainEvent HealthFailureEvent(const std::string& host, const v1::DomainStatus& d);

// Strings from an agent, bounded (gRPC has already refused invalid UTF-8): names to 256 bytes,
// reasons and errors to 1 KiB, each cut on a character boundary and control characters escaped,
// so a report cannot flood the event log or a terminal.
v1::DomainsReport BoundReport(v1::DomainsReport report);
v1::DomainEvent BoundEvent(v1::DomainEvent event);
google::protobuf::RepeatedPtrField<v1::FencedInstance> BoundFenced(
    google::protobuf::RepeatedPtrField<v1::FencedInstance> fenced);

struct StagingOutcome {
  StagedImages staged;                  // the report's staged images by (service, version)
  std::set<std::string> changed;        // services whose staged image changed (or its error)
  std::vector<v1::StagedImage> failed;  // staging errors in this report
};

StagingOutcome ClassifyStaging(const StagedImages& before,
                               const google::protobuf::RepeatedPtrField<v1::StagedImage>& now);

}  // namespace regen
