// Regen's model as plain value types shared by agent and controller (see DESIGN.md, "The model").
// Pure data; any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace regen {

// Resources of one host, or of one instance (the service's flavor).
struct Resources {
  int64_t vcpus = 0;
  int64_t memory_mib = 0;
  int64_t disk_gib = 0;
  int64_t bandwidth_mbps = 0;
  bool operator==(const Resources&) const = default;
};

// Where an instance runs and what it holds there.
struct Allocation {
  std::string host;
  Resources resources;
  std::string ip;   // dotted IPv4, may be empty when the service has no network
  std::string mac;  // 52:54:00:xx:xx:xx
  bool operator==(const Allocation&) const = default;
};

// Everything an agent needs to create one instance's domain.
struct InstanceSpec {
  std::string name;  // <service>-<index>
  std::string service;
  int64_t update_domain = 0;
  std::string version;     // version name from the service spec
  int64_t generation = 0;  // bumped at every re-instantiation
  // Disk source: a base image (qcow2/raw) the agent overlays, or none (empty).
  std::string image;
  // Optional libvirt domain XML template replacing the built-in one (see agent/domain_xml.h).
  std::string domain_template;
  std::map<std::string, std::string> metadata;  // version metadata, passed into the domain
  std::string dns_name;  // the service's network.dns_name ("" = none); for the DNS watch
  Allocation allocation;
  // The service subnet's prefix length and gateway (its first address) for the guest's network
  // configuration; 0 and "" when the service has no subnet.
  int64_t prefix_len = 0;
  std::string gateway;
  bool operator==(const InstanceSpec&) const = default;
};

}  // namespace regen
