// The security settings shared by agent.yaml and controller.yaml: the `tls:` block (PEM files of
// the CA, this process's certificate and key) and `insecure: true`, exactly one of which a
// process that talks to the other side must have. Pure parsing, plus one readability check of
// the files for the loaders; any thread.
#pragma once

#include <chrono>
#include <string>

#include "common/status.h"
#include "config/fields.h"

namespace regen {

struct TlsConfig {
  std::string ca;           // tls.ca: the CA certificate (PEM) the peer's certificate must chain to
  std::string cert;         // tls.cert: this process's certificate (PEM)
  std::string key;          // tls.key: its private key (PEM)
  std::string server_name;  // tls.server_name (agent only): the name expected in the
                            // controller's certificate; "" = the host of controller_address
  // tls.crl: a PEM file of certificate revocation lists signed by tls.ca ("" = none): a peer
  // whose certificate is listed fails the handshake. The controller re-reads it with the other
  // files (reload_interval); the agent reads it at each connection attempt.
  std::string crl{};
  // tls.reload_interval (controller only): how often cert, key, ca and crl are re-read; a
  // changed and valid set serves new connections, a broken one is logged and the old set kept.
  std::chrono::milliseconds reload_interval{10000};
  bool enabled() const { return !cert.empty(); }
};

// Which process reads the block: the agent (a client: tls.server_name) or the controller (a
// server: tls.reload_interval). Both take ca, cert, key and crl.
enum class TlsSide { kClient, kServer };

// Reads `tls` and `insecure` from `top`. With `required`, exactly one of them must be given:
// neither is an error at `top` naming the field `tls` ("set tls: {ca, cert, key} or insecure:
// true"); both is an error at `insecure`.
Status ReadTlsSettings(const FieldMap& top, TlsSide side, bool required, TlsConfig* tls,
                       bool* insecure);

// Each file of an enabled `tls` (crl too when set) can be opened for reading; otherwise
// INVALID_ARGUMENT "CONFIG_FILE: tls.ca: cannot read "PATH": strerror (...)". Reads nothing when
// TLS is off.
Status CheckTlsFilesReadable(const TlsConfig& tls, const std::string& config_file);

// `path` can be opened for reading; otherwise INVALID_ARGUMENT
// "CONFIG_FILE: FIELD: cannot read "PATH": strerror (what to do)".
Status CheckFileReadable(const std::string& path, const std::string& field,
                         const std::string& config_file);

}  // namespace regen
