// etcd's users, roles and auth switch, for setting a cluster up for Regen's HA mode: one user per
// agent host whose role may only touch that host's key prefix, and the controllers' user. Run
// once by an installer or a test; any thread (the client is thread-safe).
#pragma once

#include <string>

#include "common/status.h"
#include "etcd/etcd_client.h"

namespace regen::etcd {

// etcd's errors for names that exist already ("... already exists") come back as they are.
Status AddUser(EtcdClient& client, const std::string& user, const std::string& password);
Status AddRole(EtcdClient& client, const std::string& role);
// Lets `role` read (and with `write`, write) every key starting with `prefix`.
Status GrantPrefix(EtcdClient& client, const std::string& role, const std::string& prefix,
                   bool write);
// `role` "root" exists without AddRole: the user "root" must have it before EnableAuth.
Status GrantRole(EtcdClient& client, const std::string& user, const std::string& role);
// From now on every request needs a user (EtcdOptions::user/password).
Status EnableAuth(EtcdClient& client);

}  // namespace regen::etcd
