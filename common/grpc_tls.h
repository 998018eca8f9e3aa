// gRPC credentials from PEM files: the agent's and regenctl's channel credentials (mutual TLS or
// plaintext) and the controller's server credentials. Channel credentials read the files each
// time they are made (a renewed certificate or CRL is picked up by the next connection); server
// credentials re-read them every reload_interval (common/tls_reloader.h). Any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"

namespace grpc {
class ChannelArguments;
class ChannelCredentials;
class ServerCredentials;
}  // namespace grpc

namespace regen {

// PEM file paths. An empty `ca` means plaintext (insecure) credentials.
struct TlsFiles {
  std::string ca;           // the CA that signed the other side's certificate
  std::string cert;         // ours ("" = present no certificate: a token-only regenctl)
  std::string key;          // its private key (set exactly when cert is)
  std::string server_name;  // client only: the name the server's certificate must carry
                            // ("" = the host part of the address dialled)
  std::string crl{};        // PEM CRLs signed by `ca`: the other side's certificate must not be
                            // listed ("" = no revocation check)
};

class TlsReloader;

// The whole content of a PEM file, or INVALID_ARGUMENT "WHAT: cannot read "PATH": strerror"
// (also for an empty file).
Result<std::string> ReadPemFile(const std::string& path, const std::string& what);

// SslCredentials (root = ca, key/cert pair when cert is set), or InsecureChannelCredentials when
// `files.ca` is empty. With `files.crl`, TlsCredentials instead: the same files, checked first
// (common/tls_material.h), and the CRLs enforced on the handshake. Errors name the file.
Result<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const TlsFiles& files);
// Sets the TLS target name override when `files.server_name` is set.
void ApplyServerName(const TlsFiles& files, grpc::ChannelArguments* args);

// What a server listens with, and what re-reads its files (keep it as long as the server runs;
// null with plaintext).
struct ServerTls {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::shared_ptr<TlsReloader> reloader;
};

// TlsServerCredentials with `files.cert`/`files.key` as the server's pair, `files.ca` as the
// root that client certificates must chain to and `files.crl` (when set) as the revoked ones. A
// client certificate is always verified when presented; with `require_client_cert` a client
// without one fails the handshake. The files are checked now (errors name the field and path)
// and re-read every `reload_interval`: a changed valid set serves new connections, a broken one
// is logged and the old set kept.
Result<ServerTls> MakeServerCredentials(const TlsFiles& files, bool require_client_cert,
                                        std::chrono::milliseconds reload_interval);

}  // namespace regen
