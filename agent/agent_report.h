// What the agent tells the controller, in wire form: its domains with their health (Hello and
// DomainsReport), failure events, staged images, fenced instances, and the desired instances it
// reads back. Every string that comes from outside (libvirt, a guest's health answer, a command's
// output) goes through SanitizeText here, so a message always serializes and parses (proto3
// strings must be UTF-8). Pure functions; any thread.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/fence_log.h"
#include "agent/health_tracker.h"
#include "agent/hypervisor.h"
#include "agent/image_stager.h"
#include "common/proto/regen.pb.h"

namespace regen {

// Bounds of the texts an agent reports (bytes): a reason or error, a probe's error.
inline constexpr size_t kMaxReasonBytes = 1024;
inline constexpr size_t kMaxHealthDetailBytes = 512;

InstanceSpec SpecFromProto(const v1::InstanceSpec& p);
// The instance's health check, or nullopt when it has none (unset, type "" or none). Missing or
// out-of-range settings take service.yaml's defaults, so a bad message cannot make probes spin.
std::optional<HealthCheck> HealthCheckFromProto(const v1::HealthCheckSpec& p);
// A desired set as Agent::SetControllerDesired takes it: the specs, their checks, the images to
// stage (what ControllerLink::OnDesired hands the agent, and agent_intake_fuzz with it).
struct DesiredSet {
  std::vector<InstanceSpec> instances;
  std::map<std::string, HealthCheck> checks;
  std::vector<StageRequest> stage;
};
DesiredSet DesiredFromProto(const v1::DesiredInstances& d);
// `health`: the instance's health when the agent probes it (null: not probed).
v1::DomainStatus DomainToProto(const DomainInfo& d, const InstanceHealth* health = nullptr);
// A complete report of the host's domains (`domains`: a full listing) with their current health.
v1::DomainsReport BuildDomainsReport(const std::string& host,
                                     const std::vector<DomainInfo>& domains,
                                     const HealthReport& health,
                                     const std::vector<StagedImage>& staged);
// Adds `domains` (with their health) and `staged` to a Hello.
void AddDomains(const std::vector<DomainInfo>& domains, const HealthReport& health,
                const std::vector<StagedImage>& staged, v1::Hello* hello);
void AddFenced(const std::vector<FencedRecord>& fenced, v1::Hello* hello);
v1::DomainEvent BuildDomainEvent(const std::string& host, const FailureRecord& f);

}  // namespace regen
