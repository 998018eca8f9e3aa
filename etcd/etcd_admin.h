// etcd's users, roles and auth switch, for setting a cluster up for Regen's HA mode: one user per
// agent host whose role may only touch that host's key prefix, and the controllers' user
// (controller/etcd_setup.h drives them). Run once by an installer or a test; any thread (the
// client is thread-safe). With auth enabled every call here needs a client authenticated as a
// user with etcd's role "root".
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "etcd/etcd_client.h"

namespace regen::etcd {

// etcd's errors for names that exist already ("... already exists") come back as they are
// (FAILED_PRECONDITION); IsAlreadyExists tells them apart.
Status AddUser(EtcdClient& client, const std::string& user, const std::string& password);
// A user without a password (etcd 3.4's UserAddOptions.no_password): it cannot Authenticate and
// is reached only through a client certificate whose CN is its name (etcd --client-cert-auth).
Status AddUserWithoutPassword(EtcdClient& client, const std::string& user);
Status ChangePassword(EtcdClient& client, const std::string& user, const std::string& password);
Status DeleteUser(EtcdClient& client, const std::string& user);
Status AddRole(EtcdClient& client, const std::string& role);
Status DeleteRole(EtcdClient& client, const std::string& role);
// Lets `role` read (and with `write`, write) every key starting with `prefix`.
Status GrantPrefix(EtcdClient& client, const std::string& role, const std::string& prefix,
                   bool write);
// `role` "root" exists without AddRole: the user "root" must have it before EnableAuth.
Status GrantRole(EtcdClient& client, const std::string& user, const std::string& role);
Status RevokeRole(EtcdClient& client, const std::string& user, const std::string& role);
// From now on every request needs a user (EtcdOptions::user/password, or a client certificate's
// CN with etcd --client-cert-auth).
Status EnableAuth(EtcdClient& client);

// The roles of `user`; NOT_FOUND when etcd has no such user.
Result<std::vector<std::string>> UserRoles(EtcdClient& client, const std::string& user);
// One key range a role may read and/or write.
struct RangePermission {
  std::string key;
  std::string range_end;  // "" = the key alone
  bool read = false;
  bool write = false;
  bool operator==(const RangePermission&) const = default;
};
// The permissions of `role`; NOT_FOUND when etcd has no such role.
Result<std::vector<RangePermission>> RolePermissions(EtcdClient& client, const std::string& role);

// etcd's "user name already exists" / "role name already exists".
bool IsAlreadyExists(const Status& s);
// etcd's "user name not found" / "role name not found" / "... is not granted ...".
bool IsNotFoundOrNotGranted(const Status& s);
// Connect/Authenticate against a cluster whose auth is off ("authentication is not enabled").
bool IsAuthNotEnabled(const Status& s);
// Authenticate with a wrong user or password ("authentication failed").
bool IsAuthFailed(const Status& s);

}  // namespace regen::etcd
