#include "agent/host_capacity.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace regen {

namespace {

constexpr int64_t kGib = int64_t{1} << 30;

struct OneValue {
  int64_t value = 0;
  std::string explained;
  std::string warning;
};

OneValue Fill(const char* what, const char* unit, int64_t configured, int64_t reserve,
              const std::optional<int64_t>& measured, const std::string& source) {
  OneValue v;
  const std::string u = std::string(" ") + unit;
  if (configured > 0) {
    v.value = configured;
    v.explained = std::to_string(configured) + u + " (capacity." + what + ")";
    return v;
  }
  if (!measured) {
    v.explained = "0" + u + " (" + what + ": not measurable here)";
    v.warning = std::string(what) + ": cannot measure it (" + source + "); set capacity." + what;
    return v;
  }
  v.value = std::max<int64_t>(0, *measured - reserve);
  v.explained = std::to_string(v.value) + u + " (" + source + " " + std::to_string(*measured) +
                (reserve > 0 ? " - reserve " + std::to_string(reserve) : "") + ")";
  return v;
}

}  // namespace

FilledCapacity FillCapacity(const Resources& configured, const Resources& reserve,
                            const MeasuredCapacity& m) {
  std::optional<int64_t> bandwidth = m.bandwidth_mbps;
  std::string nic_source = m.nic.empty() ? "no NIC holds the tunnel address" : "NIC " + m.nic;
  std::string nic_warning;
  if (!bandwidth && configured.bandwidth_mbps <= 0) {
    bandwidth = kDefaultBandwidthMbps;
    nic_warning = "bandwidth_mbps: " + nic_source + " has no speed in sysfs (virtual or down); " +
                  "assuming " + std::to_string(kDefaultBandwidthMbps) +
                  " Mbps: set capacity.bandwidth_mbps";
    nic_source = "assumed";
  }
  const OneValue parts[] = {
      Fill("vcpus", "vCPU", configured.vcpus, reserve.vcpus, m.vcpus, "libvirt"),
      Fill("memory_mib", "MiB memory", configured.memory_mib, reserve.memory_mib, m.memory_mib,
           "libvirt"),
      Fill("disk_gib", "GiB disk", configured.disk_gib, reserve.disk_gib, m.disk_gib,
           "room in " + (m.disk_dir.empty() ? std::string("the state directory") : m.disk_dir)),
      Fill("bandwidth_mbps", "Mbps", configured.bandwidth_mbps, reserve.bandwidth_mbps, bandwidth,
           nic_source),
  };
  FilledCapacity out;
  out.value = {parts[0].value, parts[1].value, parts[2].value, parts[3].value};
  for (const auto& p : parts) {
    out.explained += (out.explained.empty() ? "" : ", ") + p.explained;
    if (!p.warning.empty()) out.warnings += (out.warnings.empty() ? "" : "; ") + p.warning;
  }
  if (!nic_warning.empty()) out.warnings += (out.warnings.empty() ? "" : "; ") + nic_warning;
  return out;
}

std::optional<int64_t> DiskRoomGib(const std::string& dir, const std::string& own_dir) {
  struct statvfs fs;
  if (::statvfs(dir.c_str(), &fs) != 0) return std::nullopt;
  const int64_t free_bytes = static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
  int64_t own_bytes = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(own_dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      auto n = it->file_size(size_ec);
      if (!size_ec) own_bytes += static_cast<int64_t>(n);
    }
  }
  return (free_bytes + own_bytes) / kGib;
}

NicSpeed NicSpeedOf(const std::string& ip, const std::string& sys_root) {
  NicSpeed out;
  in_addr want{};
  if (inet_pton(AF_INET, ip.c_str(), &want) != 1) return out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    const auto* a = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if (a->sin_addr.s_addr == want.s_addr) {
      out.nic = i->ifa_name;
      break;
    }
  }
  freeifaddrs(list);
  if (out.nic.empty()) return out;
  std::ifstream in(sys_root + "/class/net/" + out.nic + "/speed");
  int64_t mbps = 0;
  if (in >> mbps && mbps > 0) out.mbps = mbps;
  return out;
}

}  // namespace regen
