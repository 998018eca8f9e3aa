// agent.yaml: the per-host agent's configuration. Loading is pure (no I/O beyond reading the
// file); any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/model.h"
#include "common/status.h"
#include "config/etcd_config.h"
#include "config/tls_config.h"

namespace regen {

// network: the agent's OVS flow programming (agent/network_agent.h). Off unless enabled.
struct AgentNetworkConfig {
  bool enabled = false;                                    // network.enabled
  std::string bridge = "br-int";                           // network.bridge
  std::string tunnel_ip;                                   // network.tunnel_ip ("" = address)
  std::string db_socket = "/var/run/openvswitch/db.sock";  // network.db_socket (ovsdb-server)
  std::string run_dir = "/var/run/openvswitch";            // network.run_dir (BRIDGE.mgmt)
  std::chrono::milliseconds resync_interval{5000};         // network.resync_interval
};

// etcd: the host's own lease in etcd (HA mode; DESIGN "Liveness, fencing and high
// availability"). The agent keeps the key <prefix>hosts/<host_name>/alive on an etcd lease of
// lease_ttl and renews it every renew_interval; its fencing lease is renewed by those renewals
// alone (never by the controller's heartbeat acks).
struct AgentEtcdConfig : EtcdConnectionConfig {
  // etcd.lease_ttl: whole seconds, >= 2s, > fencing_lease + the effective fencing_backstop_after
  // + 500ms (the agent has fenced, and its backstop tripped, before etcd deletes the key).
  std::chrono::milliseconds lease_ttl{5000};
  // etcd.renew_interval: < fencing_lease/2; default (and here once parsed) max(50ms,
  // fencing_lease/4).
  std::chrono::milliseconds renew_interval{0};
};

struct AgentConfig {
  std::string host_name;              // host_name (required): [a-z][a-z0-9-]{0,62}
  std::string address = "127.0.0.1";  // address: tunnel endpoint / how the controller sees us
  // controller_address: one "host:port", or several (HA controllers: "a:7400,b:7400" or a YAML
  // list); here joined with ',' ("" = standalone), and one by one in controller_addresses.
  std::string controller_address;
  std::vector<std::string> controller_addresses;
  std::string libvirt_uri = "qemu:///system";     // libvirt_uri
  std::chrono::milliseconds poll_interval{1000};  // poll_interval, e.g. "1s", "250ms"
  bool libvirt_events = true;                     // libvirt_events: false disables lifecycle events
  std::string ovs_bridge = "br-int";              // ovs.bridge; "" = domains get no NIC
  std::string ovs_db_socket = "unix:/var/run/openvswitch/db.sock";  // ovs.db_socket
  // capacity: what this host offers; a value left out (or 0) is measured (agent/host_capacity.h)
  // less reserve:. Absent: every value measured.
  std::optional<Resources> capacity;
  // reserve: kept for the host itself, subtracted from measured capacity only. A reserve: block
  // replaces this default entirely (keys left out are 0).
  Resources reserve{0, 512, 5, 0};
  std::chrono::milliseconds fencing_lease{3000};  // fencing_lease
  // fencing_backstop_after: how long past the lease the agent may fail to confirm its managed
  // domains are gone before it trips systemd's watchdog (WATCHDOG=trigger); 0 = min(1s,
  // fencing_lease/2).
  std::chrono::milliseconds fencing_backstop_after{0};
  // watchdog_device: a kernel watchdog (/dev/watchdog, softdog or hardware) the agent pets while
  // this host's domains are safe; "" = none.
  std::string watchdog_device;
  // watchdog_timeout: the watchdog device's timeout (whole seconds); the agent sets it on the
  // device when the driver allows (WDIOC_SETTIMEOUT). 0 = not set: the agent reads the device's.
  // Needs watchdog_device.
  std::chrono::milliseconds watchdog_timeout{0};
  std::string state_dir = "/var/lib/regen";  // state_dir
  // image_dirs: the only directories whose files the controller may name (a version's image and
  // domain_template, an image to stage); absolute, no "..". Empty = DefaultImageDirs(state_dir).
  std::vector<std::string> image_dirs;
  std::string control_socket = "/run/regen/agent.sock";  // control_socket
  std::string desired_file;  // desired_file: local desired instances (standalone mode)
  // domain_type: auto (agent/domain_type.h: kvm when a guest really runs under KVM, else qemu)
  // | kvm | qemu (TCG) | test.
  std::string domain_type = "auto";
  // parallel_starts: how many domains one reconcile pass creates (or destroys) at once, 1-32.
  // A host taking over a failed host's instances then pays about one start, not one per instance.
  int64_t parallel_starts = 4;
  bool fault_injection = false;    // fault_injection: lab and tests only
  std::string log_level = "info";  // log_level
  std::string metrics_address;     // metrics_address: Prometheus /metrics "host:port"; "" = off
  // tls: {ca, cert, key, server_name}: mutual TLS to the controller. With a controller_address
  // exactly one of tls and insecure is required.
  TlsConfig tls;
  bool insecure = false;       // insecure: true = plaintext gRPC to the controller (labs, tests)
  AgentNetworkConfig network;  // network
  // dns: the agent watches the names of the services it hosts and tells their instances when
  // the addresses change.
  std::string dns_server;  // dns.server "127.0.0.1:5353"; "" = no DNS watch
  std::string dns_zone;    // dns.zone "lab.example." (required with a server)
  std::chrono::milliseconds dns_poll_interval{5000};  // dns.poll_interval
  // etcd: the host's lease lives in etcd (needs a controller_address); nullopt = the controller's
  // heartbeat acks renew it.
  std::optional<AgentEtcdConfig> etcd;
};

// <state_dir>/images and /etc/regen/templates: image_dirs when agent.yaml has none.
std::vector<std::string> DefaultImageDirs(const std::string& state_dir);

// Parses agent.yaml text; `file_name` is used in error messages ("file:line:column: field: ...").
// Pure: the tls files are not looked at.
Result<AgentConfig> ParseAgentConfig(const std::string& yaml_text, const std::string& file_name);
// Reads and parses `path`, then checks that the tls files can be read.
Result<AgentConfig> LoadAgentConfig(const std::string& path);

}  // namespace regen
