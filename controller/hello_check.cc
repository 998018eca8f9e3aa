#include "controller/hello_check.h"

#include <arpa/inet.h>

#include <string>

namespace regen {

namespace {

Status CheckRange(const char* field, int64_t value, int64_t max) {
  if (value >= 0 && value <= max) return Status::Ok();
  return InvalidArgument(std::string("hello.capacity.") + field + ": must be between 0 and " +
                         std::to_string(max) + ", got " + std::to_string(value));
}

}  // namespace

Status CheckHello(const v1::Hello& hello) {
  in_addr parsed{};
  if (hello.address().empty() || inet_pton(AF_INET, hello.address().c_str(), &parsed) != 1) {
    std::string shown = hello.address().substr(0, 64);
    return InvalidArgument("hello.address: not an IPv4 address: \"" + shown +
                           (hello.address().size() > 64 ? "...\"" : "\"") +
                           " (agent.yaml address: the host's tunnel endpoint)");
  }
  const v1::Resources& c = hello.capacity();
  RETURN_IF_ERROR(CheckRange("vcpus", c.vcpus(), kMaxHostVcpus));
  RETURN_IF_ERROR(CheckRange("memory_mib", c.memory_mib(), kMaxHostMemoryMib));
  RETURN_IF_ERROR(CheckRange("disk_gib", c.disk_gib(), kMaxHostDiskGib));
  return CheckRange("bandwidth_mbps", c.bandwidth_mbps(), kMaxHostBandwidthMbps);
}

}  // namespace regen
