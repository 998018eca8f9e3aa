#include "controller/etcd_setup.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/grpc_tls.h"
#include "common/names.h"
#include "controller/ha_controller.h"
#include "etcd/etcd_admin.h"
#include "etcd/etcd_client.h"

namespace regen {
namespace {

using etcd::EtcdClient;
using std::chrono::milliseconds;

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// The options of controller.yaml's etcd block without its user (admin calls have their own).
Result<etcd::EtcdOptions> BaseOptions(const EtcdConfig& config) {
  EtcdConfig without_user = config;
  without_user.user.clear();
  without_user.password_file.clear();
  ASSIGN_OR_RETURN(etcd::EtcdOptions options, EtcdOptionsFromConfig(without_user));
  // bcrypt makes user calls take ~100 ms; an operator's command may wait a little.
  options.attempt_timeout = milliseconds(2000);
  options.default_timeout = milliseconds(5000);
  return options;
}

bool IsUnreachable(const Status& s) {
  return s.code() == Code::kUnavailable || s.code() == Code::kDeadlineExceeded;
}

// A client with root's rights: authenticated as root, or without a user while auth is off.
struct RootSession {
  std::shared_ptr<EtcdClient> client;
  bool auth_enabled = false;
};

Result<RootSession> ConnectAsRoot(const EtcdConfig& config, const std::string& root_password) {
  ASSIGN_OR_RETURN(etcd::EtcdOptions options, BaseOptions(config));
  const std::string where = "etcd at " + Join(config.endpoints);
  options.user = "root";
  options.password = root_password;
  auto root = EtcdClient::Connect(options);
  if (root.ok()) return RootSession{*root, true};
  const Status& s = root.status();
  if (IsUnreachable(s)) return Unavailable("cannot reach " + where + ": " + s.message());
  if (etcd::IsAuthFailed(s)) {
    return PermissionDenied(where + " refused user root with the given root password (wrong " +
                            "--root-password-file?): " + s.message());
  }
  if (!etcd::IsAuthNotEnabled(s)) return s.WithContext(where);
  // Auth is off: anyone is root. Check that a member answers before going on.
  options.user.clear();
  options.password.clear();
  ASSIGN_OR_RETURN(std::shared_ptr<EtcdClient> open, EtcdClient::Connect(options));
  auto probe = etcd::UserRoles(*open, "root");
  if (!probe.ok() && probe.status().code() != Code::kNotFound) {
    if (IsUnreachable(probe.status())) {
      return Unavailable("cannot reach " + where + ": " + probe.status().message());
    }
    return probe.status().WithContext(where);
  }
  return RootSession{open, false};
}

// Whether `user` can authenticate with `password` (auth on).
Result<bool> PasswordWorks(const EtcdConfig& config, const std::string& user,
                           const std::string& password) {
  ASSIGN_OR_RETURN(etcd::EtcdOptions options, BaseOptions(config));
  options.user = user;
  options.password = password;
  auto client = EtcdClient::Connect(options);
  if (client.ok()) return true;
  if (etcd::IsAuthFailed(client.status())) return false;
  return client.status();
}

// User `user` exists afterwards; with a password, that one works.
Status EnsureUser(const EtcdConfig& config, const RootSession& root, const std::string& user,
                  const std::optional<std::string>& password, const SetupLog& log) {
  EtcdClient& client = *root.client;
  auto roles = etcd::UserRoles(client, user);
  if (!roles.ok() && roles.status().code() != Code::kNotFound) return roles.status();
  if (!roles.ok()) {
    Status added = password ? etcd::AddUser(client, user, *password)
                            : etcd::AddUserWithoutPassword(client, user);
    if (!added.ok() && !etcd::IsAlreadyExists(added)) return added;
    log("user " + user + ": created" + (password ? "" : " (no password: client certificate only)"));
    return Status::Ok();
  }
  if (!password) {
    log("user " + user + ": exists (kept as it is)");
    return Status::Ok();
  }
  if (root.auth_enabled) {
    ASSIGN_OR_RETURN(bool works, PasswordWorks(config, user, *password));
    if (works) {
      log("user " + user + ": exists, its password is the one given");
      return Status::Ok();
    }
  }
  RETURN_IF_ERROR(etcd::ChangePassword(client, user, *password));
  if (root.auth_enabled) {
    ASSIGN_OR_RETURN(bool works, PasswordWorks(config, user, *password));
    if (!works) {
      return FailedPrecondition("user " + user +
                                " exists without a password (certificate only) and etcd 3.4 "
                                "cannot give it one: remove it first (etcd remove-host)");
    }
  }
  log("user " + user + ": existed, password set to the one given");
  return Status::Ok();
}

// Role `role` exists afterwards and may read and write every key starting with `prefix`.
Status EnsureRole(EtcdClient& client, const std::string& role, const std::string& prefix,
                  const SetupLog& log) {
  auto perms = etcd::RolePermissions(client, role);
  if (!perms.ok() && perms.status().code() != Code::kNotFound) return perms.status();
  std::string what = "role " + role + ": ";
  if (!perms.ok()) {
    Status added = etcd::AddRole(client, role);
    if (!added.ok() && !etcd::IsAlreadyExists(added)) return added;
    what += "created, ";
    perms = std::vector<etcd::RangePermission>{};
  }
  const etcd::RangePermission wanted{prefix, etcd::PrefixEnd(prefix), true, true};
  const auto others = std::count_if(perms->begin(), perms->end(),
                                    [&](const etcd::RangePermission& p) { return !(p == wanted); });
  if (static_cast<size_t>(others) < perms->size()) {
    log(what + "may read and write " + prefix + "* (as before)");
  } else {
    RETURN_IF_ERROR(etcd::GrantPrefix(client, role, prefix, true));
    log(what + "granted read and write on " + prefix + "*");
  }
  if (others > 0) {
    log("note: role " + role + " has " + std::to_string(others) +
        " other permission(s) too, not made by regen-controller: kept");
  }
  return Status::Ok();
}

Status EnsureGrant(EtcdClient& client, const std::string& user, const std::string& role,
                   const SetupLog& log) {
  ASSIGN_OR_RETURN(std::vector<std::string> roles, etcd::UserRoles(client, user));
  if (std::find(roles.begin(), roles.end(), role) != roles.end()) {
    log("user " + user + ": has role " + role + " (as before)");
    return Status::Ok();
  }
  RETURN_IF_ERROR(etcd::GrantRole(client, user, role));
  log("user " + user + ": granted role " + role);
  return Status::Ok();
}

}  // namespace

Status ValidateEtcdHostName(const EtcdConfig& config, const std::string& host) {
  RETURN_IF_ERROR(ValidateName("HOST", host));
  auto controller_user = ControllerEtcdUser(config);
  if (host == "root" || (controller_user.ok() && host == *controller_user)) {
    return InvalidArgument("HOST \"" + host + "\" is the etcd user of " +
                           (host == "root" ? "etcd's root" : "the controllers") +
                           ": an agent host must have a name of its own");
  }
  return Status::Ok();
}

std::string EtcdHostRole(const std::string& host) { return "regen-host-" + host; }

std::string EtcdHostPrefix(const EtcdConfig& etcd, const std::string& host) {
  return etcd.prefix + "hosts/" + host + "/";
}

Result<std::string> CertificateCommonName(const std::string& path) {
  ASSIGN_OR_RETURN(std::string pem, ReadPemFile(path, "etcd.tls.cert"));
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr, &X509_free);
  if (!cert) return InvalidArgument("etcd.tls.cert: \"" + path + "\" holds no PEM certificate");
  char cn[256] = {};
  int n =
      X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof(cn));
  if (n <= 0)
    return InvalidArgument("etcd.tls.cert: the certificate in \"" + path + "\" has no CN");
  return std::string(cn, static_cast<size_t>(n));
}

Result<std::string> ControllerEtcdUser(const EtcdConfig& etcd) {
  if (!etcd.user.empty()) return etcd.user;
  if (!etcd.tls.cert.empty()) return CertificateCommonName(etcd.tls.cert);
  return InvalidArgument(
      "controller.yaml's etcd block has neither user/password_file nor tls.cert: the controllers "
      "could not authenticate once etcd's auth is on; add etcd.user and etcd.password_file (or a "
      "client certificate, etcd.tls.cert/key)");
}

Result<std::string> ReadPasswordFile(const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) return InvalidArgument(what + ": cannot read \"" + path + "\"");
  std::stringstream text;
  text << in.rdbuf();
  std::string password = text.str();
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
    password.pop_back();
  }
  if (password.empty()) return InvalidArgument(what + ": \"" + path + "\" is empty");
  return password;
}

Status EtcdInit(const EtcdConfig& etcd, const std::string& root_password, const SetupLog& log) {
  ASSIGN_OR_RETURN(std::string controller_user, ControllerEtcdUser(etcd));
  if (controller_user == "root") {
    return InvalidArgument(
        "the controllers' etcd user is root: give them a user of their own (etcd.user), root "
        "stays for setting etcd up");
  }
  std::optional<std::string> controller_password;
  if (!etcd.user.empty()) {
    ASSIGN_OR_RETURN(controller_password,
                     ReadPasswordFile(etcd.password_file, "etcd.password_file"));
  }
  ASSIGN_OR_RETURN(RootSession root, ConnectAsRoot(etcd, root_password));
  log(root.auth_enabled ? "etcd: auth is on, authenticated as root"
                        : "etcd: auth is off, setting it up");
  RETURN_IF_ERROR(EnsureUser(etcd, root, "root", root_password, log));
  RETURN_IF_ERROR(EnsureGrant(*root.client, "root", "root", log));
  RETURN_IF_ERROR(EnsureRole(*root.client, kEtcdControllerRole, etcd.prefix, log));
  RETURN_IF_ERROR(EnsureUser(etcd, root, controller_user, controller_password, log));
  RETURN_IF_ERROR(EnsureGrant(*root.client, controller_user, kEtcdControllerRole, log));
  if (root.auth_enabled) {
    log("auth: on (as before)");
  } else {
    RETURN_IF_ERROR(etcd::EnableAuth(*root.client));
    log("auth: enabled");
  }
  return Status::Ok();
}

Status EtcdAddHost(const EtcdConfig& etcd, const std::string& root_password,
                   const std::string& host, const std::optional<std::string>& password,
                   const SetupLog& log) {
  RETURN_IF_ERROR(ValidateEtcdHostName(etcd, host));
  ASSIGN_OR_RETURN(RootSession root, ConnectAsRoot(etcd, root_password));
  if (!root.auth_enabled) {
    return FailedPrecondition("etcd's auth is off: run `regen-controller etcd init` first");
  }
  const std::string role = EtcdHostRole(host);
  RETURN_IF_ERROR(EnsureUser(etcd, root, host, password, log));
  RETURN_IF_ERROR(EnsureRole(*root.client, role, EtcdHostPrefix(etcd, host), log));
  return EnsureGrant(*root.client, host, role, log);
}

Status EtcdRemoveHost(const EtcdConfig& etcd, const std::string& root_password,
                      const std::string& host, const SetupLog& log) {
  RETURN_IF_ERROR(ValidateEtcdHostName(etcd, host));
  ASSIGN_OR_RETURN(RootSession root, ConnectAsRoot(etcd, root_password));
  EtcdClient& client = *root.client;
  Status user = etcd::DeleteUser(client, host);
  if (!user.ok() && !etcd::IsNotFoundOrNotGranted(user)) return user;
  log("user " + host + (user.ok() ? ": deleted" : ": not there"));
  Status role = etcd::DeleteRole(client, EtcdHostRole(host));
  if (!role.ok() && !etcd::IsNotFoundOrNotGranted(role)) return role;
  log("role " + EtcdHostRole(host) + (role.ok() ? ": deleted" : ": not there"));
  const std::string prefix = EtcdHostPrefix(etcd, host);
  auto keys = client.GetPrefix(prefix);
  if (keys.ok() && !keys->kvs.empty()) {
    bool leased = std::any_of(keys->kvs.begin(), keys->kvs.end(),
                              [](const etcd::KeyValue& kv) { return kv.lease != 0; });
    log("note: " + std::to_string(keys->kvs.size()) + " key(s) under " + prefix + " remain" +
        (leased ? "; they go when their lease expires, but etcd 3.4 lets anyone renew a lease: "
                  "stop the host's agent"
                : ""));
  }
  return Status::Ok();
}

}  // namespace regen
