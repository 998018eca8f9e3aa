#include "ctl/output.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <type_traits>
#include <utility>

namespace regen::ctl {

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line += "  ";
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size(), ' ');
    }
    line.erase(line.find_last_not_of(' ') + 1);  // an empty last cell leaves no padding
    out << line << "\n";
  }
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::string Plural(int64_t n, const std::string& what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

std::string FormatUnixMillis(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  int64_t seconds = unix_ms / 1000;
  int64_t millis = unix_ms % 1000;
  if (millis < 0) {
    millis += 1000;
    seconds -= 1;
  }
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_ms);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buf;
}

Json ResourcesJson(const v1::Resources& r) {
  return Json{{"vcpus", r.vcpus()},
              {"memory_mib", r.memory_mib()},
              {"disk_gib", r.disk_gib()},
              {"bandwidth_mbps", r.bandwidth_mbps()}};
}

Json InstanceJson(const v1::InstanceInfo& i) {
  Json j{{"name", i.name()},
         {"service", i.service()},
         {"update_domain", i.update_domain()},
         {"version", i.version()},
         {"host", i.host()},
         {"state", i.state()},
         {"generation", i.generation()},
         {"vcpus", i.resources().vcpus()},
         {"memory_mib", i.resources().memory_mib()},
         {"disk_gib", i.resources().disk_gib()},
         {"bandwidth_mbps", i.resources().bandwidth_mbps()},
         {"ip", i.ip()},
         {"mac", i.mac()},
         {"disk", i.disk()}};  // overlay:<image> (fresh per generation) | none
  if (!i.reason().empty()) j["reason"] = i.reason();
  if (!i.health().empty()) j["health"] = i.health();  // none | unknown | passing | failing
  return j;
}

Json InstancesJson(const google::protobuf::RepeatedPtrField<v1::InstanceInfo>& instances) {
  Json array = Json::array();
  for (const auto& i : instances) array.push_back(InstanceJson(i));
  return array;
}

// The DISK column: "fresh" (a new overlay on the version's image for each generation: a healed
// instance starts from the image, nothing is carried), "none" (no image), "-" (an older
// controller). --output json has the image.
namespace {
std::string DiskWord(const std::string& disk) {
  if (disk.rfind("overlay:", 0) == 0) return "fresh";
  return OrDash(disk);
}
}  // namespace

void PrintInstanceTable(const google::protobuf::RepeatedPtrField<v1::InstanceInfo>& instances,
                        std::ostream& out) {
  bool any_reason = std::any_of(instances.begin(), instances.end(),
                                [](const v1::InstanceInfo& i) { return !i.reason().empty(); });
  std::vector<std::string> header = {"NAME",      "SERVICE", "UD",    "VERSION",    "HOST",
                                     "STATE",     "GEN",     "VCPUS", "MEMORY_MIB", "DISK_GIB",
                                     "BANDWIDTH", "IP",      "MAC",   "DISK"};
  if (any_reason) header.push_back("REASON");  // last: it may contain spaces
  Table table(header);
  for (const auto& i : instances) {
    std::vector<std::string> row = {i.name(),
                                    i.service(),
                                    std::to_string(i.update_domain()),
                                    OrDash(i.version()),
                                    OrDash(i.host()),
                                    OrDash(i.state()),
                                    std::to_string(i.generation()),
                                    std::to_string(i.resources().vcpus()),
                                    std::to_string(i.resources().memory_mib()),
                                    std::to_string(i.resources().disk_gib()),
                                    std::to_string(i.resources().bandwidth_mbps()),
                                    OrDash(i.ip()),
                                    OrDash(i.mac()),
                                    DiskWord(i.disk())};
    if (any_reason) row.push_back(i.reason());
    table.Add(std::move(row));
  }
  table.Print(out);
}

Json ServiceJson(const v1::ServiceSummary& s) {
  return Json{{"name", s.name()},       {"instances", s.instances()},
              {"running", s.running()}, {"update_domains", s.update_domains()},
              {"version", s.version()}, {"flavor", ResourcesJson(s.flavor())},
              {"subnet", s.subnet()},   {"dns_name", s.dns_name()}};
}

Json HostJson(const v1::HostInfo& h) {
  return Json{{"name", h.name()},
              {"address", h.address()},
              {"state", h.state()},
              {"capacity", ResourcesJson(h.capacity())},
              {"allocated", ResourcesJson(h.allocated())},
              {"last_heartbeat_unix_ms", h.last_heartbeat_unix_ms()},
              {"applied_topology_revision", h.applied_topology_revision()},
              {"domain_type", h.domain_type()},
              {"domain_type_reason", h.domain_type_reason()}};
}

Json EventJson(const v1::Event& e) {
  Json j{{"sequence", e.sequence()}, {"unix_ms", e.unix_ms()},   {"kind", e.kind()},
         {"service", e.service()},   {"instance", e.instance()}, {"host", e.host()},
         {"message", e.message()}};
  if (!e.json().empty()) {
    Json detail = Json::parse(e.json(), nullptr, /*allow_exceptions=*/false);
    if (detail.is_discarded()) {
      j["json"] = e.json();  // not JSON: kept as the controller sent it
    } else {
      j["detail"] = std::move(detail);
    }
  }
  return j;
}

std::string EventLine(const v1::Event& e) {
  auto pad = [](const std::string& s, size_t width) {
    return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
  };
  return pad(std::to_string(e.sequence()), 6) + " " + FormatUnixMillis(e.unix_ms()) + " " +
         pad(OrDash(e.kind()), 12) + " " + pad(OrDash(e.service()), 12) + " " +
         pad(OrDash(e.instance()), 14) + " " + pad(OrDash(e.host()), 12) + " " + e.message();
}

Json UpgradeStatusJson(const v1::UpgradeStatus& u, const std::string& service) {
  Json upgraded = Json::array();
  for (int64_t ud : u.upgraded_uds()) upgraded.push_back(ud);
  Json healing = Json::array();
  for (const auto& i : u.healing_in_progress()) healing.push_back(i);
  Json j{{"service", u.service().empty() ? service : u.service()},
         {"from_version", u.from_version()},
         {"to_version", u.to_version()},
         {"mode", u.mode()},
         {"state", u.state()},
         {"current_ud", u.current_ud()},
         {"upgraded_uds", std::move(upgraded)},
         {"healing_in_progress", std::move(healing)},
         {"started_at", u.started_at_unix_ms()},
         {"updated_at", u.updated_at_unix_ms()}};
  if (!u.message().empty()) j["message"] = u.message();
  return j;
}

namespace {

// "a, b, c"; "none" when there is nothing.
template <typename Items>
std::string JoinOrNone(const Items& items) {
  std::string text;
  for (const auto& item : items) {
    if (!text.empty()) text += ", ";
    if constexpr (std::is_same_v<std::decay_t<decltype(item)>, std::string>) {
      text += item;
    } else {
      text += std::to_string(item);
    }
  }
  return text.empty() ? "none" : text;
}

}  // namespace

void PrintUpgradeStatus(const v1::UpgradeStatus& u, const std::string& service, std::ostream& out) {
  out << "service " << (u.service().empty() ? service : u.service()) << ": upgrade "
      << OrDash(u.from_version()) << " -> " << OrDash(u.to_version()) << " (" << OrDash(u.mode())
      << ") " << OrDash(u.state()) << " at UD " << u.current_ud() << "\n"
      << "upgraded UDs: " << JoinOrNone(u.upgraded_uds()) << "\n"
      << "healing:      " << JoinOrNone(u.healing_in_progress()) << "\n"
      << "started:      " << FormatUnixMillis(u.started_at_unix_ms()) << "\n"
      << "updated:      " << FormatUnixMillis(u.updated_at_unix_ms()) << "\n";
  if (!u.message().empty()) out << "message:      " << u.message() << "\n";
}

}  // namespace regen::ctl
