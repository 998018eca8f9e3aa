// A private etcd cluster (Debian's etcd-server 3.4) of 1 or 3 members for integration and HA
// end-to-end tests: loopback ports chosen free, data dirs under its own temp dir, each member
// started and stopped by its own PID (also when the test fails: the destructor stops them and
// removes the dir; a test killed on its timeout takes them along: parent-death signal). Used from
// the test thread only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "etcd/etcd_options.h"
#include "tests/fakes/test_util.h"

namespace regen::testing {

struct EtcdClusterOptions {
  int members = 1;
  // Client URLs over TLS, client certificates required (etcd --client-cert-auth), with
  // certificates scripts/gen-certs.sh makes in certs_dir(): the members present controller.crt
  // (localhost, 127.0.0.1); clients present admin.crt (Options()) or host-a.crt / host-b.crt.
  bool tls = false;
};

class EtcdCluster {
 public:
  // The etcd binary from PATH, /usr/bin or /usr/sbin; "" when absent.
  static std::string FindEtcd();
  // Starts `members` members and waits until every one answers a linearizable read. Errors name
  // what is missing (FAILED_PRECONDITION: no etcd binary) or what failed, with the members' logs.
  static Result<std::unique_ptr<EtcdCluster>> Start(int members = 1);
  static Result<std::unique_ptr<EtcdCluster>> Start(const EtcdClusterOptions& options);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:PORT" of member i's client URL, and all of them.
  std::string endpoint(int i) const;
  std::vector<std::string> endpoints() const;
  // Client options with every endpoint, no auth; with tls: admin's certificate.
  etcd::EtcdOptions Options() const;
  std::string certs_dir() const { return dir_.File("certs"); }

  void Kill(int i);  // SIGKILL: a crash
  void Stop(int i);  // SIGTERM, waits for the exit
  // Starts member i again with its data (it rejoins the cluster); waits until it answers.
  Status Restart(int i);
  bool Running(int i);
  std::string Log(int i) const;
  std::string dir() const { return dir_.path(); }

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    size_t log_offset = 0;  // where this run's part of the log starts
    std::unique_ptr<ChildProcess> process;
  };
  EtcdCluster() : dir_("regen-etcd") {}
  Status MakeCertificates();
  Status Launch(int i, bool new_cluster);
  Status WaitReady(int i);
  std::string InitialCluster() const;

  TempDir dir_;  // destroyed after the members are stopped (members go in reverse order)
  std::string etcd_;
  std::string token_;
  bool tls_ = false;
  std::vector<Member> members_;
};

}  // namespace regen::testing

// In a test body: starts `members` members (a count, or EtcdClusterOptions) into `var` (a
// std::unique_ptr<EtcdCluster>), or fails the test. Without an etcd binary it fails under CI=1 (REGEN_REQUIRE_COMPONENT), never skips.
#define REGEN_START_ETCD(var, members)                                                  \
  if (::regen::testing::EtcdCluster::FindEtcd().empty()) {                              \
    REGEN_REQUIRE_COMPONENT("etcd", "install etcd-server (scripts/install-deps.sh)");   \
  }                                                                                     \
  auto var##_or = ::regen::testing::EtcdCluster::Start(members);                        \
  ASSERT_TRUE(var##_or.ok()) << var##_or.status().ToString();                           \
  std::unique_ptr<::regen::testing::EtcdCluster> var = std::move(*var##_or)
