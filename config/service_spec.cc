#include "config/service_spec.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "common/names.h"
#include "config/fields.h"
#include "config/yaml_tree.h"

namespace regen {
namespace {

using std::chrono::milliseconds;

// Per-instance resources, for a service's flavor and for an instance in the desired file.
const ResourceRules kInstanceResources = {
    .vcpus = {1, 1024, Need::kRequired},
    .memory_mib = {16, 4'194'304, Need::kRequired},
    .disk_gib = {0, 65'536, Need::kOptional},
    .bandwidth_mbps = {0, 400'000, Need::kOptional},
};

Status ReadVersionName(const FieldMap& map, std::string_view key, std::string* out) {
  RETURN_IF_ERROR(map.GetString(key, out, Need::kRequired));
  if (!IsValidVersionName(*out)) {
    return map.ErrorAt(key,
                       "invalid version name " + QuoteValue(*out) + " (" + kVersionNameRule + ")");
  }
  return Status::Ok();
}

// Addresses of a subnet that instances may use: all but network, gateway (.1) and broadcast.
int64_t UsableAddresses(int prefix_length) { return (int64_t{1} << (32 - prefix_length)) - 3; }

Status CheckSubnet(const FieldMap& network, const std::string& subnet, int64_t instances) {
  std::string format = "must be \"a.b.c.d/len\" with a prefix length from 8 to 30, got " +
                       QuoteValue(subnet) + " (e.g. \"10.10.0.0/24\")";
  size_t slash = subnet.find('/');
  if (slash == std::string::npos) return network.ErrorAt("subnet", format);
  std::string ip = subnet.substr(0, slash);
  std::string_view len_text = std::string_view(subnet).substr(slash + 1);
  int prefix_length = 0;
  auto [end, ec] =
      std::from_chars(len_text.data(), len_text.data() + len_text.size(), prefix_length);
  in_addr addr{};
  if (len_text.empty() || len_text.size() > 2 || ec != std::errc() ||
      end != len_text.data() + len_text.size() || prefix_length < 8 || prefix_length > 30 ||
      inet_pton(AF_INET, ip.c_str(), &addr) != 1) {
    return network.ErrorAt("subnet", format);
  }
  uint32_t host_order = ntohl(addr.s_addr);
  uint32_t mask = prefix_length == 0 ? 0 : ~uint32_t{0} << (32 - prefix_length);
  if ((host_order & ~mask) != 0) {
    in_addr network_addr{};
    network_addr.s_addr = htonl(host_order & mask);
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &network_addr, text, sizeof text);
    return network.ErrorAt("subnet", "has host bits set, got " + QuoteValue(subnet) +
                                         " (did you mean \"" + text + "/" +
                                         std::to_string(prefix_length) + "\"?)");
  }
  if (UsableAddresses(prefix_length) < instances) {
    int needed = 30;
    while (needed > 8 && UsableAddresses(needed) < instances) --needed;
    return network.ErrorAt(
        "subnet", "is too small for " + std::to_string(instances) + " instances, got " +
                      QuoteValue(subnet) + " (a /" + std::to_string(prefix_length) + " has " +
                      std::to_string(UsableAddresses(prefix_length)) +
                      (UsableAddresses(prefix_length) == 1 ? " address" : " addresses") +
                      " for instances once network, gateway (.1) and broadcast are set aside; "
                      "use /" +
                      std::to_string(needed) + " or a shorter prefix)");
  }
  return Status::Ok();
}

Status ReadNetwork(const FieldMap& top, ServiceSpec* spec) {
  std::optional<FieldMap> network;
  RETURN_IF_ERROR(top.GetMap("network", {"subnet", "dns_name", "ip_policy"}, &network));
  if (!network) return Status::Ok();
  RETURN_IF_ERROR(network->GetString("subnet", &spec->subnet, Need::kRequired));
  RETURN_IF_ERROR(CheckSubnet(*network, spec->subnet, spec->instances));
  RETURN_IF_ERROR(network->GetString("dns_name", &spec->dns_name));
  if (network->Has("dns_name") && !IsValidDnsName(spec->dns_name)) {
    return network->ErrorAt(
        "dns_name", "must be a lower-case DNS name, got " + QuoteValue(spec->dns_name) +
                        " (labels of a-z, 0-9 and '-' separated by '.', no '-' at either end of "
                        "a label, no trailing dot; e.g. \"web.lab.example\")");
  }
  RETURN_IF_ERROR(network->GetEnum("ip_policy", {"keep", "new"}, &spec->ip_policy));
  return Status::Ok();
}

Status ReadVersions(const FieldMap& top, ServiceSpec* spec) {
  const YamlNode* versions = nullptr;
  RETURN_IF_ERROR(top.GetDict("versions", &versions, Need::kRequired));
  if (versions == nullptr || versions->entries.empty()) {
    return top.ErrorAt(
        "versions", "must name at least one version, got " + DescribeValue(*top.Find("versions")) +
                        " (e.g. \"versions: {v1: {image: /var/lib/regen/images/web.qcow2}}\")");
  }
  for (const YamlMapEntry& e : versions->entries) {
    std::string path = JoinPath("versions", e.key.value);
    if (!IsValidVersionName(e.key.value)) {
      return ErrorAt(
          top.file(), e.key, path,
          "invalid version name " + QuoteValue(e.key.value) + " (" + kVersionNameRule + ")");
    }
    ASSIGN_OR_RETURN(FieldMap fields, FieldMap::Open(top.file(), e.value, path,
                                                     {"image", "domain_template", "metadata"}));
    VersionSpec version;
    RETURN_IF_ERROR(fields.GetAbsolutePath("image", &version.image, /*allow_empty=*/true));
    RETURN_IF_ERROR(
        fields.GetAbsolutePath("domain_template", &version.domain_template, /*allow_empty=*/true));
    RETURN_IF_ERROR(fields.GetStringMap("metadata", &version.metadata));
    spec->versions[e.key.value] = std::move(version);
  }
  RETURN_IF_ERROR(ReadVersionName(top, "version", &spec->version));
  if (spec->versions.count(spec->version) == 0) {
    std::string known;
    for (const auto& [name, unused] : spec->versions) known += (known.empty() ? "" : ", ") + name;
    return top.ErrorAt("version", "must be one of the versions under versions, got " +
                                      QuoteValue(spec->version) + " (known versions: " + known +
                                      ")");
  }
  return Status::Ok();
}

Status ReadHealthCheck(const FieldMap& top, HealthCheck* check) {
  std::optional<FieldMap> map;
  RETURN_IF_ERROR(top.GetMap("health_check",
                             {"type", "port", "path", "interval", "timeout", "max_failed"}, &map));
  if (!map) return Status::Ok();
  RETURN_IF_ERROR(map->GetEnum("type", {"none", "tcp", "http"}, &check->type));
  bool probes = check->type != "none";
  RETURN_IF_ERROR(
      map->GetInt("port", 1, 65535, &check->port, probes ? Need::kRequired : Need::kOptional));
  RETURN_IF_ERROR(map->GetString("path", &check->path));
  if (map->Has("path") && (check->path.empty() || check->path[0] != '/')) {
    return map->ErrorAt("path", "must start with '/', got " + QuoteValue(check->path) +
                                    " (the HTTP path to probe, e.g. \"/healthz\")");
  }
  if (check->type == "http" && check->path.empty()) check->path = "/";
  RETURN_IF_ERROR(
      map->GetDuration("interval", milliseconds(100), std::chrono::hours(1), &check->interval));
  RETURN_IF_ERROR(
      map->GetDuration("timeout", milliseconds(10), std::chrono::hours(1), &check->timeout));
  if (check->timeout >= check->interval) {
    std::string_view at = map->Has("timeout") ? "timeout" : "interval";
    return map->ErrorAt(
        at, "timeout (" + FormatDuration(check->timeout) + ") must be shorter than interval (" +
                FormatDuration(check->interval) + "), got " + DescribeValue(*map->Find(at)) +
                " (lower timeout or raise interval)");
  }
  RETURN_IF_ERROR(map->GetInt("max_failed", 1, 100, &check->max_failed));
  return Status::Ok();
}

}  // namespace

Result<ServiceSpec> ParseServiceSpec(const std::string& yaml_text, const std::string& file_name) {
  ASSIGN_OR_RETURN(YamlNode root, ParseYaml(yaml_text, file_name));
  ASSIGN_OR_RETURN(FieldMap top,
                   FieldMap::Root(file_name, root, "service spec",
                                  {"name", "instances", "update_domains", "flavor", "network",
                                   "versions", "version", "health_check", "placement"}));
  ServiceSpec spec;
  RETURN_IF_ERROR(top.GetName("name", &spec.name, Need::kRequired));
  RETURN_IF_ERROR(top.GetInt("instances", 1, 10000, &spec.instances));
  if (top.Has("update_domains")) {
    RETURN_IF_ERROR(top.GetInt("update_domains", 1, spec.instances, &spec.update_domains));
  } else {
    spec.update_domains = 1;
  }
  RETURN_IF_ERROR(top.GetResources("flavor", kInstanceResources, &spec.flavor, Need::kRequired));
  RETURN_IF_ERROR(ReadNetwork(top, &spec));
  RETURN_IF_ERROR(ReadVersions(top, &spec));
  RETURN_IF_ERROR(ReadHealthCheck(top, &spec.health_check));
  RETURN_IF_ERROR(top.GetEnum("placement", {"spread", "pack"}, &spec.placement));
  return spec;
}

Result<ServiceSpec> LoadServiceSpec(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path));
  return ParseServiceSpec(text, path);
}

Result<std::vector<InstanceSpec>> ParseDesiredInstances(const std::string& yaml_text,
                                                        const std::string& file_name) {
  ASSIGN_OR_RETURN(YamlNode root, ParseYaml(yaml_text, file_name));
  ASSIGN_OR_RETURN(FieldMap top,
                   FieldMap::Root(file_name, root, "desired instances", {"instances"}));
  const YamlNode* list = nullptr;
  RETURN_IF_ERROR(top.GetList("instances", &list, Need::kRequired));
  std::vector<InstanceSpec> out;
  if (list == nullptr) return out;

  std::map<std::string, const YamlNode*> names;  // name -> where it was first used
  std::map<std::string, const YamlNode*> macs;   // lower-case MAC -> where
  for (size_t i = 0; i < list->items.size(); ++i) {
    const YamlNode& item = list->items[i];
    std::string path = IndexPath("instances", i);
    if (!item.is_map()) {
      return ErrorAt(file_name, item, path,
                     "must be a map describing one instance, got " + DescribeValue(item) +
                         " (keys: name, service, update_domain, version, generation, image, "
                         "domain_template, resources, ip, mac, metadata)");
    }
    ASSIGN_OR_RETURN(FieldMap m, FieldMap::Open(file_name, item, path,
                                                {"name", "service", "update_domain", "version",
                                                 "generation", "image", "domain_template",
                                                 "resources", "ip", "mac", "metadata"}));
    InstanceSpec spec;
    RETURN_IF_ERROR(m.GetName("name", &spec.name, Need::kRequired));
    auto [first, inserted] = names.emplace(spec.name, m.Find("name"));
    if (!inserted) {
      return m.ErrorAt("name", "duplicate instance name " + QuoteValue(spec.name) +
                                   " (already used at line " + std::to_string(first->second->line) +
                                   ", column " + std::to_string(first->second->column) +
                                   "; each instance must have its own name)");
    }
    RETURN_IF_ERROR(m.GetName("service", &spec.service, Need::kRequired));
    RETURN_IF_ERROR(m.GetInt("update_domain", 0, 9999, &spec.update_domain));
    RETURN_IF_ERROR(ReadVersionName(m, "version", &spec.version));
    RETURN_IF_ERROR(
        m.GetInt("generation", 0, std::numeric_limits<int64_t>::max(), &spec.generation));
    RETURN_IF_ERROR(m.GetAbsolutePath("image", &spec.image, /*allow_empty=*/true));
    RETURN_IF_ERROR(
        m.GetAbsolutePath("domain_template", &spec.domain_template, /*allow_empty=*/true));
    RETURN_IF_ERROR(m.GetResources("resources", kInstanceResources, &spec.allocation.resources,
                                   Need::kRequired));
    RETURN_IF_ERROR(m.GetIpv4("ip", &spec.allocation.ip, /*allow_empty=*/true));
    RETURN_IF_ERROR(m.GetString("mac", &spec.allocation.mac));
    if (!spec.allocation.mac.empty()) {
      if (!IsValidMac(spec.allocation.mac)) {
        return m.ErrorAt("mac", "must be a unicast MAC address like \"52:54:00:12:34:56\", got " +
                                    QuoteValue(spec.allocation.mac) +
                                    " (six hex pairs separated by ':'; the first byte must be "
                                    "even)");
      }
      std::string lower = spec.allocation.mac;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      auto [other, fresh] = macs.emplace(lower, m.Find("mac"));
      if (!fresh) {
        return m.ErrorAt("mac", "duplicate MAC address " + QuoteValue(spec.allocation.mac) +
                                    " (already used at line " +
                                    std::to_string(other->second->line) + ", column " +
                                    std::to_string(other->second->column) +
                                    "; each instance needs its own MAC)");
      }
    }
    RETURN_IF_ERROR(m.GetStringMap("metadata", &spec.metadata));
    out.push_back(std::move(spec));
  }
  return out;
}

Result<std::vector<InstanceSpec>> LoadDesiredInstances(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path));
  return ParseDesiredInstances(text, path);
}

}  // namespace regen
