// The TLS files (CA, certificate, key, CRLs) read and checked with OpenSSL before gRPC is given
// them, and the private copies gRPC reads (a directory with a `current` link that is swapped in
// one step). Used by common/grpc_tls.cc and common/tls_reloader.cc; any thread, but one
// TlsSnapshotDir is not for concurrent use.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace regen {

struct TlsFiles;

// The files' contents as read (crl "" when there is none; cert and key "" for a client without a
// certificate).
struct TlsInputs {
  std::string ca, cert, key, crl;
  bool operator==(const TlsInputs&) const = default;
};

// Checked contents, ready for gRPC.
struct TlsMaterial {
  TlsInputs inputs;
  // Each CRL of tls.crl under the name OpenSSL's hashed-directory lookup looks for
  // ("1a2b3c4d.r0": the issuer name's hash, then a counter), with its PEM text.
  std::vector<std::pair<std::string, std::string>> crls;
  std::string summary;  // for the log: "certificate CN=..., serial ...; 2 revoked (tls.crl)"
};

// Reads every file `files` names (cert and key only when cert is set, crl when set). Errors
// name the field and the path: "tls.crl: cannot read "/etc/regen/tls/crl.pem": No such file...".
Result<TlsInputs> ReadTlsInputs(const TlsFiles& files);

// Parses and checks `in`: the CA file holds certificates, the key is a private key that matches
// the first certificate of the cert file, every CRL parses, is signed by a certificate of the CA
// file and has not passed its nextUpdate. Errors name the field and the path of `files`, e.g.
// "tls.key: "/etc/regen/tls/controller.key" does not match the certificate in tls.cert ...".
Result<TlsMaterial> CheckTlsMaterial(TlsInputs in, const TlsFiles& files);

// A private directory (mode 0700, under $TMPDIR or /tmp) holding the copies gRPC reads:
// DIR/current -> sN/ with ca.pem, cert.pem, key.pem and crl/ (a hashed CRL directory).
class TlsSnapshotDir {
 public:
  static Result<std::unique_ptr<TlsSnapshotDir>> Create();
  ~TlsSnapshotDir();  // removes the directory
  TlsSnapshotDir(const TlsSnapshotDir&) = delete;
  TlsSnapshotDir& operator=(const TlsSnapshotDir&) = delete;

  // Writes snapshot N+1 (identity files only `with_identity`) and points `current` at it; the
  // snapshot before last is removed. ca.pem starts with a comment naming the snapshot, so gRPC
  // sees a changed root (and rebuilds its TLS context, re-reading the CRLs) on every publish;
  // key.pem and cert.pem get the mtime N+1 s so gRPC's file watcher notices a pair that
  // straddles two snapshots and reads it again.
  Status Publish(const TlsMaterial& material, bool with_identity);

  std::string current() const { return dir_ + "/current"; }
  const std::string& dir() const { return dir_; }
  uint64_t generation() const { return generation_; }

 private:
  explicit TlsSnapshotDir(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  uint64_t generation_ = 0;
};

}  // namespace regen
