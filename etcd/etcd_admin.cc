#include "etcd/etcd_admin.h"

#include "etcd/etcd_channels.h"

namespace regen::etcd {
namespace {

namespace pb = etcdserverpb;

template <typename Request, typename Response, typename Method>
Status AuthCall(EtcdClient& client, const std::string& what, const Request& request,
                Method method) {
  Response response;
  return client.channels().Unary(what, client.options().default_timeout,
                                 [&](EtcdStubs& s, grpc::ClientContext* ctx) {
                                   return ((*s.auth).*method)(ctx, request, &response);
                                 });
}

}  // namespace

Status AddUser(EtcdClient& client, const std::string& user, const std::string& password) {
  pb::AuthUserAddRequest request;
  request.set_name(user);
  request.set_password(password);
  return AuthCall<pb::AuthUserAddRequest, pb::AuthUserAddResponse>(
      client, "add user " + user, request, &pb::Auth::Stub::UserAdd);
}

Status AddRole(EtcdClient& client, const std::string& role) {
  pb::AuthRoleAddRequest request;
  request.set_name(role);
  return AuthCall<pb::AuthRoleAddRequest, pb::AuthRoleAddResponse>(
      client, "add role " + role, request, &pb::Auth::Stub::RoleAdd);
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

Status EnableAuth(EtcdClient& client) {
  pb::AuthEnableRequest request;
  return AuthCall<pb::AuthEnableRequest, pb::AuthEnableResponse>(client, "enable auth", request,
                                                                 &pb::Auth::Stub::AuthEnable);
}

}  // namespace regen::etcd
