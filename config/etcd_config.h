// The `etcd:` block shared by controller.yaml (store: etcd) and agent.yaml (the host's own lease
// in etcd): how a process reaches the cluster (endpoints, key prefix, TLS files, etcd's own
// user/password auth). Pure parsing, plus the file checks and password read of the loaders; any
// thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "config/fields.h"
#include "config/tls_config.h"
#include "etcd/etcd_options.h"

namespace regen {

// The connection part of an etcd block.
struct EtcdConnectionConfig {
  std::vector<std::string> endpoints;  // etcd.endpoints: "host:port" of each member's client URL
  std::string prefix = "/regen/";      // etcd.prefix: every key of this cluster; '/' at both ends
  // etcd.tls: {ca, cert, key[, server_name]}: ca alone = TLS to the members; cert + key = a client
  // certificate too (etcd --client-cert-auth). Empty = plaintext.
  TlsConfig tls;
  std::string user;           // etcd.user: etcd's own auth ("" = none)
  std::string password_file;  // etcd.password_file: holds the user's password (read at start)
};

// What an etcd block of one file accepts beyond the common form.
struct EtcdBlockRules {
  bool endpoints_as_text = false;  // endpoints may also be "a:1,b:2" (agent.yaml)
  bool tls_server_name = false;    // tls may name the members' server_name (agent.yaml)
};

// The keys of the connection part, for the caller's FieldMap::GetMap allowed list.
inline constexpr std::string_view kEtcdConnectionKeys[] = {"endpoints", "prefix", "tls", "user",
                                                           "password_file"};

// Reads the connection part of the opened etcd block `etcd`; errors name "etcd.FIELD".
Status ReadEtcdConnection(const FieldMap& etcd, const EtcdBlockRules& rules,
                          EtcdConnectionConfig* out);
// The tls and password files of `c` can be read ("CONFIG_FILE: etcd.tls.ca: cannot read ...").
Status CheckEtcdFilesReadable(const EtcdConnectionConfig& c, const std::string& config_file);
// The content of password_file without its trailing newline ("" without a password_file).
Result<std::string> ReadEtcdPassword(const EtcdConnectionConfig& c);
// etcd's client options for `c`: endpoints, TLS files, user and the password read from its file
// (the timeouts are left to the caller).
Result<etcd::EtcdOptions> EtcdClientOptions(const EtcdConnectionConfig& c);

}  // namespace regen
