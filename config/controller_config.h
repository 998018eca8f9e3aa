// controller.yaml: the controller's configuration. Loading is pure; any thread.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/grpc_limits.h"
#include "common/status.h"
#include "config/etcd_config.h"
#include "config/tls_config.h"

namespace regen {

struct DnsConfig {
  std::string server;                          // dns.server "127.0.0.1:5353"; "" = no DNS updates
  std::string zone;                            // dns.zone "lab.example."
  std::string tsig_key_name;                   // dns.tsig.key_name
  std::string tsig_algorithm = "hmac-sha256";  // dns.tsig.algorithm
  std::string tsig_secret_file;                // dns.tsig.secret_file
  int64_t ttl = 30;                            // dns.ttl (seconds)
};

// Who may use AdminService (regenctl). Roles: "admin" (every RPC) or "read-only" (list, show,
// status, events).
struct AuthCert {
  std::string name;  // auth.certs[i].name: a client certificate's CN or DNS SAN
  std::string role;  // auth.certs[i].role
};
struct AuthToken {
  std::string file;  // auth.tokens[i].file: holds the bearer token (read when the server starts)
  std::string role;  // auth.tokens[i].role
};
struct AuthConfig {
  bool configured = false;  // an auth: block was given
  std::vector<AuthCert> certs;
  std::vector<AuthToken> tokens;
  // auth.hosts: the hosts that may join as agents: names, or patterns with `*` ("rack1-*");
  // empty = any host whose certificate names it (warned about at start with TLS).
  std::vector<std::string> hosts;
};

// Does host name `host` match auth.hosts pattern `pattern` (`*`: any run of characters)?
bool HostPatternMatches(std::string_view pattern, std::string_view host);

// The HA mode's etcd cluster (store: etcd): where the state, the election and the hosts'
// leases live. The connection part (endpoints, prefix, tls, user, password_file):
// config/etcd_config.h.
struct EtcdConfig : EtcdConnectionConfig {
  // etcd.election_ttl: the TTL of the etcd lease behind the active controller's election key,
  // whole seconds: a dead active controller is replaced after at most this (plus etcd's own
  // rounding: it grants no lease under its minimum TTL, 2s with etcd's default timings).
  std::chrono::milliseconds election_ttl{2000};
};

struct ControllerConfig {
  std::string listen_address = "127.0.0.1:7400";          // listen_address
  std::string database = "/var/lib/regen/controller.db";  // database
  // Liveness (DESIGN "Liveness, fencing and high availability"). A controller crash costs the
  // agents at most one heartbeat_interval of lease already used plus restart_allowance (systemd's
  // RestartSec=300ms, the start, every agent's reconnect within 100 ms): the defaults leave the
  // lease twice that (2 x (500ms + 1s) = 3s), and the loader refuses a lease that does not cover
  // it at all. With store: etcd the agents keep their own leases in etcd (agent.yaml etcd:):
  // these settings then only pace heartbeats and maintenance holds, and a failover costs no lease.
  std::chrono::milliseconds heartbeat_interval{500};  // heartbeat_interval
  std::chrono::milliseconds host_down_after{4500};    // host_down_after: > lease + heartbeat
  std::chrono::milliseconds fencing_lease{3000};      // fencing_lease
  std::chrono::milliseconds restart_allowance{1000};  // restart_allowance
  // regenctl maintenance start --for D: D may be at most this long.
  std::chrono::milliseconds maintenance_max{std::chrono::hours(4)};  // maintenance_max
  DnsConfig dns;                                                     // dns
  std::string manual_upgrade_policy = "block";  // upgrade.manual_policy: block | allow
  bool auto_rollback = false;                   // upgrade.auto_rollback
  int64_t max_failed_health_checks = 3;         // upgrade.max_failed
  std::string log_level = "info";               // log_level
  std::string metrics_address;  // metrics_address: Prometheus /metrics "host:port"; "" = off
  // tls: {ca, cert, key}: agents and regenctl must present certificates signed by tls.ca.
  // Exactly one of tls and insecure is required.
  TlsConfig tls;
  bool insecure = false;  // insecure: true = plaintext gRPC, no certificates (labs, tests)
  AuthConfig auth;        // auth: {certs, tokens}
  // store: "sqlite" (embedded, `database`) or "etcd" (HA: several controllers, `etcd`).
  std::string store = "sqlite";
  EtcdConfig etcd;  // etcd: required with store: etcd, refused otherwise
  // advertise_address: how agents and regenctl reach this controller (a standby names the
  // active one's); default listen_address.
  std::string advertise_address;
  // allow_loopback_hosts: true lets agents announce a loopback address (127.0.0.0/8), several of
  // them the same one: a lab with every agent on one machine (scripts/lab.sh, the e2e tests).
  // Agents that run the network (OVS) still need an address of their own. Default false: a
  // loopback address, or another host's address, is refused at Hello.
  bool allow_loopback_hosts = false;
  // The largest network topology a service spec may lead to (controller/topology_limit.h). Not
  // read from controller.yaml: the gRPC limits are fixed (common/grpc_limits.h); tests lower it.
  size_t max_topology_bytes = kMaxTopologyBytes;
};

// Parses controller.yaml text. Pure: the tls and token files are not looked at.
Result<ControllerConfig> ParseControllerConfig(const std::string& yaml_text,
                                               const std::string& file_name);
// Reads and parses `path`, then checks that the tls, token and etcd files can be read.
Result<ControllerConfig> LoadControllerConfig(const std::string& path);

}  // namespace regen
