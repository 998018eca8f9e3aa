// A private knotd on loopback for DNS integration tests and benchmarks: config, zone file and a
// TSIG key (keymgr) generated in its own temp dir, a free port, knotd started and stopped by its
// own PID (also when the test fails: the destructor stops it). Used from the test thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "dns/tsig_key.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {

struct KnotOptions {
  std::string zone = "lab.example.";
  std::string key_name = "regen-key.";
  std::string algorithm = "hmac-sha256";
};

class KnotServer {
 public:
  // Errors name what is missing (knotd, keymgr, kdig) or what failed, with knotd's log.
  static Result<std::unique_ptr<KnotServer>> Start(KnotOptions options = {});
  ~KnotServer();
  KnotServer(const KnotServer&) = delete;
  KnotServer& operator=(const KnotServer&) = delete;

  // Stops knotd (SIGTERM to its PID, waits for it to exit). The zone's journal stays.
  void Stop();
  // Starts knotd again on the same port with the same state; waits until it answers.
  Status Restart();
  bool Running();

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1"; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& zone() const { return options_.zone; }
  // The keymgr output (knot format), also included by knot.conf.
  std::string key_file() const { return dir_.File("tsig.key"); }
  const dns::TsigKey& key() const { return key_; }
  std::string dir() const { return dir_.path(); }
  std::string Log() const;

  // `kdig @127.0.0.1 -p PORT NAME A +short`: the sorted addresses (empty for NXDOMAIN).
  Result<std::vector<std::string>> Dig(const std::string& name) const;

 private:
  explicit KnotServer(KnotOptions options);
  Status Launch();
  Status WaitReady();

  KnotOptions options_;
  TempDir dir_;  // destroyed after knotd is stopped (members go in reverse order)
  std::string knotd_;
  std::string kdig_;
  uint16_t port_ = 0;
  dns::TsigKey key_;
  std::unique_ptr<ChildProcess> process_;
};

// The full path of `program` from PATH, /usr/sbin and /sbin; "" when not found.
std::string FindProgram(const std::string& program);

// A loopback port free for both UDP and TCP right now.
Result<uint16_t> FreeLoopbackPort();

}  // namespace regen::testing
