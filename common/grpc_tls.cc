#include "common/grpc_tls.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "common/names.h"

namespace regen {

Result<std::string> ReadPemFile(const std::string& path, const std::string& what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    return InvalidArgument(what + ": cannot read " + QuoteValue(path) + ": " +
                           std::strerror(error));
  }
  std::string content;
  char buffer[16384];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      ::close(fd);
      return InvalidArgument(what + ": cannot read " + QuoteValue(path) + ": " +
                             std::strerror(error));
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
    if (content.size() > (1u << 20)) {
      ::close(fd);
      return InvalidArgument(what + ": " + QuoteValue(path) +
                             " is larger than 1 MiB: not a PEM certificate or key");
    }
  }
  ::close(fd);
  if (content.find("-----BEGIN ") == std::string::npos) {
    return InvalidArgument(what + ": " + QuoteValue(path) +
                           " holds no PEM data (\"-----BEGIN ...\"); give a PEM file");
  }
  return content;
}

Result<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const TlsFiles& files) {
  if (files.ca.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  ASSIGN_OR_RETURN(options.pem_root_certs, ReadPemFile(files.ca, "CA certificate"));
  if (!files.cert.empty()) {
    ASSIGN_OR_RETURN(options.pem_cert_chain, ReadPemFile(files.cert, "certificate"));
    ASSIGN_OR_RETURN(options.pem_private_key, ReadPemFile(files.key, "private key"));
  }
  return grpc::SslCredentials(options);
}

void ApplyServerName(const TlsFiles& files, grpc::ChannelArguments* args) {
  if (!files.ca.empty() && !files.server_name.empty()) {
    args->SetSslTargetNameOverride(files.server_name);
  }
}

Result<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const TlsFiles& files,
                                                                       bool require_client_cert) {
  grpc::SslServerCredentialsOptions options(
      require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                          : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  ASSIGN_OR_RETURN(options.pem_root_certs, ReadPemFile(files.ca, "tls.ca"));
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPemFile(files.cert, "tls.cert"));
  ASSIGN_OR_RETURN(pair.private_key, ReadPemFile(files.key, "tls.key"));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  return grpc::SslServerCredentials(options);
}

}  // namespace regen
