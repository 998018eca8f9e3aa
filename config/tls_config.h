// The security settings shared by agent.yaml and controller.yaml: the `tls:` block (PEM files of
// the CA, this process's certificate and key) and `insecure: true`, exactly one of which a
// process that talks to the other side must have. Pure parsing, plus one readability check of
// the files for the loaders; any thread.
#pragma once

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
  bool enabled() const { return !cert.empty(); }
};

// Reads `tls` (with server_name when `allow_server_name`) and `insecure` from `top`. With
// `required`, exactly one of them must be given: neither is an error at `top` naming the field
// `tls` ("set tls: {ca, cert, key} or insecure: true"); both is an error at `insecure`.
Status ReadTlsSettings(const FieldMap& top, bool allow_server_name, bool required, TlsConfig* tls,
                       bool* insecure);

// Each file of an enabled `tls` can be opened for reading; otherwise INVALID_ARGUMENT
// "CONFIG_FILE: tls.ca: cannot read "PATH": strerror (...)". Reads nothing when TLS is off.
Status CheckTlsFilesReadable(const TlsConfig& tls, const std::string& config_file);

// `path` can be opened for reading; otherwise INVALID_ARGUMENT
// "CONFIG_FILE: FIELD: cannot read "PATH": strerror (what to do)".
Status CheckFileReadable(const std::string& path, const std::string& field,
                         const std::string& config_file);

}  // namespace regen
