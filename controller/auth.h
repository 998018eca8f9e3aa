// Who may call what on the controller: the AdminService roles of controller.yaml's auth: block
// (client certificates by name, bearer tokens from files), and the agent rule (an agent's
// certificate must name the host its hello claims). Pure decisions over what the gRPC layer took
// from a call (server.cc). An Authorizer is built once at start and only read afterwards: any
// thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "config/controller_config.h"

namespace regen {

enum class Role { kNone, kReadOnly, kAdmin };

// What a call presented.
struct Caller {
  // The verified client certificate's names (CN and subject alternative names); empty when the
  // caller presented no certificate (or the call is not over TLS).
  std::vector<std::string> cert_names;
  std::optional<std::string> authorization;  // the "authorization" metadata, when sent
  std::string peer;                          // "ipv4:127.0.0.1:5555", for messages
};

class Authorizer {
 public:
  // Reads the token files of config.auth (surrounding whitespace is dropped). Errors name the
  // field and the file; an empty token file is an error.
  static Result<Authorizer> Create(const ControllerConfig& config);
  // For tests: the tokens given as (token, role) instead of files.
  Authorizer(const ControllerConfig& config, std::vector<std::pair<std::string, Role>> tokens);

  // May `caller` use the AdminService RPC `rpc`? Read-only RPCs (`needs_admin` false) need any
  // role, the others admin. OK; UNAUTHENTICATED when the caller presented nothing usable (no
  // certificate and no token, a token not configured, a malformed authorization header);
  // PERMISSION_DENIED when the caller is known but not allowed (a certificate not listed in
  // auth.certs, a read-only role asking for a change). Messages name the RPC.
  Status AuthorizeAdmin(const Caller& caller, std::string_view rpc, bool needs_admin) const;

  // Things an operator should know at start (insecure mode, no auth block, ...): log them.
  std::vector<std::string> StartupWarnings() const;

 private:
  // The role a certificate name or a bearer token carries.
  Role CertRole(const std::vector<std::string>& names, std::string* matched) const;

  bool tls_ = false;
  bool auth_configured_ = false;
  std::vector<AuthCert> certs_;
  std::vector<std::string> hosts_;  // auth.hosts (for the startup warning)
  std::vector<std::pair<std::string, Role>> tokens_;
};

// May an agent whose certificate carries `cert_names` say hello as `host`? The host must match
// auth.hosts when it lists any (also without TLS). With TLS the host must be one of the names
// (CN or DNS SAN), and an operator's certificate (auth.certs) only joins when auth.hosts lists
// hosts (then the host was matched above): OK, UNAUTHENTICATED (no
// certificate) or PERMISSION_DENIED naming the certificate's names and the host claimed.
Status CheckAgentIdentity(bool tls, const AuthConfig& auth,
                          const std::vector<std::string>& cert_names, std::string_view host);

// a == b in time that depends only on the lengths.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// "admin", "read-only", "none".
const char* RoleName(Role role);

}  // namespace regen
