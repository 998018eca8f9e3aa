#include "agent/health_tracker.h"

#include <algorithm>

namespace regen {

const char* HealthStateName(HealthState state) {
  switch (state) {
    case HealthState::kPassing:
      return "passing";
    case HealthState::kFailing:
      return "failing";
    case HealthState::kUnknown:
      break;
  }
  return "unknown";
}

bool HealthCheckApplies(const HealthCheck& check, const std::string& ip) {
  return (check.type == "tcp" || check.type == "http") && check.port > 0 && !ip.empty();
}

HealthTracker::HealthTracker(int64_t max_failed) : max_failed_(std::max<int64_t>(max_failed, 1)) {}

bool HealthTracker::Record(bool ok, const std::string& detail) {
  ++probes_;
  if (ok) {
    state_ = HealthState::kPassing;
    passed_once_ = true;
    consecutive_failures_ = 0;
    failed_ = false;
    last_error_.clear();
    return false;
  }
  state_ = HealthState::kFailing;
  ++consecutive_failures_;
  last_error_ = detail;
  failed_ = consecutive_failures_ >= max_failed_;
  return consecutive_failures_ == max_failed_;
}

void HealthMonitor::Sync(const std::vector<HealthTarget>& targets, Clock::TimePoint now) {
  std::map<std::string, Entry> next;
  for (const auto& t : targets) {
    auto it = entries_.find(t.instance);
    if (it != entries_.end() && it->second.target.generation == t.generation &&
        it->second.target.ip == t.ip && it->second.target.check == t.check) {
      next.emplace(t.instance, std::move(it->second));
      continue;
    }
    Entry e{t, HealthTracker(t.check.max_failed),
            now + std::chrono::duration_cast<Clock::Duration>(t.check.interval), false};
    next.emplace(t.instance, std::move(e));
  }
  entries_ = std::move(next);
}

std::vector<HealthTarget> HealthMonitor::TakeDue(Clock::TimePoint now) {
  std::vector<HealthTarget> due;
  for (auto& [name, e] : entries_) {
    if (e.in_flight || now < e.next_due) continue;
    e.in_flight = true;
    e.next_due = now + std::chrono::duration_cast<Clock::Duration>(e.target.check.interval);
    due.push_back(e.target);
  }
  return due;
}

std::optional<HealthVerdict> HealthMonitor::OnResult(const std::string& instance,
                                                     int64_t generation, bool ok,
                                                     const std::string& detail) {
  auto it = entries_.find(instance);
  if (it == entries_.end()) return std::nullopt;
  Entry& e = it->second;
  if (e.target.generation != generation || !e.in_flight) return std::nullopt;
  e.in_flight = false;
  if (!e.tracker.Record(ok, detail)) return std::nullopt;
  return HealthVerdict{instance, generation, e.tracker.consecutive_failures(),
                       e.tracker.last_error()};
}

std::optional<Clock::TimePoint> HealthMonitor::NextDue() const {
  std::optional<Clock::TimePoint> out;
  for (const auto& [name, e] : entries_) {
    if (e.in_flight) continue;
    if (!out || e.next_due < *out) out = e.next_due;
  }
  return out;
}

HealthReport HealthMonitor::Report() const {
  HealthReport out;
  for (const auto& [name, e] : entries_) {
    out[name] = {e.target.generation,     e.tracker.state(),
                 e.tracker.passed_once(), e.tracker.consecutive_failures(),
                 e.tracker.last_error(),  e.tracker.failed()};
  }
  return out;
}

}  // namespace regen
