// gRPC credentials from PEM files: the agent's and regenctl's channel credentials (mutual TLS or
// plaintext) and the controller's server credentials. Reads the files each time it is called (a
// renewed certificate is picked up by the next connection). Any thread.
#pragma once

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
};

// The whole content of a PEM file, or INVALID_ARGUMENT "WHAT: cannot read "PATH": strerror"
// (also for an empty file).
Result<std::string> ReadPemFile(const std::string& path, const std::string& what);

// SslCredentials (root = ca, key/cert pair when cert is set), or InsecureChannelCredentials when
// `files.ca` is empty. Errors name the file.
Result<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const TlsFiles& files);
// Sets the TLS target name override when `files.server_name` is set.
void ApplyServerName(const TlsFiles& files, grpc::ChannelArguments* args);

// SslServerCredentials with `files.cert`/`files.key` as the server's pair and `files.ca` as the
// root that client certificates must chain to. A client certificate is always verified when
// presented; with `require_client_cert` a client without one fails the handshake.
Result<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const TlsFiles& files,
                                                                       bool require_client_cert);

}  // namespace regen
