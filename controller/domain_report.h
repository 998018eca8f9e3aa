// Domain reports: a pure classification of what one host's agent reported (its domains and staged
// images) against the desired state, so the controller knows which instances run now, which
// failed, which planned moves may go on, and which upgrades may move. No I/O; any thread.
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
  // Services with an instance on this host whose health probe passed for the first time (for
  // this generation): an upgrade waiting for it may move on.
  std::set<std::string> newly_passed;
};

// `before` and `now`: the host's reported domains by name, the previous report and this one.
ReportOutcome ClassifyReport(const std::string& host,
                             const std::map<std::string, v1::DomainStatus>& before,
                             const std::map<std::string, v1::DomainStatus>& now,
                             const std::map<std::string, InstanceRecord>& instances);

struct StagingOutcome {
  StagedImages staged;                  // the report's staged images by (service, version)
  std::set<std::string> changed;        // services whose staged image changed (or its error)
  std::vector<v1::StagedImage> failed;  // staging errors in this report
};

StagingOutcome ClassifyStaging(const StagedImages& before,
                               const google::protobuf::RepeatedPtrField<v1::StagedImage>& now);

}  // namespace regen
