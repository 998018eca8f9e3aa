#include "tests/chaos/running_truth.h"

#include <dirent.h>

#include <chrono>
#include <cstdlib>

#include "agent/control_socket.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {

namespace {

// The guest name of a qemu command line ("" when it has none).
std::string GuestName(const std::string& cmdline) {
  size_t at = cmdline.find("guest=");
  if (at == std::string::npos) return "";
  at += 6;
  size_t end = cmdline.find_first_of(", ", at);
  return cmdline.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

}  // namespace

RunningTruth::RunningTruth(std::string lab_dir, int hosts, std::string driver)
    : dir_(std::move(lab_dir)), hosts_(hosts), driver_(std::move(driver)) {
  thread_ = std::thread([this] { Loop(); });
}

RunningTruth::~RunningTruth() { Stop(); }

void RunningTruth::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::vector<std::string> RunningTruth::duplicates() {
  std::lock_guard lock(mu_);
  return duplicates_;
}

std::map<std::string, std::vector<RunningCopy>> RunningTruth::Look() {
  return driver_ == "qemu" ? LookQemu() : LookLibvirt();
}

std::map<std::string, std::vector<RunningCopy>> RunningTruth::LookQemu() {
  std::map<std::string, std::vector<RunningCopy>> out;
  const std::string marker = dir_ + "/host-";
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    std::string cmd = ProcCmdline(static_cast<int>(pid));
    size_t at = cmd.find(marker);
    if (at == std::string::npos) continue;
    std::string guest = GuestName(cmd);
    if (guest.empty()) continue;
    size_t host_end = cmd.find('/', at + marker.size());
    std::string host = cmd.substr(at + dir_.size() + 1, host_end - at - dir_.size() - 1);
    out[guest].push_back({host, pid});
  }
  closedir(proc);
  return out;
}

std::map<std::string, std::vector<RunningCopy>> RunningTruth::LookLibvirt() {
  std::map<std::string, std::vector<RunningCopy>> out;
  for (int k = 1; k <= hosts_; ++k) {
    const std::string host = "host-" + std::to_string(k);
    auto r = ControlSocketCall(dir_ + "/" + host + "/agent.sock", {{"command", "libvirt-domains"}},
                               std::chrono::milliseconds(500));
    std::map<std::string, int64_t> listing;
    if (r.ok() && r->value("ok", false)) {
      for (const auto& d : (*r)["domains"]) {
        if (d.value("state", "") == "running") listing[d.value("name", "")] = d.value("id", -1);
      }
    } else {
      const std::string& why = r.ok() ? r->value("error", "") : r.status().message();
      // Refused / no socket: the agent process is gone, and its test-driver domains with it.
      bool dead =
          why.find("refused") != std::string::npos || why.find("No such file") != std::string::npos;
      std::lock_guard lock(mu_);
      if (!dead) listing = last_listing_[k];  // alive but not answering: as last seen
    }
    {
      std::lock_guard lock(mu_);
      last_listing_[k] = listing;
    }
    for (const auto& [name, id] : listing) out[name].push_back({host, id});
  }
  return out;
}

bool RunningTruth::StillRuns(const std::string& instance, const RunningCopy& copy) {
  if (driver_ == "qemu") return GuestName(ProcCmdline(static_cast<int>(copy.id))) == instance;
  auto now = LookLibvirt();
  auto it = now.find(instance);
  if (it == now.end()) return false;
  for (const auto& c : it->second) {
    if (c.host == copy.host && c.id == copy.id) return true;
  }
  return false;
}

void RunningTruth::Loop() {
  while (!stop_) {
    for (const auto& [name, copies] : Look()) {
      if (copies.size() < 2) continue;
      // Listed in order: the first copy still running after the others were seen means two ran
      // at one moment.
      if (!StillRuns(name, copies[0])) continue;
      std::string key = name;
      std::string text = "at " + std::to_string(WallMillis()) + " " + name;
      for (size_t i = 0; i < copies.size(); ++i) {
        key += " " + copies[i].host + " " + std::to_string(copies[i].id);
        text += std::string(i == 0 ? " on " : " and ") + copies[i].host + " (" +
                (driver_ == "qemu" ? "pid " : "libvirt id ") + std::to_string(copies[i].id) + ")";
      }
      std::lock_guard lock(mu_);
      if (reported_.insert(key).second) duplicates_.push_back(text);
    }
    ++samples_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace regen::testing
