// Service specs (service.yaml) and the agent's local desired-instances file. Pure; any thread.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "common/model.h"
#include "common/status.h"

namespace regen {

struct VersionSpec {
  std::string image;            // path of a base disk image; "" = no disk
  std::string domain_template;  // path of a libvirt XML template; "" = built-in
  std::map<std::string, std::string> metadata;
};

struct HealthCheck {
  std::string type = "none";  // none | tcp | http
  int64_t port = 0;
  std::string path;  // http only
  std::chrono::milliseconds interval{2000};
  std::chrono::milliseconds timeout{1000};
  int64_t max_failed = 3;
  bool operator==(const HealthCheck&) const = default;
};

struct ServiceSpec {
  std::string name;
  int64_t instances = 1;
  int64_t update_domains = 1;
  Resources flavor;
  std::string subnet;              // network.subnet "10.10.0.0/24"
  std::string dns_name;            // network.dns_name
  std::string ip_policy = "keep";  // network.ip_policy keep | new
  std::map<std::string, VersionSpec> versions;
  std::string version;  // current version: a key of `versions`
  HealthCheck health_check;
  std::string placement = "spread";  // placement: spread | pack
};

// Parses service.yaml (see config/examples/service.yaml). Errors are INVALID_ARGUMENT
// "file:line:column: field.path: what is wrong "value" (what to do)"; Load* also reports a file it
// cannot read ("cannot read PATH: strerror").
Result<ServiceSpec> ParseServiceSpec(const std::string& yaml_text, const std::string& file_name);
Result<ServiceSpec> LoadServiceSpec(const std::string& path);

// The agent's local desired set (standalone mode, before a controller exists):
//   instances:
//     - name: web-0
//       service: web
//       update_domain: 0       (optional, default 0)
//       version: v1            ([a-z0-9][a-z0-9._-]{0,62})
//       generation: 1          (optional, default 0)
//       image: /var/lib/regen/images/web-v1.qcow2   (optional)
//       domain_template: /etc/regen/web.xml         (optional)
//       resources: {vcpus: 1, memory_mib: 64, disk_gib: 1, bandwidth_mbps: 100}
//                              (vcpus and memory_mib required, the others default to 0)
//       ip: 10.10.0.2          (optional)
//       mac: 52:54:00:00:00:02 (optional, unicast)
//       metadata: {key: value} (optional)
// Names and MACs must be unique in the file; `instances: []` is an empty desired set. The
// allocation's host is left empty (the file describes this host only).
Result<std::vector<InstanceSpec>> ParseDesiredInstances(const std::string& yaml_text,
                                                        const std::string& file_name);
Result<std::vector<InstanceSpec>> LoadDesiredInstances(const std::string& path);

}  // namespace regen
