// The allocator's IP and MAC management: addresses in use, the lowest free IPv4 address of a
// subnet, a MAC address derived from an instance's name. Pure; owned by one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/status.h"

namespace regen {

class AddressPool {
 public:
  struct Subnet {
    uint32_t first = 0;  // first address handed out (network + 2; network + 1 is the gateway)
    uint32_t last = 0;   // last address handed out (broadcast - 1)
    uint64_t key = 0;
    int64_t prefix_len = 0;  // 8..30
  };

  // "10.10.0.0/24" (prefix 8..30, no host bits); errors name the service and the value.
  static Result<Subnet> ParseSubnet(std::string_view service, std::string_view text);
  static std::string FormatIp(uint32_t ip);
  static std::optional<uint32_t> ParseIp(std::string_view text);
  static std::string FormatMac(uint64_t mac);
  // A unicast MAC address, as common/names.h IsValidMac.
  static std::optional<uint64_t> ParseMac(std::string_view text);

  bool IpInUse(uint32_t ip) const { return used_ips_.count(ip) != 0; }
  bool MacInUse(uint64_t mac) const { return used_macs_.count(mac) != 0; }
  void MarkIpUsed(uint32_t ip) { used_ips_.insert(ip); }
  void MarkMacUsed(uint64_t mac) { used_macs_.insert(mac); }

  // The lowest free address of the subnet (amortized O(log I) with a per-subnet hint), not yet
  // taken; UNAVAILABLE when every address is in use.
  Result<uint32_t> NextFreeIp(const Subnet& subnet);
  // Takes an address NextFreeIp returned.
  void TakeIp(uint32_t ip, const Subnet& subnet);
  void FreeIp(uint32_t ip);
  // 52:54:00 and 24 bits from a hash of the instance name, probing on to the next free one;
  // 0 when all 2^24 are in use.
  uint64_t NextFreeMac(std::string_view instance) const;
  void FreeMac(uint64_t mac) { used_macs_.erase(mac); }

 private:
  std::set<uint32_t> used_ips_;
  std::unordered_set<uint64_t> used_macs_;
  std::unordered_map<uint64_t, uint32_t> ip_hints_;  // subnet key -> no free address below it
};

}  // namespace regen
