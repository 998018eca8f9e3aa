#include "config/agent_config.h"

#include <iterator>
#include <string_view>
#include <vector>

#include "common/controller_list.h"
#include "common/names.h"
#include "config/fields.h"
#include "config/yaml_tree.h"

namespace regen {
namespace {

using std::chrono::milliseconds;

// sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
constexpr size_t kMaxSocketPath = 107;

bool IsValidBridgeName(std::string_view name) {
  if (name.empty() || name.size() > 15) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// ovs: the bridge domains' NICs join and the OVSDB address.
Status ParseOvs(const FieldMap& top, AgentConfig* out) {
  AgentConfig& c = *out;
  std::optional<FieldMap> ovs;
  RETURN_IF_ERROR(top.GetMap("ovs", {"bridge", "db_socket"}, &ovs));
  if (ovs) {
    RETURN_IF_ERROR(ovs->GetString("bridge", &c.ovs_bridge));
    if (!c.ovs_bridge.empty() && !IsValidBridgeName(c.ovs_bridge)) {
      return ovs->ErrorAt("bridge", "invalid OVS bridge name " + QuoteValue(c.ovs_bridge) +
                                        " (1 to 15 characters of [A-Za-z0-9_-], or \"\" for "
                                        "domains without a NIC)");
    }
    RETURN_IF_ERROR(ovs->GetNonEmptyString("db_socket", &c.ovs_db_socket));
    if (!StartsWith(c.ovs_db_socket, "unix:/") && !StartsWith(c.ovs_db_socket, "tcp:") &&
        !StartsWith(c.ovs_db_socket, "ssl:")) {
      return ovs->ErrorAt("db_socket", "must be an OVSDB address, got " +
                                           QuoteValue(c.ovs_db_socket) +
                                           " (e.g. \"unix:/var/run/openvswitch/db.sock\" or "
                                           "\"tcp:127.0.0.1:6640\")");
    }
  }

  return Status::Ok();
}

// network: the agent's OVS flow programming.
Status ParseNetwork(const FieldMap& top, AgentNetworkConfig* out) {
  std::optional<FieldMap> net;
  RETURN_IF_ERROR(top.GetMap(
      "network", {"enabled", "bridge", "tunnel_ip", "db_socket", "run_dir", "resync_interval"},
      &net));
  if (net) {
    AgentNetworkConfig& n = *out;
    RETURN_IF_ERROR(net->GetBool("enabled", &n.enabled));
    RETURN_IF_ERROR(net->GetNonEmptyString("bridge", &n.bridge));
    if (!IsValidBridgeName(n.bridge)) {
      return net->ErrorAt("bridge", "invalid OVS bridge name " + QuoteValue(n.bridge) +
                                        " (1 to 15 characters of [A-Za-z0-9_-])");
    }
    RETURN_IF_ERROR(net->GetIpv4("tunnel_ip", &n.tunnel_ip, /*allow_empty=*/true));
    RETURN_IF_ERROR(net->GetAbsolutePath("db_socket", &n.db_socket));
    if (n.db_socket.size() > kMaxSocketPath) {
      return net->ErrorAt("db_socket", "must be at most " + std::to_string(kMaxSocketPath) +
                                           " bytes long (a unix socket path), got " +
                                           QuoteValue(n.db_socket));
    }
    RETURN_IF_ERROR(net->GetAbsolutePath("run_dir", &n.run_dir));
    RETURN_IF_ERROR(net->GetDuration("resync_interval", milliseconds(100), std::chrono::hours(1),
                                     &n.resync_interval));
  }
  return Status::Ok();
}

// dns: the DNS watch (server, zone, poll interval).
Status ParseDns(const FieldMap& top, AgentConfig* out) {
  AgentConfig& c = *out;
  std::optional<FieldMap> dns;
  RETURN_IF_ERROR(top.GetMap("dns", {"server", "zone", "poll_interval"}, &dns));
  if (dns) {
    RETURN_IF_ERROR(dns->GetHostPort("server", &c.dns_server, /*allow_empty=*/true,
                                     /*ip_only=*/true));
    RETURN_IF_ERROR(dns->GetZone("zone", &c.dns_zone,
                                 c.dns_server.empty() ? Need::kOptional : Need::kRequired));
    RETURN_IF_ERROR(dns->GetDuration("poll_interval", milliseconds(50), std::chrono::hours(1),
                                     &c.dns_poll_interval));
  }
  return Status::Ok();
}

// fencing_lease, fencing_backstop_after, watchdog_device, watchdog_timeout.
Status ParseFencing(const FieldMap& top, AgentConfig* c) {
  RETURN_IF_ERROR(top.GetDuration("fencing_lease", milliseconds(100), std::chrono::minutes(10),
                                  &c->fencing_lease));
  if (top.Has("fencing_backstop_after")) {
    RETURN_IF_ERROR(top.GetDuration("fencing_backstop_after", milliseconds(10),
                                    std::chrono::minutes(10), &c->fencing_backstop_after));
  }
  RETURN_IF_ERROR(
      top.GetAbsolutePath("watchdog_device", &c->watchdog_device, /*allow_empty=*/true));
  if (!top.Has("watchdog_timeout")) return Status::Ok();
  RETURN_IF_ERROR(top.GetDuration("watchdog_timeout", std::chrono::seconds(1),
                                  std::chrono::hours(1), &c->watchdog_timeout));
  if (c->watchdog_timeout % std::chrono::seconds(1) != milliseconds::zero()) {
    return top.ErrorAt("watchdog_timeout",
                       "must be whole seconds (a watchdog device counts in "
                       "seconds), got " +
                           DescribeValue(*top.Find("watchdog_timeout")));
  }
  if (c->watchdog_device.empty()) {
    return top.ErrorAt("watchdog_timeout",
                       "needs watchdog_device (the device it is the timeout "
                       "of), got " +
                           DescribeValue(*top.Find("watchdog_timeout")) + " without one");
  }
  return Status::Ok();
}

// etcd.lease_ttl: whole seconds, at least 2s, longer than the agent needs to fence and trip its
// backstop (`c` has fencing_lease and fencing_backstop_after read).
Status CheckLeaseTtl(const FieldMap& etcd, const AgentConfig& c, AgentEtcdConfig* e) {
  RETURN_IF_ERROR(
      etcd.GetDuration("lease_ttl", std::chrono::seconds(2), std::chrono::hours(1), &e->lease_ttl));
  if (e->lease_ttl.count() % 1000 != 0) {
    return etcd.ErrorAt("lease_ttl",
                        "must be whole seconds (etcd leases have a TTL in seconds), got " +
                            DescribeValue(*etcd.Find("lease_ttl")) + " (e.g. \"5s\")");
  }
  // The backstop's grace as agent/fence_backstop.h BackstopGrace computes it.
  const milliseconds backstop =
      c.fencing_backstop_after > milliseconds::zero()
          ? c.fencing_backstop_after
          : std::min<milliseconds>(milliseconds(1000), c.fencing_lease / 2);
  const milliseconds needed = c.fencing_lease + backstop + milliseconds(500);
  if (e->lease_ttl > needed) return Status::Ok();
  const int64_t suggest = needed.count() / 1000 + 1;  // whole seconds, strictly above
  return etcd.ErrorAt(
      "lease_ttl",
      FormatDuration(e->lease_ttl) + (etcd.Has("lease_ttl") ? "" : " (the default)") +
          " must exceed fencing_lease + fencing_backstop_after + 500ms (" +
          FormatDuration(c.fencing_lease) + " + " + FormatDuration(backstop) +
          " + 500ms = " + FormatDuration(needed) +
          "): this host must have fenced, and its fencing backstop tripped, before etcd can "
          "delete its key and a controller heals its instances elsewhere (set etcd.lease_ttl: " +
          std::to_string(suggest) + "s, or shorten fencing_lease)");
}

// etcd: the host's own lease in etcd (after controller_address and the fencing settings).
Status ParseEtcd(const FieldMap& top, AgentConfig* c) {
  std::optional<FieldMap> map;
  std::vector<std::string_view> keys(std::begin(kEtcdConnectionKeys),
                                     std::end(kEtcdConnectionKeys));
  keys.push_back("lease_ttl");
  keys.push_back("renew_interval");
  RETURN_IF_ERROR(top.GetMap("etcd", keys, &map));
  if (!map) return Status::Ok();
  if (c->controller_address.empty()) {
    return top.ErrorAt("etcd",
                       "needs a controller_address (the host's lease in etcd is for the HA mode "
                       "with controllers; a standalone agent has no lease: remove the etcd block "
                       "or set controller_address)");
  }
  AgentEtcdConfig e;
  RETURN_IF_ERROR(ReadEtcdConnection(
      *map, EtcdBlockRules{.endpoints_as_text = true, .tls_server_name = true}, &e));
  RETURN_IF_ERROR(CheckLeaseTtl(*map, *c, &e));
  e.renew_interval = std::max(milliseconds(50), c->fencing_lease / 4);
  if (map->Has("renew_interval")) {
    RETURN_IF_ERROR(map->GetDuration("renew_interval", milliseconds(10), std::chrono::minutes(1),
                                     &e.renew_interval));
    if (e.renew_interval * 2 >= c->fencing_lease) {
      return map->ErrorAt(
          "renew_interval",
          "must be shorter than half of fencing_lease (" + FormatDuration(c->fencing_lease) +
              "), got " + DescribeValue(*map->Find("renew_interval")) +
              " (one lost renewal must not fence this host; e.g. " +
              FormatDuration(std::max(milliseconds(10), c->fencing_lease / 4)) + ")");
    }
  }
  c->etcd = std::move(e);
  return Status::Ok();
}

// Every setting agent.yaml may hold.
constexpr std::string_view kAgentKeys[] = {
    "host_name",
    "address",
    "controller_address",
    "libvirt_uri",
    "poll_interval",
    "libvirt_events",
    "ovs",
    "capacity",
    "reserve",
    "fencing_lease",
    "fencing_backstop_after",
    "watchdog_device",
    "watchdog_timeout",
    "state_dir",
    "image_dirs",
    "control_socket",
    "desired_file",
    "domain_type",
    "parallel_starts",
    "fault_injection",
    "log_level",
    "tls",
    "insecure",
    "network",
    "metrics_address",
    "dns",
    "etcd",
};

// controller_address: "host:port", "a:7400,b:7400" or a YAML list of "host:port"; "" or absent
// = standalone.
Status ParseControllerAddress(const FieldMap& top, AgentConfig* c) {
  const YamlNode* node = top.Find("controller_address");
  if (node == nullptr || node->is_null()) return Status::Ok();
  std::vector<std::string> entries;
  if (node->is_sequence()) {
    for (const YamlNode& item : node->items) {
      if (!item.is_scalar()) {
        return top.ErrorAt("controller_address", "entry " + std::to_string(entries.size() + 1) +
                                                     " must be \"host:port\", got " +
                                                     DescribeValue(item));
      }
      entries.push_back(item.value);
    }
    if (Status s = ValidateControllerList(entries); !s.ok()) {
      return top.ErrorAt("controller_address", s.message());
    }
  } else if (node->is_scalar() && node->value.find(',') != std::string::npos) {
    Result<std::vector<std::string>> list = ParseControllerList(node->value);
    if (!list.ok()) return top.ErrorAt("controller_address", list.status().message());
    entries = std::move(*list);
  } else {
    std::string one;
    RETURN_IF_ERROR(top.GetHostPort("controller_address", &one, /*allow_empty=*/true));
    if (one.empty()) return Status::Ok();
    entries.push_back(std::move(one));
  }
  c->controller_addresses = entries;
  c->controller_address = JoinControllerList(entries);
  return Status::Ok();
}

// image_dirs: a list of absolute directories without "..".
Status ParseImageDirs(const FieldMap& top, AgentConfig* c) {
  const YamlNode* list = nullptr;
  RETURN_IF_ERROR(top.GetList("image_dirs", &list));
  if (list == nullptr) return Status::Ok();
  for (const YamlNode& item : list->items) {
    const std::string entry = "entry " + std::to_string(c->image_dirs.size() + 1);
    if (!item.is_scalar() || !IsAbsolutePath(item.value) || item.value.size() > 4095) {
      return top.ErrorAt("image_dirs",
                         entry + " must be an absolute directory path, got " + DescribeValue(item));
    }
    if (("/" + item.value + "/").find("/../") != std::string::npos) {
      return top.ErrorAt("image_dirs", entry + " must not contain \"..\", got " +
                                           DescribeValue(item) + " (name the directory itself)");
    }
    c->image_dirs.push_back(item.value);
  }
  return Status::Ok();
}

}  // namespace

std::vector<std::string> DefaultImageDirs(const std::string& state_dir) {
  return {state_dir + "/images", "/etc/regen/templates"};
}

Result<AgentConfig> ParseAgentConfig(const std::string& yaml_text, const std::string& file_name) {
  ASSIGN_OR_RETURN(YamlNode root, ParseYaml(yaml_text, file_name));
  ASSIGN_OR_RETURN(FieldMap top, FieldMap::Root(file_name, root, "agent configuration",
                                                {std::begin(kAgentKeys), std::end(kAgentKeys)}));
  AgentConfig c;
  RETURN_IF_ERROR(top.GetName("host_name", &c.host_name, Need::kRequired));
  RETURN_IF_ERROR(top.GetIpv4("address", &c.address));
  RETURN_IF_ERROR(ParseControllerAddress(top, &c));
  RETURN_IF_ERROR(top.GetNonEmptyString("libvirt_uri", &c.libvirt_uri));
  RETURN_IF_ERROR(
      top.GetDuration("poll_interval", milliseconds(10), std::chrono::hours(1), &c.poll_interval));
  RETURN_IF_ERROR(top.GetBool("libvirt_events", &c.libvirt_events));

  RETURN_IF_ERROR(ParseOvs(top, &c));

  // A value left out of capacity: is measured (agent/host_capacity.h).
  const ResourceRule positive{1, int64_t{1} << 40, Need::kOptional};
  Resources capacity;
  if (top.Has("capacity")) {
    RETURN_IF_ERROR(
        top.GetResources("capacity", {positive, positive, positive, positive}, &capacity));
    c.capacity = capacity;
  }
  const ResourceRule any{0, int64_t{1} << 40, Need::kOptional};
  if (top.Has("reserve")) {
    RETURN_IF_ERROR(top.GetResources("reserve", {any, any, any, any}, &c.reserve));
  }

  RETURN_IF_ERROR(ParseFencing(top, &c));
  RETURN_IF_ERROR(ParseEtcd(top, &c));
  RETURN_IF_ERROR(top.GetAbsolutePath("state_dir", &c.state_dir));
  RETURN_IF_ERROR(ParseImageDirs(top, &c));
  RETURN_IF_ERROR(top.GetAbsolutePath("control_socket", &c.control_socket));
  if (c.control_socket.size() > kMaxSocketPath) {
    return top.ErrorAt("control_socket", "must be at most " + std::to_string(kMaxSocketPath) +
                                             " bytes long (the limit of a unix socket path), got " +
                                             QuoteValue(c.control_socket) + " (" +
                                             std::to_string(c.control_socket.size()) +
                                             " bytes; choose a shorter path)");
  }
  RETURN_IF_ERROR(top.GetAbsolutePath("desired_file", &c.desired_file, /*allow_empty=*/true));
  RETURN_IF_ERROR(top.GetEnum("domain_type", {"auto", "kvm", "qemu", "test"}, &c.domain_type));
  RETURN_IF_ERROR(top.GetInt("parallel_starts", 1, 32, &c.parallel_starts));
  RETURN_IF_ERROR(top.GetBool("fault_injection", &c.fault_injection));
  if (c.fault_injection && !StartsWith(c.libvirt_uri, "test:") &&
      !StartsWith(c.libvirt_uri, "qemu:///embed")) {
    return top.ErrorAt("fault_injection",
                       "true is not allowed with libvirt_uri " + QuoteValue(c.libvirt_uri) +
                           " (fault injection is for labs and tests only: it needs a \"test:\" "
                           "or \"qemu:///embed\" libvirt_uri; set fault_injection: false on "
                           "real hosts)");
  }
  RETURN_IF_ERROR(ParseNetwork(top, &c.network));
  if (c.network.tunnel_ip.empty()) c.network.tunnel_ip = c.address;

  RETURN_IF_ERROR(
      top.GetEnum("log_level", {"trace", "debug", "info", "warn", "error"}, &c.log_level));

  RETURN_IF_ERROR(ParseDns(top, &c));
  RETURN_IF_ERROR(top.GetHostPort("metrics_address", &c.metrics_address, /*allow_empty=*/true));
  // A standalone agent talks to no controller: it needs neither.
  RETURN_IF_ERROR(ReadTlsSettings(top, TlsSide::kClient,
                                  /*required=*/!c.controller_address.empty(), &c.tls, &c.insecure));
  return c;
}

Result<AgentConfig> LoadAgentConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path));
  ASSIGN_OR_RETURN(AgentConfig c, ParseAgentConfig(text, path));
  RETURN_IF_ERROR(CheckTlsFilesReadable(c.tls, path));
  if (c.etcd) RETURN_IF_ERROR(CheckEtcdFilesReadable(*c.etcd, path));
  return c;
}

}  // namespace regen
