#include "controller/domain_report.h"

namespace regen {

namespace {

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
                             const std::map<std::string, InstanceRecord>& instances) {
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
    if (d == now.end() || d->second.generation() != inst.generation) continue;
    auto state = d->second.state();
    if (inst.state == InstanceState::kCreating && state == v1::DOMAIN_STATE_RUNNING) {
      out.now_running.push_back(name);
    } else if (IsActive(inst.state) &&
               (state == v1::DOMAIN_STATE_CRASHED || state == v1::DOMAIN_STATE_SHUTOFF)) {
      out.failed.push_back(name);
    }
  }
  return out;
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
