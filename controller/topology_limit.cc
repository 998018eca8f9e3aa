#include "controller/topology_limit.h"

#include <google/protobuf/io/coded_stream.h>

#include <algorithm>
#include <cstdio>

namespace regen {

namespace {

using google::protobuf::io::CodedOutputStream;

// A string field (one-byte tag) holding `n` bytes; absent when empty (proto3).
size_t StringField(size_t n) { return n == 0 ? 0 : 1 + CodedOutputStream::VarintSize64(n) + n; }

// An embedded message of `n` bytes in a repeated field (one-byte tag).
size_t MessageField(size_t n) { return 1 + CodedOutputStream::VarintSize64(n) + n; }

constexpr size_t kMaxIpv4 = sizeof("255.255.255.255") - 1;
constexpr size_t kMacBytes = sizeof("52:54:00:00:00:00") - 1;
constexpr size_t kMaxGenerationField = 1 + 10;  // tag + the longest varint

size_t InstanceEntry(size_t name, size_t service, size_t host, size_t ip, size_t mac) {
  return MessageField(StringField(name) + StringField(service) + StringField(host) +
                      StringField(ip) + StringField(mac) + kMaxGenerationField);
}

std::string Mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

}  // namespace

size_t EstimateTopologyBytes(const ServiceSpec& spec,
                             const std::map<std::string, InstanceRecord>& instances,
                             const std::map<std::string, HostRecord>& hosts) {
  size_t longest_host = 1;
  size_t total = kMaxGenerationField;  // the revision
  for (const auto& [name, h] : hosts) {
    longest_host = std::max(longest_host, name.size());
    total += MessageField(StringField(name.size()) + StringField(h.address.size()));
  }
  for (const auto& [name, inst] : instances) {
    if (inst.service == spec.name) continue;
    size_t host = inst.allocation.host.empty() ? longest_host : inst.allocation.host.size();
    total += InstanceEntry(name.size(), inst.service.size(), host,
                           std::max(inst.allocation.ip.size(), kMaxIpv4), kMacBytes);
  }
  const size_t name = spec.name.size() + 1 + std::to_string(spec.instances).size();
  total += static_cast<size_t>(spec.instances) *
           InstanceEntry(name, spec.name.size(), longest_host, kMaxIpv4, kMacBytes);
  return total;
}

Status CheckTopologyFits(const ServiceSpec& spec,
                         const std::map<std::string, InstanceRecord>& instances,
                         const std::map<std::string, HostRecord>& hosts, size_t limit) {
  size_t bytes = EstimateTopologyBytes(spec, instances, hosts);
  if (bytes <= limit) return Status::Ok();
  return InvalidArgument(
      "service " + spec.name + ": instances: " + std::to_string(spec.instances) +
      " would make the network topology every agent receives about " + Mib(bytes) + " (" +
      std::to_string(bytes) + " bytes), over the limit of " + Mib(limit) + " (" +
      std::to_string(limit) +
      " bytes): lower instances, use shorter service and host names, or split the cluster");
}

}  // namespace regen
