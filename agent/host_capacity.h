// What this host offers the controller (Hello.capacity) when agent.yaml's capacity: does not say
// every value: vCPUs and memory from libvirt, disk from the free space of the state directory's
// file system (where the instances' overlays go), bandwidth from the speed of the NIC that holds
// the tunnel address (sysfs); measured values less agent.yaml's reserve: for the host itself.
// A configured value is taken as it is. Pure functions plus two small probes; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/model.h"

namespace regen {

// What the probes found; nullopt: could not tell.
struct MeasuredCapacity {
  std::optional<int64_t> vcpus;
  std::optional<int64_t> memory_mib;
  std::optional<int64_t> disk_gib;  // free space + what the agent's own disks already take
  std::optional<int64_t> bandwidth_mbps;
  std::string disk_dir;  // where disk_gib was measured
  std::string nic;       // the NIC bandwidth_mbps was read from ("" = none found)
};

struct FilledCapacity {
  Resources value;
  // One line for the log: where each value came from, e.g. "8 vCPU (libvirt), ...".
  std::string explained;
  // What could not be measured and fell back (to bandwidth kDefaultBandwidthMbps, or 0).
  std::string warnings;
};

// A NIC whose speed sysfs cannot tell (virtual, loopback, a bridge): this much is assumed, and
// said, until agent.yaml's capacity.bandwidth_mbps sets it.
inline constexpr int64_t kDefaultBandwidthMbps = 1000;

// configured: agent.yaml's capacity (0 = not given: measured); reserve: subtracted from measured
// values only, never below 0.
FilledCapacity FillCapacity(const Resources& configured, const Resources& reserve,
                            const MeasuredCapacity& measured);

// GiB free on the file system of `dir` (for an unprivileged user) plus the GiB the files under
// `own_dir` already take (the agent's overlays count as room for instances); nullopt when `dir`
// cannot be looked at.
std::optional<int64_t> DiskRoomGib(const std::string& dir, const std::string& own_dir);

// The NIC that holds IPv4 address `ip` and its speed in Mbit/s from <sys_root>/class/net/NIC/speed;
// speed nullopt when there is no such NIC or sysfs has no valid speed (virtual NICs say -1).
struct NicSpeed {
  std::string nic;
  std::optional<int64_t> mbps;
};
NicSpeed NicSpeedOf(const std::string& ip, const std::string& sys_root = "/sys");

}  // namespace regen
