#include "common/grpc_tls.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "common/names.h"
#include "common/thread_annotations.h"
#include "common/tls_material.h"
#include "common/tls_reloader.h"

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

namespace {

// gRPC 1.51 takes CRLs only as a hashed directory, read during each handshake: the process's
// clients share one private copy, replaced when a MakeChannelCredentials reads a changed CRL.
Result<std::string> PublishClientCrls(const TlsMaterial& material) {
  static Mutex mu;
  static std::unique_ptr<TlsSnapshotDir> dir GUARDED_BY(mu);
  static std::string published GUARDED_BY(mu);  // the CRL text in dir
  MutexLock lock(mu);
  if (dir == nullptr) {
    ASSIGN_OR_RETURN(dir, TlsSnapshotDir::Create());
  }
  if (dir->generation() == 0 || published != material.inputs.crl) {
    RETURN_IF_ERROR(dir->Publish(material, /*with_identity=*/false));
    published = material.inputs.crl;
  }
  return dir->current() + "/crl";
}

Result<std::shared_ptr<grpc::ChannelCredentials>> TlsChannelCredentialsWithCrl(
    const TlsFiles& files) {
  ASSIGN_OR_RETURN(TlsInputs inputs, ReadTlsInputs(files));
  ASSIGN_OR_RETURN(TlsMaterial material, CheckTlsMaterial(std::move(inputs), files));
  ASSIGN_OR_RETURN(std::string crl_dir, PublishClientCrls(material));
  std::shared_ptr<grpc::experimental::StaticDataCertificateProvider> provider;
  if (files.cert.empty()) {
    provider =
        std::make_shared<grpc::experimental::StaticDataCertificateProvider>(material.inputs.ca);
  } else {
    provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
        material.inputs.ca, std::vector<grpc::experimental::IdentityKeyCertPair>{
                                {material.inputs.key, material.inputs.cert}});
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_root_certs();
  if (!files.cert.empty()) options.watch_identity_key_cert_pairs();
  options.set_crl_directory(crl_dir);
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace

Result<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const TlsFiles& files) {
  if (files.ca.empty()) return grpc::InsecureChannelCredentials();
  if (!files.crl.empty()) return TlsChannelCredentialsWithCrl(files);
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

Result<ServerTls> MakeServerCredentials(const TlsFiles& files, bool require_client_cert,
                                        std::chrono::milliseconds reload_interval) {
  ASSIGN_OR_RETURN(std::shared_ptr<TlsReloader> reloader,
                   TlsReloader::Start(files, reload_interval));
  // gRPC's watcher re-reads the private copies every second (they change only when the reloader
  // publishes a checked set); a new root makes it rebuild the TLS context, CRLs included.
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      reloader->key_path(), reloader->cert_path(), reloader->ca_path(), /*refresh_interval_sec=*/1);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(require_client_cert
                                    ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                    : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  if (!files.crl.empty()) options.set_crl_directory(reloader->crl_dir());
  return ServerTls{grpc::experimental::TlsServerCredentials(options), std::move(reloader)};
}

}  // namespace regen
