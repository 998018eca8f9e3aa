#include "controller/domain_report.h"

#include "common/text.h"

namespace regen {

namespace {

constexpr size_t kMaxName = 256;
constexpr size_t kMaxReason = 1024;

// Valid, short text comes out unchanged.
void Bound(std::string* s, size_t max) { *s = SanitizeText(*s, max); }

bool NewlyHealthFailed(const std::map<std::string, v1::DomainStatus>& before,
                       const std::string& name, const v1::DomainStatus& d) {
  if (!d.health_failed()) return false;
  auto old = before.find(name);
  return old == before.end() || !old->second.health_failed() ||
         old->second.generation() != d.generation();
}

bool FirstPass(const std::map<std::string, v1::DomainStatus>& before, const std::string& name,
               const v1::DomainStatus& d) {
  if (!d.health_passed()) return false;
  auto old = before.find(name);
  return old == before.end() || !old->second.health_passed() ||
         old->second.generation() != d.generation();
}

}  // namespace

ReportOutcome ClassifyReport(const std::string& host,
                             const std::map<std::string, v1::DomainStatus>& before,
                             const std::map<std::string, v1::DomainStatus>& now,
                             const std::map<std::string, InstanceRecord>& instances,
                             bool complete) {
  ReportOutcome out;
  for (const auto& [name, d] : now) {
    if (!FirstPass(before, name, d)) continue;
    auto inst = instances.find(name);
    if (inst != instances.end() && inst->second.allocation.host == host) {
      out.newly_passed.insert(inst->second.service);
    }
  }
  for (const auto& [name, inst] : instances) {
    if (inst.moving_from == host && !now.count(name)) {
      out.finished_moves.push_back(name);
      continue;
    }
    if (inst.allocation.host != host || !inst.moving_from.empty()) continue;
    auto d = now.find(name);
    if (d == now.end()) {
      // Running means a report of this host showed its domain at this generation; every change
      // of generation or host goes through creating or moving. So missing now is gone (a
      // partial report says nothing of what it leaves out).
      if (complete && inst.state == InstanceState::kRunning) out.gone.push_back(name);
      continue;
    }
    if (d->second.generation() != inst.generation) continue;
    auto state = d->second.state();
    if (inst.state == InstanceState::kCreating && state == v1::DOMAIN_STATE_RUNNING) {
      out.now_running.push_back(name);
    } else if (IsActive(inst.state) &&
               (state == v1::DOMAIN_STATE_CRASHED || state == v1::DOMAIN_STATE_SHUTOFF)) {
      out.failed.push_back(name);
    } else if (IsActive(inst.state) && NewlyHealthFailed(before, name, d->second)) {
      out.health_failed.push_back(name);
    }
  }
  return out;
}

v1::DomainEvent HealthFailureEvent(const std::string& host, const v1::DomainStatus& d) {
  v1::DomainEvent e;
  e.set_host(host);
  e.set_instance(d.name());
  e.set_generation(d.generation());
  e.set_state(d.state());
  e.set_reason("health check failed " + std::to_string(d.health_failures()) +
               " times in a row: " + d.health_detail());
  e.set_detected_by(v1::DETECTED_BY_HEALTH_CHECK);
  return e;
}

v1::DomainsReport BoundReport(v1::DomainsReport report) {
  Bound(report.mutable_host(), kMaxName);
  Bound(report.mutable_applied_desired_operation_id(), kMaxName);
  for (auto& d : *report.mutable_domains()) {
    Bound(d.mutable_name(), kMaxName);
    Bound(d.mutable_reason(), kMaxReason);
    Bound(d.mutable_service(), kMaxName);
    Bound(d.mutable_version(), kMaxName);
    Bound(d.mutable_health_detail(), kMaxReason);
  }
  for (auto& s : *report.mutable_staged()) {
    Bound(s.mutable_service(), kMaxName);
    Bound(s.mutable_version(), kMaxName);
    Bound(s.mutable_image(), kMaxReason);
    Bound(s.mutable_error(), kMaxReason);
  }
  return report;
}

v1::DomainEvent BoundEvent(v1::DomainEvent event) {
  Bound(event.mutable_host(), kMaxName);
  Bound(event.mutable_instance(), kMaxName);
  Bound(event.mutable_reason(), kMaxReason);
  return event;
}

google::protobuf::RepeatedPtrField<v1::FencedInstance> BoundFenced(
    google::protobuf::RepeatedPtrField<v1::FencedInstance> fenced) {
  for (auto& f : fenced) {
    Bound(f.mutable_instance(), kMaxName);
    Bound(f.mutable_reason(), kMaxReason);
  }
  return fenced;
}

StagingOutcome ClassifyStaging(const StagedImages& before,
                               const google::protobuf::RepeatedPtrField<v1::StagedImage>& now) {
  StagingOutcome out;
  for (const auto& s : now) out.staged[{s.service(), s.version()}] = s;
  for (const auto& [key, s] : out.staged) {
    auto old = before.find(key);
    if (old == before.end() || old->second.error() != s.error() ||
        old->second.image() != s.image()) {
      out.changed.insert(key.first);
    }
    if (!s.error().empty()) out.failed.push_back(s);
  }
  return out;
}

}  // namespace regen
