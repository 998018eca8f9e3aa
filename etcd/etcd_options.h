// How Regen reaches its etcd cluster (the HA mode's store and leases): endpoints, TLS files and
// user/password auth. A plain value; any thread.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/grpc_tls.h"

namespace regen::etcd {

struct EtcdOptions {
  // "host:port" of each member's client URL (several: calls fail over to the next one).
  std::vector<std::string> endpoints;
  // CA of the members' certificates (empty = plaintext); cert/key = our client certificate
  // (etcd --client-cert-auth). server_name: the name the members' certificates carry when it is
  // not the host part of the endpoint.
  TlsFiles tls;
  // etcd's own auth (etcd --auth enabled by `etcdctl auth enable`): empty user = none.
  std::string user;
  std::string password;
  // The most one attempt against one member may take before the next member is tried.
  std::chrono::milliseconds attempt_timeout{2000};
  // The timeout of calls that are not given one.
  std::chrono::milliseconds default_timeout{5000};
};

}  // namespace regen::etcd
