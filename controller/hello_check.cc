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

namespace {

// The address's kind when a tunnel cannot use it ("" when it can), loopback apart.
std::string UnusableKind(uint32_t a) {
  if ((a >> 24) == 0) return "an unspecified (0.0.0.0/8) address";
  if (a == 0xffffffffu) return "the broadcast address";
  if ((a >> 28) == 0xe) return "a multicast address";
  if ((a >> 28) == 0xf) return "a reserved (240.0.0.0/4) address";
  return "";
}

}  // namespace

Status CheckHelloAddress(const v1::Hello& hello, const KnownAddresses& known,
                         bool allow_loopback_hosts) {
  in_addr parsed{};
  if (inet_pton(AF_INET, hello.address().c_str(), &parsed) != 1) return CheckHello(hello);
  const uint32_t a = ntohl(parsed.s_addr);
  const std::string where =
      "hello.address: \"" + hello.address() + "\" (host " + hello.host() + ", agent.yaml address)";
  if (std::string kind = UnusableKind(a); !kind.empty()) {
    return InvalidArgument(where + " is " + kind + ": not a tunnel endpoint other hosts can reach");
  }
  const bool loopback = (a >> 24) == 127;
  if (loopback && !allow_loopback_hosts) {
    return InvalidArgument(where +
                           " is a loopback address: other hosts cannot reach it (a lab with "
                           "every agent on one machine sets allow_loopback_hosts: true in "
                           "controller.yaml)");
  }
  for (const auto& [name, address] : known.address_of) {
    if (name == hello.host() || address != hello.address()) continue;
    const bool network = hello.network() || known.network_hosts.count(name) > 0;
    if (loopback && allow_loopback_hosts && !network) continue;  // a lab on one machine
    return InvalidArgument(
        where + " is already the address of host " + name + ": hosts " + name + " and " +
        hello.host() + " cannot share a tunnel address" +
        (loopback ? " while an agent runs the network (agent.yaml network.enabled)" : ""));
  }
  return Status::Ok();
}

}  // namespace regen
