#include "agent/controller_dialer.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <utility>

#include "common/log.h"

namespace regen {

namespace {
// While an address is being dialled, states are looked at least this often (a wait on one
// channel cannot see the others change).
constexpr std::chrono::milliseconds kPollSlice{5};
}  // namespace

ControllerDialer::ControllerDialer(std::vector<std::string> addresses, Hooks hooks)
    : addresses_(std::move(addresses)), hooks_(std::move(hooks)) {
  for (const auto& a : addresses_) {
    Target t;
    t.address = a;
    targets_.push_back(std::move(t));
  }
  MutexLock lock(mu_);
  states_.assign(addresses_.size(), "not dialled yet");
}

std::chrono::milliseconds ControllerDialer::RetryDelay(const Target& t) const {
  if (hooks_.lease_running()) return kRetry;
  auto delay = kRetry;
  for (int64_t i = 1; i < t.failures && delay < kMaxRetry; ++i) delay *= 2;
  return std::min(delay, kMaxRetry);
}

void ControllerDialer::SetState(size_t index, std::string state) {
  MutexLock lock(mu_);
  states_[index] = std::move(state);
}

void ControllerDialer::Fail(Target& t, const std::string& why, SteadyTime now) {
  t.channel.reset();
  ++t.failures;
  t.failed = true;
  // From the start of the failed dial: a refused address is dialled every kRetry, not every
  // kRetry plus however long the refusal took.
  t.retry_at = std::max(now, t.dial_started + RetryDelay(t));
  SetState(static_cast<size_t>(&t - targets_.data()), why);
  CheckAllFailed();
}

void ControllerDialer::CheckAllFailed() {
  if (all_failed_reported_) return;
  for (const auto& t : targets_) {
    if (!t.failed) return;
  }
  all_failed_reported_ = true;
  if (!hooks_.on_all_failed) return;
  std::string summary;
  for (const View& v : Snapshot()) {
    summary += (summary.empty() ? "" : "; ") + v.address + ": " + v.state;
  }
  hooks_.on_all_failed(summary);
}

void ControllerDialer::DialDue(SteadyTime now, std::atomic<int64_t>* dial_attempts) {
  for (size_t i = 0; i < targets_.size(); ++i) {
    Target& t = targets_[i];
    if (t.channel || now < t.retry_at) continue;
    std::string why;
    t.dial_started = now;
    t.channel = hooks_.make_channel(t.address, &why);
    ++*dial_attempts;
    if (!t.channel) {
      Fail(t, why, now);
      continue;
    }
    t.channel->GetState(/*try_to_connect=*/true);
  }
}

std::optional<size_t> ControllerDialer::PickReady(SteadyTime now) {
  std::vector<size_t> order;
  if (redirect_) order.push_back(*redirect_);
  if (preferred_) order.push_back(*preferred_);
  for (size_t i = 0; i < targets_.size(); ++i) order.push_back(i);
  for (size_t i : order) {
    Target& t = targets_[i];
    if (!t.channel || now < t.retry_at) continue;
    grpc_connectivity_state s = t.channel->GetState(/*try_to_connect=*/true);
    if (s == GRPC_CHANNEL_READY) return i;
    if (s == GRPC_CHANNEL_TRANSIENT_FAILURE || s == GRPC_CHANNEL_SHUTDOWN) {
      Fail(t, "connection refused or failed: nothing listens, or the TLS handshake failed", now);
    } else if (now - t.dial_started >= kDialWindow) {
      Fail(t, "no connection within " + std::to_string(kDialWindow.count()) + " ms", now);
    }
  }
  return std::nullopt;
}

void ControllerDialer::WaitForChange(SteadyTime now) {
  SteadyTime until = now + kMaxRetry;
  for (const auto& t : targets_) {
    until = std::min(until, t.retry_at > now ? t.retry_at : now + kPollSlice);
  }
  // A channel being dialled: wait on its state (at most one slice, for the others' sake).
  for (auto& t : targets_) {
    if (!t.channel || now < t.retry_at) continue;
    grpc_connectivity_state s = t.channel->GetState(false);
    if (s == GRPC_CHANNEL_READY) continue;
    auto slice = std::chrono::system_clock::now() + (until - now);
    t.channel->WaitForStateChange(s, slice);
    return;
  }
  hooks_.wait_until(until);
}

std::optional<ControllerDialer::Ready> ControllerDialer::Next(std::atomic<int64_t>* dial_attempts) {
  while (!hooks_.stopped()) {
    auto now = std::chrono::steady_clock::now();
    DialDue(now, dial_attempts);
    if (std::optional<size_t> i = PickReady(now)) {
      if (redirect_ == i) redirect_.reset();
      return Ready{*i, targets_[*i].address, targets_[*i].channel};
    }
    WaitForChange(now);
  }
  return std::nullopt;
}

void ControllerDialer::Standby(size_t index, const std::string& active) {
  auto now = std::chrono::steady_clock::now();
  Target& t = targets_[index];
  ++t.failures;
  t.failed = true;
  t.retry_at = now + RetryDelay(t);  // the channel is kept: asked again then
  SetState(index, "standby (active at " + (active.empty() ? "unknown" : active) + ")");
  bool listed = active.empty();
  for (size_t i = 0; i < targets_.size(); ++i) {
    if (targets_[i].address != active) continue;
    listed = true;
    if (i == index) continue;
    redirect_ = i;
    if (!targets_[i].channel) targets_[i].retry_at = now;
  }
  if (!listed && unlisted_warned_.insert(active).second) {
    spdlog::warn(
        "the standby controller at {} names {} as the active one, which controller_address does "
        "not list: add it to controller_address in agent.yaml (until then the agent tries the "
        "addresses it has)",
        t.address, active);
  }
  CheckAllFailed();
}

void ControllerDialer::Connected(size_t index) {
  MutexLock lock(mu_);
  connected_ = addresses_[index];
  states_[index] = "connected (active)";
}

void ControllerDialer::SessionEnded(size_t index) {
  auto now = std::chrono::steady_clock::now();
  preferred_ = index;
  redirect_.reset();
  all_failed_reported_ = false;
  for (auto& t : targets_) {
    t.channel.reset();
    t.failures = 0;
    t.failed = false;
    t.retry_at = now;
  }
  SetState(index, "was the active one; its stream ended");
  MutexLock lock(mu_);
  connected_.clear();
}

void ControllerDialer::Failed(size_t index, const std::string& why) {
  auto now = std::chrono::steady_clock::now();
  targets_[index].dial_started = now;
  Fail(targets_[index], why, now);
}

std::string ControllerDialer::connected() const {
  MutexLock lock(mu_);
  return connected_;
}

std::vector<ControllerDialer::View> ControllerDialer::Snapshot() const {
  MutexLock lock(mu_);
  std::vector<View> out;
  for (size_t i = 0; i < addresses_.size(); ++i) out.push_back({addresses_[i], states_[i]});
  return out;
}

}  // namespace regen
