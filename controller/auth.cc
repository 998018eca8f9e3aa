#include "controller/auth.h"

#include <algorithm>
#include <cctype>

#include "common/names.h"
#include "config/fields.h"

namespace regen {

namespace {

Role ParseRole(const std::string& role) {
  if (role == "admin") return Role::kAdmin;
  if (role == "read-only") return Role::kReadOnly;
  return Role::kNone;
}

std::string Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

std::string JoinQuoted(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + QuoteValue(n);
  return out;
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kReadOnly:
      return "read-only";
    case Role::kNone:
      break;
  }
  return "none";
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

Result<Authorizer> Authorizer::Create(const ControllerConfig& config) {
  std::vector<std::pair<std::string, Role>> tokens;
  for (size_t i = 0; i < config.auth.tokens.size(); ++i) {
    const AuthToken& t = config.auth.tokens[i];
    std::string field = "auth.tokens[" + std::to_string(i) + "].file";
    Result<std::string> text = ReadConfigFile(t.file);
    if (!text.ok()) return InvalidArgument(field + ": " + text.status().message());
    std::string token = Trim(*text);
    if (token.empty()) {
      return InvalidArgument(field + ": " + QuoteValue(t.file) +
                             " is empty (put the token in it, e.g. from openssl rand -hex 32)");
    }
    tokens.emplace_back(std::move(token), ParseRole(t.role));
  }
  return Authorizer(config, std::move(tokens));
}

Authorizer::Authorizer(const ControllerConfig& config,
                       std::vector<std::pair<std::string, Role>> tokens)
    : tls_(config.tls.enabled()),
      auth_configured_(config.auth.configured),
      certs_(config.auth.certs),
      hosts_(config.auth.hosts),
      tokens_(std::move(tokens)) {}

Role Authorizer::CertRole(const std::vector<std::string>& names, std::string* matched) const {
  Role best = Role::kNone;
  for (const AuthCert& c : certs_) {
    if (std::find(names.begin(), names.end(), c.name) == names.end()) continue;
    Role r = ParseRole(c.role);
    if (r > best) {
      best = r;
      *matched = c.name;
    }
  }
  return best;
}

Status Authorizer::AuthorizeAdmin(const Caller& caller, std::string_view rpc,
                                  bool needs_admin) const {
  const std::string what = std::string(rpc) + " refused: ";
  if (!tls_ && !auth_configured_) return Status::Ok();  // insecure: true without auth (warned)

  Role role = Role::kNone;
  std::string who;
  if (caller.authorization) {
    std::string_view header = *caller.authorization;
    constexpr std::string_view kBearer = "bearer ";
    bool bearer = header.size() > kBearer.size() &&
                  std::equal(kBearer.begin(), kBearer.end(), header.begin(), [](char a, char b) {
                    return a == std::tolower(static_cast<unsigned char>(b));
                  });
    if (!bearer) {
      return Unauthenticated(what +
                             "the authorization metadata must read \"Bearer TOKEN\" (regenctl "
                             "--token-file FILE sends it)");
    }
    std::string token = Trim(header.substr(kBearer.size()));
    Role token_role = Role::kNone;
    for (const auto& [known, r] : tokens_) {
      // Every token is compared, whatever matched before: the time does not tell which.
      if (ConstantTimeEquals(token, known) && r > token_role) token_role = r;
    }
    if (token_role == Role::kNone) {
      return Unauthenticated(what +
                             "the token is not accepted (it must be the content of one of "
                             "auth.tokens' files in controller.yaml)");
    }
    role = token_role;
    who = "the token";
  }
  std::string cert_name;
  Role cert_role = CertRole(caller.cert_names, &cert_name);
  if (cert_role > role) {
    role = cert_role;
    who = "certificate " + QuoteValue(cert_name);
  }

  if (role == Role::kNone) {
    if (!caller.cert_names.empty()) {
      std::string listed = auth_configured_ ? "is not listed in auth.certs of controller.yaml"
                                            : "may not call it: controller.yaml has no auth: block";
      return PermissionDenied(what + "the client certificate (" + JoinQuoted(caller.cert_names) +
                              ") " + listed +
                              " (agent certificates may not use regenctl's RPCs unless listed; "
                              "use an admin or read-only client certificate, or a token)");
    }
    if (!auth_configured_) {
      return Unauthenticated(what +
                             "no credentials, and controller.yaml has no auth: block that could "
                             "accept any (add auth.certs or auth.tokens)");
    }
    return Unauthenticated(what +
                           "no credentials: give regenctl a client certificate (--cert, --key "
                           "and --ca) or a token (--token-file), or set REGEN_CERT, REGEN_KEY, "
                           "REGEN_CA or REGEN_TOKEN_FILE");
  }
  if (needs_admin && role != Role::kAdmin) {
    return PermissionDenied(what + "it changes the cluster and needs role admin; " + who +
                            " has role " + RoleName(role));
  }
  return Status::Ok();
}

std::vector<std::string> Authorizer::StartupWarnings() const {
  std::vector<std::string> w;
  if (!tls_) {
    w.push_back(
        "insecure: true: agents and regenctl connect over plaintext gRPC without certificates; "
        "any process that reaches the listen address can claim any host. Use tls: {ca, cert, "
        "key} outside labs and tests");
    if (!auth_configured_) {
      w.push_back("no auth: block with insecure: true: every regenctl RPC is allowed to anyone");
    } else {
      if (!certs_.empty()) {
        w.push_back(
            "auth.certs is ignored without tls: (no certificate is presented over "
            "plaintext); only auth.tokens can authenticate regenctl");
      }
      if (!tokens_.empty()) {
        w.push_back("auth.tokens over plaintext gRPC: tokens travel unencrypted");
      }
    }
  } else if (!auth_configured_) {
    w.push_back(
        "no auth: block: every regenctl RPC will be refused (add auth.certs with the names of "
        "admin and read-only client certificates, or auth.tokens)");
  }
  if (tls_ && hosts_.empty()) {
    w.push_back(
        "no auth.hosts: any certificate of the CA that names a host (CN or DNS SAN) may join as "
        "that host; list the hosts (or patterns such as \"rack1-*\") in auth.hosts");
  }
  return w;
}

Status CheckAgentIdentity(bool tls, const AuthConfig& auth,
                          const std::vector<std::string>& cert_names, std::string_view host) {
  if (!auth.hosts.empty() &&
      std::none_of(auth.hosts.begin(), auth.hosts.end(),
                   [&](const std::string& p) { return HostPatternMatches(p, host); })) {
    return PermissionDenied("its hello claims host " + QuoteValue(host) +
                            ", which auth.hosts of controller.yaml does not list (add the host, "
                            "or a pattern that matches it, to let it join)");
  }
  if (!tls) return Status::Ok();
  if (cert_names.empty()) {
    return Unauthenticated("its hello claims host " + QuoteValue(host) +
                           " but it presented no client certificate (set tls: {ca, cert, key} in "
                           "its agent.yaml, with a certificate signed by the controller's CA)");
  }
  // A certificate auth.certs lists is an operator's: it joins as a host only when auth.hosts
  // names that host explicitly (a host whose certificate also runs regen-agent failover|drain).
  for (const AuthCert& op : auth.certs) {
    if (std::find(cert_names.begin(), cert_names.end(), op.name) != cert_names.end() &&
        auth.hosts.empty()) {
      return PermissionDenied("its certificate " + QuoteValue(op.name) +
                              " is an operator certificate (auth.certs), not a host's: an agent "
                              "needs its host's own certificate (or list the host in auth.hosts "
                              "to let one certificate be both)");
    }
  }
  if (std::find(cert_names.begin(), cert_names.end(), host) != cert_names.end()) {
    return Status::Ok();
  }
  return PermissionDenied("its certificate names " + JoinQuoted(cert_names) +
                          " but its hello claims host " + QuoteValue(host) +
                          " (each host needs its own certificate with CN = its host_name; "
                          "scripts/gen-certs.sh makes them)");
}

}  // namespace regen
