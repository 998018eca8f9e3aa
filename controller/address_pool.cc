#include "controller/address_pool.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>

#include "common/names.h"

namespace regen {
namespace {

constexpr uint64_t kMacPrefix = 0x525400000000ULL;
constexpr uint64_t kMacSpace = uint64_t{1} << 24;

uint32_t PrefixMask(int prefix) { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
uint64_t SubnetKey(uint32_t network, int prefix) {
  return (uint64_t{network} << 8) | static_cast<uint64_t>(prefix);
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace

std::string AddressPool::FormatIp(uint32_t ip) {
  return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 0xff) + "." +
         std::to_string((ip >> 8) & 0xff) + "." + std::to_string(ip & 0xff);
}

std::optional<uint32_t> AddressPool::ParseIp(std::string_view text) {
  in_addr addr{};
  if (inet_pton(AF_INET, std::string(text).c_str(), &addr) != 1) return std::nullopt;
  return ntohl(addr.s_addr);
}

std::string AddressPool::FormatMac(uint64_t mac) {
  char buf[18];
  std::snprintf(
      buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", static_cast<unsigned>((mac >> 40) & 0xff),
      static_cast<unsigned>((mac >> 32) & 0xff), static_cast<unsigned>((mac >> 24) & 0xff),
      static_cast<unsigned>((mac >> 16) & 0xff), static_cast<unsigned>((mac >> 8) & 0xff),
      static_cast<unsigned>(mac & 0xff));
  return buf;
}

std::optional<uint64_t> AddressPool::ParseMac(std::string_view text) {
  if (!IsValidMac(text)) return std::nullopt;
  uint64_t mac = 0;
  for (size_t i = 0; i < text.size(); i += 3) {
    mac = (mac << 8) | std::stoul(std::string(text.substr(i, 2)), nullptr, 16);
  }
  return mac;
}

Result<AddressPool::Subnet> AddressPool::ParseSubnet(std::string_view service,
                                                     std::string_view text) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument("service " + std::string(service) + ": network.subnet " +
                           QuoteValue(text) + " " + why);
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return bad("is not an IPv4 subnet (write it as address/prefix, e.g. 10.10.0.0/24)");
  }
  std::optional<uint32_t> address = ParseIp(text.substr(0, slash));
  std::string_view prefix_text = text.substr(slash + 1);
  if (!address) return bad("does not start with a dotted IPv4 address (e.g. 10.10.0.0/24)");
  if (prefix_text.empty() || prefix_text.size() > 2 ||
      !std::all_of(prefix_text.begin(), prefix_text.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    return bad("has no prefix length after '/' (e.g. /24)");
  }
  int prefix = std::stoi(std::string(prefix_text));
  if (prefix < 8 || prefix > 30) {
    return bad("has prefix length " + std::to_string(prefix) +
               "; use 8 to 30 (network, gateway, broadcast and at least one instance address)");
  }
  uint32_t mask = PrefixMask(prefix);
  if ((*address & ~mask) != 0) {
    return bad("has host bits set; did you mean " + FormatIp(*address & mask) + "/" +
               std::to_string(prefix) + "?");
  }
  Subnet s;
  s.first = *address + 2;
  s.last = (*address | ~mask) - 1;
  s.key = SubnetKey(*address, prefix);
  s.prefix_len = prefix;
  return s;
}

Result<uint32_t> AddressPool::NextFreeIp(const Subnet& subnet) {
  uint32_t& hint = ip_hints_.try_emplace(subnet.key, subnet.first).first->second;
  uint64_t candidate = std::max(hint, subnet.first);
  for (auto it = used_ips_.lower_bound(static_cast<uint32_t>(candidate));
       candidate <= subnet.last && it != used_ips_.end() && *it == candidate; ++it) {
    ++candidate;
  }
  if (candidate > subnet.last) {
    hint = subnet.last;  // everything below is in use; FreeIp lowers it again
    return Unavailable("subnet " + FormatIp(subnet.first - 2) + "/" +
                       std::to_string(subnet.key & 0xff) + " has no free address (" +
                       std::to_string(uint64_t{subnet.last} - subnet.first + 1) +
                       " instance addresses, all in use)");
  }
  hint = static_cast<uint32_t>(candidate);
  return static_cast<uint32_t>(candidate);
}

void AddressPool::TakeIp(uint32_t ip, const Subnet& subnet) {
  used_ips_.insert(ip);
  ip_hints_[subnet.key] = ip + 1;
}

void AddressPool::FreeIp(uint32_t ip) {
  used_ips_.erase(ip);
  for (int prefix = 8; prefix <= 30; ++prefix) {
    auto it = ip_hints_.find(SubnetKey(ip & PrefixMask(prefix), prefix));
    if (it != ip_hints_.end() && it->second > ip) it->second = ip;
  }
}

uint64_t AddressPool::NextFreeMac(std::string_view instance) const {
  uint64_t low = Fnv1a(instance) % kMacSpace;
  for (uint64_t tries = 0; tries < kMacSpace; ++tries) {
    uint64_t mac = kMacPrefix | ((low + tries) % kMacSpace);
    if (!used_macs_.count(mac)) return mac;
  }
  return 0;
}

}  // namespace regen
