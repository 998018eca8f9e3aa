#include "agent/lease_file.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/log.h"

namespace regen {

namespace {
int64_t Ticks(Clock::TimePoint t) { return t.time_since_epoch().count(); }
Clock::TimePoint FromTicks(int64_t ticks) { return Clock::TimePoint(Clock::Duration(ticks)); }
}  // namespace

std::string CurrentBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

std::optional<PersistedLease> LeaseFile::Load() const {
  if (boot_id_.empty()) return std::nullopt;
  std::ifstream in(path_);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  auto j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("boot_id", "") != boot_id_ || !j.contains("lease_until")) {
    return std::nullopt;  // another boot (no domain of it runs now), or not ours
  }
  // Written before the agent measured leases on CLOCK_BOOTTIME: steady_clock's ticks, which lag
  // boottime by the time this boot spent suspended (as of now: the most the lease can have).
  Clock::Duration legacy_offset{0};
  if (j.value("clock", "") != "boottime") {
    legacy_offset = std::chrono::duration_cast<Clock::Duration>(
        BootClock::now().time_since_epoch() -
        std::chrono::steady_clock::now().time_since_epoch());
  }
  auto at = [&](const char* key) { return FromTicks(j.value(key, int64_t{0})) + legacy_offset; };
  PersistedLease p;
  p.lease_until = at("lease_until");
  if (j.contains("hold_until")) p.hold_until = at("hold_until");
  if (j.contains("last_renewal")) p.last_renewal = at("last_renewal");
  return p;
}

LeaseFile::LeaseFile(std::string path, std::string boot_id)
    : path_(std::move(path)), boot_id_(std::move(boot_id)), thread_([this] { Run(); }) {}

LeaseFile::~LeaseFile() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void LeaseFile::Save(const LeaseSnapshot& lease) {
  MutexLock lock(mu_);
  pending_ = PersistedLease{lease.lease_until, lease.hold_until, lease.last_renewal};
  ++saved_;
  cv_.notify_all();
}

void LeaseFile::Flush() {
  MutexLock lock(mu_);
  const uint64_t target = saved_;
  while (written_ < target) cv_.wait(lock.native());
}

void LeaseFile::Run() {
  MutexLock lock(mu_);
  while (true) {
    while (!stop_ && !pending_) cv_.wait(lock.native());
    if (!pending_) return;  // stopping, nothing left to write
    PersistedLease latest = *pending_;
    pending_.reset();
    const uint64_t covers = saved_;
    lock.native().unlock();
    Write(latest);
    lock.native().lock();
    written_ = covers;
    cv_.notify_all();
  }
}

void LeaseFile::Write(const PersistedLease& lease) {
  nlohmann::json j{{"boot_id", boot_id_},
                   {"clock", "boottime"},
                   {"lease_until", Ticks(lease.lease_until)}};
  if (lease.hold_until) j["hold_until"] = Ticks(*lease.hold_until);
  if (lease.last_renewal) j["last_renewal"] = Ticks(*lease.last_renewal);
  const std::string text = j.dump() + "\n";
  const std::string tmp = path_ + ".tmp";
  std::string error;
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) error = "cannot write " + tmp;
  }
  if (error.empty() && std::rename(tmp.c_str(), path_.c_str()) != 0) {
    error = "cannot rename " + tmp + " to " + path_;
  }
  if (!error.empty() && error != last_error_) {
    spdlog::error("{}: a restarted agent would start a fresh lease (check state_dir)", error);
  }
  last_error_ = error;
}

}  // namespace regen
