#include "ctl/connection.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>

#include "common/grpc_tls.h"
#include "common/names.h"
#include "config/fields.h"

namespace regen::ctl {

namespace {

constexpr const char* kUnreachableHint =
    "is regen-controller running? set --controller or REGEN_CONTROLLER";

std::string EnvOr(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

}  // namespace

Args ArgsFromEnvironment() {
  Args a;
  if (const char* env = std::getenv("REGEN_CONTROLLER"); env != nullptr && *env != '\0') {
    a.controller = env;
  }
  a.ca = EnvOr("REGEN_CA");
  a.crl = EnvOr("REGEN_CRL");
  a.cert = EnvOr("REGEN_CERT");
  a.key = EnvOr("REGEN_KEY");
  a.token_file = EnvOr("REGEN_TOKEN_FILE");
  return a;
}

void AddConnectionOptions(CLI::App& app, Args& a) {
  app.add_option("--controller", a.controller,
                 "controller address host:port, or several separated by ',' (HA "
                 "controllers: each call goes to the active one) (default: $REGEN_CONTROLLER, "
                 "else " +
                     std::string(kDefaultController) + ")");
  app.add_option("--timeout", a.timeout_seconds, "seconds to wait for each reply")
      ->capture_default_str();
  app.add_option("--ca", a.ca,
                 "CA certificate (PEM) that signed the controller's certificate: talk TLS "
                 "(default: $REGEN_CA; without it, plaintext)");
  app.add_option("--cert", a.cert, "client certificate (PEM), with --key (default: $REGEN_CERT)");
  app.add_option("--key", a.key, "the client certificate's private key (default: $REGEN_KEY)");
  app.add_option("--token-file", a.token_file,
                 "file holding a bearer token of the controller's auth.tokens (default: "
                 "$REGEN_TOKEN_FILE)");
  app.add_option("--crl", a.crl,
                 "CRLs (PEM) of the CA: refuse a controller whose certificate is revoked "
                 "(default: $REGEN_CRL)");
  app.add_option("--tls-server-name", a.tls_server_name,
                 "the name the controllers' certificates carry, when it is not the host of "
                 "the --controller address dialled");
}

Status CredentialOptions(const Args& a, AdminClientOptions* options, std::ostream& err) {
  if (!a.cert.empty() && a.key.empty()) {
    return InvalidArgument("--cert " + QuoteValue(a.cert) +
                           " needs --key (or REGEN_KEY): the certificate's private key");
  }
  if (!a.key.empty() && a.cert.empty()) {
    return InvalidArgument("--key " + QuoteValue(a.key) +
                           " needs --cert (or REGEN_CERT): the client certificate it belongs to");
  }
  if (!a.cert.empty() && a.ca.empty()) {
    return InvalidArgument(
        "--cert needs --ca (or REGEN_CA): the CA that signed the "
        "controller's certificate (a client certificate only works over TLS)");
  }
  if (!a.crl.empty() && a.ca.empty()) {
    return InvalidArgument("--crl needs --ca (or REGEN_CA): it only matters over TLS");
  }
  if (!a.tls_server_name.empty() && a.ca.empty()) {
    return InvalidArgument("--tls-server-name needs --ca (or REGEN_CA): it only matters over TLS");
  }
  const std::pair<const char*, std::string> files[] = {
      {"--ca", a.ca}, {"--cert", a.cert}, {"--key", a.key}, {"--crl", a.crl}};
  for (const auto& [flag, path] : files) {
    if (path.empty()) continue;
    if (Result<std::string> pem = ReadPemFile(path, flag); !pem.ok()) return pem.status();
  }
  if (!a.token_file.empty()) {
    Result<std::string> text = ReadConfigFile(a.token_file);
    if (!text.ok()) return InvalidArgument("--token-file: " + text.status().message());
    std::string token = *text;
    token.erase(0, token.find_first_not_of(" \t\r\n"));
    token.erase(token.find_last_not_of(" \t\r\n") + 1);
    if (token.empty()) {
      return InvalidArgument("--token-file " + QuoteValue(a.token_file) +
                             " is empty (it must hold the token the controller's auth.tokens "
                             "file holds)");
    }
    if (token.find_first_of(" \t\r\n") != std::string::npos) {
      return InvalidArgument("--token-file " + QuoteValue(a.token_file) +
                             " holds more than one word (it must hold only the token)");
    }
    options->token = std::move(token);
    if (a.ca.empty()) {
      err << "regenctl: warning: sending the token without TLS (no --ca): anyone on the path "
             "can read it\n";
    }
  }
  options->tls = {a.ca, a.cert, a.key, a.tls_server_name, a.crl};
  return Status::Ok();
}

void SetDeadlineAndHint(const Args& a, AdminClientOptions* options) {
  options->deadline = std::chrono::milliseconds(std::llround(a.timeout_seconds * 1000));
  options->unreachable_hint = kUnreachableHint;
  if (!a.ca.empty()) {
    options->unreachable_hint +=
        "; over TLS the handshake fails too when --ca is not the controller's CA, when the "
        "controller requires a client certificate (--cert/--key) or when its certificate does "
        "not name the host of the --controller address dialled (--tls-server-name)" +
        std::string(a.crl.empty() ? ""
                                  : ", or when --crl says the controller's certificate is "
                                    "revoked");
  } else {
    options->unreachable_hint +=
        "; a controller with tls: in controller.yaml needs --ca (and --cert/--key or "
        "--token-file)";
  }
}

}  // namespace regen::ctl
