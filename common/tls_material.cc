#include "common/tls_material.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <type_traits>

#include "common/grpc_tls.h"
#include "common/names.h"

namespace regen {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using CrlPtr = std::unique_ptr<X509_CRL, CrlFree>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

std::string NameText(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  return BioText(bio.get());
}

std::string TimeText(const ASN1_TIME* t) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), t);
  return BioText(bio.get());
}

// Every PEM object of one kind in `text`, in order.
template <typename T, typename Read>
std::vector<std::unique_ptr<T, std::conditional_t<std::is_same_v<T, X509>, X509Free, CrlFree>>>
ReadAll(const std::string& text, Read read) {
  std::vector<std::unique_ptr<T, std::conditional_t<std::is_same_v<T, X509>, X509Free, CrlFree>>>
      out;
  BioPtr bio = MemoryBio(text);
  while (T* item = read(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(item);
  ERR_clear_error();  // the end of the text reads as "no start line"
  return out;
}

std::string Label(const std::string& field, const std::string& path) {
  return field + ": " + QuoteValue(path);
}

std::string SerialText(X509* cert) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
  if (bn == nullptr) return "?";
  char* hex = BN_bn2hex(bn);
  std::string out = hex != nullptr ? hex : "?";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

// The CRLs of `in.crl`, checked against the CA certificates, under their hashed names.
Status CheckCrls(const std::vector<X509Ptr>& cas, const TlsFiles& files, TlsMaterial* m) {
  auto crls = ReadAll<X509_CRL>(m->inputs.crl, PEM_read_bio_X509_CRL);
  const std::string at = Label("tls.crl", files.crl);
  if (crls.empty()) {
    return InvalidArgument(at +
                           " holds no certificate revocation list (\"-----BEGIN X509 "
                           "CRL-----\"; make one with scripts/gen-certs.sh --crl)");
  }
  std::map<unsigned long, int> per_hash;
  size_t revoked = 0;
  for (const CrlPtr& crl : crls) {
    const X509_NAME* issuer = X509_CRL_get_issuer(crl.get());
    bool signed_by_ca = false;
    for (const X509Ptr& ca : cas) {
      if (X509_NAME_cmp(X509_get_subject_name(ca.get()), issuer) == 0 &&
          X509_CRL_verify(crl.get(), X509_get0_pubkey(ca.get())) == 1) {
        signed_by_ca = true;
      }
    }
    ERR_clear_error();
    if (!signed_by_ca) {
      return InvalidArgument(at + ": the CRL of " + QuoteValue(NameText(issuer)) +
                             " is not signed by a certificate in tls.ca " + QuoteValue(files.ca) +
                             " (make it with the CA's key: scripts/gen-certs.sh --crl)");
    }
    const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
    if (next != nullptr && X509_cmp_current_time(next) < 0) {
      return InvalidArgument(at + ": the CRL of " + QuoteValue(NameText(issuer)) + " expired at " +
                             TimeText(next) +
                             " (every handshake would fail: make a new one with "
                             "scripts/gen-certs.sh --crl)");
    }
    STACK_OF(X509_REVOKED)* list = X509_CRL_get_REVOKED(crl.get());
    revoked += list != nullptr ? static_cast<size_t>(sk_X509_REVOKED_num(list)) : 0;
    int ok = 0;
    unsigned long hash = X509_NAME_hash_ex(issuer, nullptr, nullptr, &ok);
    char name[32];
    std::snprintf(name, sizeof name, "%08lx.r%d", hash, per_hash[hash]++);
    BioPtr out(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509_CRL(out.get(), crl.get());
    m->crls.emplace_back(name, BioText(out.get()));
  }
  m->summary += "; " + std::to_string(crls.size()) + " CRL(s), " + std::to_string(revoked) +
                " revoked (" + Label("tls.crl", files.crl) + ")";
  return Status::Ok();
}

Status CheckIdentity(const TlsFiles& files, TlsMaterial* m) {
  auto certs = ReadAll<X509>(m->inputs.cert, PEM_read_bio_X509);
  if (certs.empty()) {
    return InvalidArgument(Label("tls.cert", files.cert) +
                           " holds no certificate (\"-----BEGIN CERTIFICATE-----\")");
  }
  BioPtr bio = MemoryBio(m->inputs.key);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return InvalidArgument(Label("tls.key", files.key) +
                           " holds no private key (\"-----BEGIN PRIVATE KEY-----\"), or an "
                           "encrypted one (give the key without a passphrase)");
  }
  if (X509_check_private_key(certs[0].get(), key.get()) != 1) {
    ERR_clear_error();
    return InvalidArgument(Label("tls.key", files.key) + " does not match the certificate in " +
                           Label("tls.cert", files.cert) +
                           " (replace the certificate and its key together)");
  }
  m->summary = "certificate " + NameText(X509_get_subject_name(certs[0].get())) + ", serial " +
               SerialText(certs[0].get());
  return Status::Ok();
}

Status WriteWholeFile(const std::string& path, const std::string& content, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Internal("cannot write " + QuoteValue(path) + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      ::close(fd);
      return Internal("cannot write " + QuoteValue(path) + ": " + std::strerror(error));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return Status::Ok();
}

}  // namespace

Result<TlsInputs> ReadTlsInputs(const TlsFiles& files) {
  TlsInputs in;
  ASSIGN_OR_RETURN(in.ca, ReadPemFile(files.ca, "tls.ca"));
  if (!files.cert.empty()) {
    ASSIGN_OR_RETURN(in.cert, ReadPemFile(files.cert, "tls.cert"));
    ASSIGN_OR_RETURN(in.key, ReadPemFile(files.key, "tls.key"));
  }
  if (!files.crl.empty()) {
    ASSIGN_OR_RETURN(in.crl, ReadPemFile(files.crl, "tls.crl"));
  }
  return in;
}

Result<TlsMaterial> CheckTlsMaterial(TlsInputs in, const TlsFiles& files) {
  TlsMaterial m;
  m.inputs = std::move(in);
  auto cas = ReadAll<X509>(m.inputs.ca, PEM_read_bio_X509);
  if (cas.empty()) {
    return InvalidArgument(Label("tls.ca", files.ca) +
                           " holds no certificate (\"-----BEGIN CERTIFICATE-----\")");
  }
  if (!files.cert.empty()) RETURN_IF_ERROR(CheckIdentity(files, &m));
  if (!files.crl.empty()) RETURN_IF_ERROR(CheckCrls(cas, files, &m));
  return m;
}

Result<std::unique_ptr<TlsSnapshotDir>> TlsSnapshotDir::Create() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/regen-tls.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Internal("cannot make a private directory for the TLS files (" + QuoteValue(pattern) +
                    "): " + std::strerror(errno) + " (set TMPDIR to a writable directory)");
  }
  return std::unique_ptr<TlsSnapshotDir>(new TlsSnapshotDir(pattern));
}

TlsSnapshotDir::~TlsSnapshotDir() {
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

Status TlsSnapshotDir::Publish(const TlsMaterial& m, bool with_identity) {
  const uint64_t n = generation_ + 1;
  const std::string name = "s" + std::to_string(n);
  const std::string snap = dir_ + "/" + name;
  std::error_code ignored;
  std::filesystem::remove_all(snap, ignored);  // a half-written one of a failed publish
  if (::mkdir(snap.c_str(), 0700) != 0 || ::mkdir((snap + "/crl").c_str(), 0700) != 0) {
    return Internal("cannot make " + QuoteValue(snap) + ": " + std::strerror(errno));
  }
  RETURN_IF_ERROR(WriteWholeFile(
      snap + "/ca.pem", "# regen tls snapshot " + std::to_string(n) + "\n" + m.inputs.ca, 0600));
  if (with_identity) {
    RETURN_IF_ERROR(WriteWholeFile(snap + "/cert.pem", m.inputs.cert, 0600));
    RETURN_IF_ERROR(WriteWholeFile(snap + "/key.pem", m.inputs.key, 0600));
    const struct timespec times[2] = {{static_cast<time_t>(n), 0}, {static_cast<time_t>(n), 0}};
    ::utimensat(AT_FDCWD, (snap + "/cert.pem").c_str(), times, 0);
    ::utimensat(AT_FDCWD, (snap + "/key.pem").c_str(), times, 0);
  }
  for (const auto& [file, pem] : m.crls) {
    RETURN_IF_ERROR(WriteWholeFile(snap + "/crl/" + file, pem, 0600));
  }
  const std::string link = dir_ + "/current.new";
  ::unlink(link.c_str());
  if (::symlink(name.c_str(), link.c_str()) != 0 ||
      ::rename(link.c_str(), current().c_str()) != 0) {
    return Internal("cannot point " + QuoteValue(current()) + " at " + QuoteValue(snap) + ": " +
                    std::strerror(errno));
  }
  generation_ = n;
  if (n > 2) std::filesystem::remove_all(dir_ + "/s" + std::to_string(n - 2), ignored);
  return Status::Ok();
}

}  // namespace regen
