#include "etcd/etcd_admin.h"

#include "etcd/etcd_channels.h"

namespace regen::etcd {
namespace {

namespace pb = etcdserverpb;

template <typename Request, typename Response, typename Method>
Status AuthCall(EtcdClient& client, const std::string& what, const Request& request, Method method,
                Response* response = nullptr) {
  Response local;
  Response* out = response != nullptr ? response : &local;
  return client.channels().Unary(what, client.options().default_timeout,
                                 [&](EtcdStubs& s, grpc::ClientContext* ctx) {
                                   return ((*s.auth).*method)(ctx, request, out);
                                 });
}

bool MessageHas(const Status& s, const char* text) {
  return !s.ok() && s.message().find(text) != std::string::npos;
}

// etcd answers FAILED_PRECONDITION "... name not found"; callers want NOT_FOUND.
Status AsNotFound(Status s) {
  if (MessageHas(s, "not found")) return NotFound(s.message());
  return s;
}

}  // namespace

Status AddUser(EtcdClient& client, const std::string& user, const std::string& password) {
  pb::AuthUserAddRequest request;
  request.set_name(user);
  request.set_password(password);
  return AuthCall<pb::AuthUserAddRequest, pb::AuthUserAddResponse>(
      client, "add user " + user, request, &pb::Auth::Stub::UserAdd);
}

Status AddUserWithoutPassword(EtcdClient& client, const std::string& user) {
  pb::AuthUserAddRequest request;
  request.set_name(user);
  request.mutable_options()->set_no_password(true);
  return AuthCall<pb::AuthUserAddRequest, pb::AuthUserAddResponse>(
      client, "add user " + user + " (no password)", request, &pb::Auth::Stub::UserAdd);
}

Status ChangePassword(EtcdClient& client, const std::string& user, const std::string& password) {
  pb::AuthUserChangePasswordRequest request;
  request.set_name(user);
  request.set_password(password);
  return AuthCall<pb::AuthUserChangePasswordRequest, pb::AuthUserChangePasswordResponse>(
      client, "change the password of user " + user, request, &pb::Auth::Stub::UserChangePassword);
}

Status DeleteUser(EtcdClient& client, const std::string& user) {
  pb::AuthUserDeleteRequest request;
  request.set_name(user);
  return AuthCall<pb::AuthUserDeleteRequest, pb::AuthUserDeleteResponse>(
      client, "delete user " + user, request, &pb::Auth::Stub::UserDelete);
}

Status AddRole(EtcdClient& client, const std::string& role) {
  pb::AuthRoleAddRequest request;
  request.set_name(role);
  return AuthCall<pb::AuthRoleAddRequest, pb::AuthRoleAddResponse>(
      client, "add role " + role, request, &pb::Auth::Stub::RoleAdd);
}

Status DeleteRole(EtcdClient& client, const std::string& role) {
  pb::AuthRoleDeleteRequest request;
  request.set_role(role);
  return AuthCall<pb::AuthRoleDeleteRequest, pb::AuthRoleDeleteResponse>(
      client, "delete role " + role, request, &pb::Auth::Stub::RoleDelete);
}

Status GrantPrefix(EtcdClient& client, const std::string& role, const std::string& prefix,
                   bool write) {
  pb::AuthRoleGrantPermissionRequest request;
  request.set_name(role);
  auto* perm = request.mutable_perm();
  perm->set_permtype(write ? authpb::Permission::READWRITE : authpb::Permission::READ);
  perm->set_key(prefix);
  perm->set_range_end(PrefixEnd(prefix));
  return AuthCall<pb::AuthRoleGrantPermissionRequest, pb::AuthRoleGrantPermissionResponse>(
      client, "grant " + prefix + " to role " + role, request,
      &pb::Auth::Stub::RoleGrantPermission);
}

Status GrantRole(EtcdClient& client, const std::string& user, const std::string& role) {
  pb::AuthUserGrantRoleRequest request;
  request.set_user(user);
  request.set_role(role);
  return AuthCall<pb::AuthUserGrantRoleRequest, pb::AuthUserGrantRoleResponse>(
      client, "grant role " + role + " to user " + user, request, &pb::Auth::Stub::UserGrantRole);
}

Status RevokeRole(EtcdClient& client, const std::string& user, const std::string& role) {
  pb::AuthUserRevokeRoleRequest request;
  request.set_name(user);
  request.set_role(role);
  return AuthCall<pb::AuthUserRevokeRoleRequest, pb::AuthUserRevokeRoleResponse>(
      client, "revoke role " + role + " from user " + user, request,
      &pb::Auth::Stub::UserRevokeRole);
}

Status EnableAuth(EtcdClient& client) {
  pb::AuthEnableRequest request;
  return AuthCall<pb::AuthEnableRequest, pb::AuthEnableResponse>(client, "enable auth", request,
                                                                 &pb::Auth::Stub::AuthEnable);
}

Result<std::vector<std::string>> UserRoles(EtcdClient& client, const std::string& user) {
  pb::AuthUserGetRequest request;
  request.set_name(user);
  pb::AuthUserGetResponse response;
  RETURN_IF_ERROR(AsNotFound(
      AuthCall(client, "get user " + user, request, &pb::Auth::Stub::UserGet, &response)));
  return std::vector<std::string>(response.roles().begin(), response.roles().end());
}

Result<std::vector<RangePermission>> RolePermissions(EtcdClient& client, const std::string& role) {
  pb::AuthRoleGetRequest request;
  request.set_role(role);
  pb::AuthRoleGetResponse response;
  RETURN_IF_ERROR(AsNotFound(
      AuthCall(client, "get role " + role, request, &pb::Auth::Stub::RoleGet, &response)));
  std::vector<RangePermission> out;
  for (const authpb::Permission& p : response.perm()) {
    const bool rw = p.permtype() == authpb::Permission::READWRITE;
    out.push_back({p.key(), p.range_end(), rw || p.permtype() == authpb::Permission::READ,
                   rw || p.permtype() == authpb::Permission::WRITE});
  }
  return out;
}

bool IsAlreadyExists(const Status& s) { return MessageHas(s, "already exists"); }

bool IsNotFoundOrNotGranted(const Status& s) {
  return MessageHas(s, "not found") || MessageHas(s, "not granted");
}

bool IsAuthNotEnabled(const Status& s) { return MessageHas(s, "authentication is not enabled"); }

bool IsAuthFailed(const Status& s) { return MessageHas(s, "authentication failed"); }

}  // namespace regen::etcd
