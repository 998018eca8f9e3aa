#include "agent/agent_report.h"

#include <algorithm>

#include "common/text.h"

namespace regen {

namespace {

// Names, services and versions come from domain metadata (a domain defined by hand can hold
// anything): bounded like any outside text, but shorter.
constexpr size_t kMaxNameBytes = 256;

std::string Name(const std::string& s) { return SanitizeText(s, kMaxNameBytes); }
std::string Reason(const std::string& s) { return SanitizeText(s, kMaxReasonBytes); }

v1::DomainState StateToProto(DomainState s) {
  switch (s) {
    case DomainState::kRunning:
      return v1::DOMAIN_STATE_RUNNING;
    case DomainState::kPaused:
      return v1::DOMAIN_STATE_PAUSED;
    case DomainState::kShutoff:
      return v1::DOMAIN_STATE_SHUTOFF;
    case DomainState::kCrashed:
      return v1::DOMAIN_STATE_CRASHED;
    case DomainState::kStarting:
      return v1::DOMAIN_STATE_STARTING;
    case DomainState::kUnknown:
      break;
  }
  return v1::DOMAIN_STATE_UNKNOWN;
}

v1::DomainState StateNameToProto(const std::string& name) {
  for (auto s : {DomainState::kRunning, DomainState::kPaused, DomainState::kShutoff,
                 DomainState::kCrashed, DomainState::kStarting}) {
    if (name == DomainStateName(s)) return StateToProto(s);
  }
  return v1::DOMAIN_STATE_UNKNOWN;
}

void AddStaged(const std::vector<StagedImage>& staged,
               google::protobuf::RepeatedPtrField<v1::StagedImage>* out) {
  for (const auto& s : staged) {
    auto* p = out->Add();
    p->set_service(Name(s.service));
    p->set_version(Name(s.version));
    p->set_image(SanitizeText(s.source));
    p->set_error(Reason(s.error));
  }
}

const InstanceHealth* HealthOf(const HealthReport& health, const std::string& name) {
  auto it = health.find(name);
  return it == health.end() ? nullptr : &it->second;
}

}  // namespace

InstanceSpec SpecFromProto(const v1::InstanceSpec& p) {
  InstanceSpec s;
  s.name = p.name();
  s.service = p.service();
  s.update_domain = p.update_domain();
  s.version = p.version();
  s.generation = p.generation();
  s.image = p.image();
  s.domain_template = p.domain_template();
  s.dns_name = p.dns_name();
  for (const auto& [k, v] : p.metadata()) s.metadata[k] = v;
  s.allocation.host = p.allocation().host();
  const auto& r = p.allocation().resources();
  s.allocation.resources = {r.vcpus(), r.memory_mib(), r.disk_gib(), r.bandwidth_mbps()};
  s.allocation.ip = p.allocation().ip();
  s.allocation.mac = p.allocation().mac();
  s.prefix_len = p.prefix_len() >= 1 && p.prefix_len() <= 32 ? p.prefix_len() : 0;
  s.gateway = p.gateway();
  return s;
}

std::optional<HealthCheck> HealthCheckFromProto(const v1::HealthCheckSpec& p) {
  if (p.type() != "tcp" && p.type() != "http") return std::nullopt;
  HealthCheck c;
  c.type = p.type();
  c.port = p.port();
  c.path = p.path().empty() ? "/" : p.path();
  // Bounded as the service spec bounds them (config/service_spec.cc): a value from a controller
  // outside them is clamped, never turned into a duration that overflows the clock.
  constexpr int64_t kMaxMs = 3'600'000;  // 1 h
  constexpr int64_t kMaxFailed = 100;
  if (p.interval_ms() >= 10)
    c.interval = std::chrono::milliseconds(std::min(p.interval_ms(), kMaxMs));
  if (p.timeout_ms() >= 1) c.timeout = std::chrono::milliseconds(std::min(p.timeout_ms(), kMaxMs));
  if (c.timeout >= c.interval) c.timeout = c.interval / 2;
  if (p.max_failed() >= 1) c.max_failed = std::min(p.max_failed(), kMaxFailed);
  if (c.port < 1 || c.port > 65535) return std::nullopt;
  return c;
}

DesiredSet DesiredFromProto(const v1::DesiredInstances& d) {
  DesiredSet out;
  for (const auto& p : d.instances()) {
    out.instances.push_back(SpecFromProto(p));
    if (auto check = HealthCheckFromProto(p.health_check())) out.checks[p.name()] = *check;
  }
  for (const auto& p : d.stage()) out.stage.push_back({p.service(), p.version(), p.image()});
  return out;
}

v1::DomainStatus DomainToProto(const DomainInfo& d, const InstanceHealth* health) {
  v1::DomainStatus p;
  p.set_name(Name(d.name));
  p.set_state(StateToProto(d.state));
  p.set_reason(Reason(d.reason));
  if (d.metadata.managed) {
    p.set_service(Name(d.metadata.service));
    p.set_update_domain(d.metadata.update_domain);
    p.set_version(Name(d.metadata.version));
    p.set_generation(d.metadata.generation);
  }
  if (health != nullptr && health->generation == d.metadata.generation) {
    p.set_health(health->state == HealthState::kPassing   ? v1::HEALTH_STATE_PASSING
                 : health->state == HealthState::kFailing ? v1::HEALTH_STATE_FAILING
                                                          : v1::HEALTH_STATE_UNKNOWN);
    p.set_health_passed(health->passed_once);
    p.set_health_failures(health->consecutive_failures);
    p.set_health_detail(SanitizeText(health->last_error, kMaxHealthDetailBytes));
    p.set_health_failed(health->failed);
  }
  return p;
}

v1::DomainsReport BuildDomainsReport(const std::string& host,
                                     const std::vector<DomainInfo>& domains,
                                     const HealthReport& health,
                                     const std::vector<StagedImage>& staged) {
  v1::DomainsReport r;
  r.set_host(host);
  for (const auto& d : domains) *r.add_domains() = DomainToProto(d, HealthOf(health, d.name));
  AddStaged(staged, r.mutable_staged());
  r.set_complete(true);
  return r;
}

void AddDomains(const std::vector<DomainInfo>& domains, const HealthReport& health,
                const std::vector<StagedImage>& staged, v1::Hello* hello) {
  for (const auto& d : domains) *hello->add_domains() = DomainToProto(d, HealthOf(health, d.name));
  AddStaged(staged, hello->mutable_staged());
}

void AddFenced(const std::vector<FencedRecord>& fenced, v1::Hello* hello) {
  for (const auto& f : fenced) {
    auto* p = hello->add_fenced();
    p->set_instance(Name(f.instance));
    p->set_generation(f.generation);
    p->set_fenced_unix_ms(f.fenced_unix_ms);
    p->set_reason(Reason(f.reason));
  }
}

v1::DomainEvent BuildDomainEvent(const std::string& host, const FailureRecord& f) {
  v1::DomainEvent e;
  e.set_host(host);
  e.set_instance(Name(f.instance));
  e.set_generation(f.generation);
  e.set_state(StateNameToProto(f.state));
  e.set_reason(Reason(f.reason));
  e.set_detected_by(f.detected_by == "event"          ? v1::DETECTED_BY_EVENT
                    : f.detected_by == "poll"         ? v1::DETECTED_BY_POLL
                    : f.detected_by == "health_check" ? v1::DETECTED_BY_HEALTH_CHECK
                                                      : v1::DETECTED_BY_UNKNOWN);
  e.set_detected_unix_ms(f.detected_unix_ms);
  return e;
}

}  // namespace regen
