// `regen-controller etcd init | add-host | remove-host` (controller/etcd_setup.h), the real binary
// against a real etcd 3.4 (etcd_harness.h): an agent host's user may keep its lease key
// <prefix>hosts/HOST/alive (grant, put with the lease, keep alive, read, revoke) and nothing else;
// the controllers' user may read, write and watch under <prefix>; every command may run twice; a
// bad name changes nothing; remove-host takes the rights away. With passwords on plaintext, and
// with client certificates (CN = user) over TLS with --client-cert-auth. Also pins what etcd 3.4
// checks for leases (etcd_setup.h's header relies on it).
#include <gtest/gtest.h>

#include <algorithm>

#include "common/subprocess.h"
#include "common/thread_annotations.h"
#include "etcd/etcd_admin.h"
#include "etcd/etcd_client.h"
#include "etcd/etcd_keepalive.h"
#include "etcd/etcd_watch.h"
#include "tests/integration/etcd/etcd_harness.h"

namespace regen {
namespace {

using etcd::EtcdClient;
using etcd::EtcdOptions;
using std::chrono::milliseconds;
using testing::EtcdCluster;
using testing::WaitFor;
using testing::WriteFileOrDie;

struct CommandRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// A controller.yaml (store: etcd) and the password files, in a temp dir.
class EtcdFixture {
 public:
  // `tls`: the controllers use the cluster's TLS and controller.crt (CN localhost), no password.
  EtcdFixture(const EtcdCluster& cluster, bool tls) : dir_("regen-etcd-setup"), cluster_(cluster) {
    WriteFileOrDie(File("root.pw"), "root-secret\n");
    WriteFileOrDie(File("ctl.pw"), "ctl-secret\n");
    WriteFileOrDie(File("host-a.pw"), "a-secret\n");
    std::string endpoints;
    for (const std::string& e : cluster.endpoints()) {
      endpoints += (endpoints.empty() ? "\"" : ", \"") + e + "\"";
    }
    std::string etcd = "  endpoints: [" + endpoints + "]\n  election_ttl: 1s\n";
    if (tls) {
      const std::string c = cluster.certs_dir();
      etcd += "  tls: {ca: " + c + "/ca.crt, cert: " + c + "/controller.crt, key: " + c +
              "/controller.key}\n";
    } else {
      etcd += "  user: regen-ctl\n  password_file: " + File("ctl.pw") + "\n";
    }
    WriteFileOrDie(Config(), "listen_address: \"127.0.0.1:1\"\nstore: etcd\netcd:\n" + etcd +
                                 "heartbeat_interval: 200ms\nrestart_allowance: 800ms\n"
                                 "fencing_lease: 2s\nhost_down_after: 2500ms\ninsecure: true\n");
  }
  std::string File(const std::string& name) const { return dir_.File(name); }
  std::string Config() const { return dir_.File("controller.yaml"); }

  // regen-controller --config controller.yaml ARGS...
  CommandRun Controller(std::vector<std::string> args, bool with_config = true) const {
    std::vector<std::string> argv = {testing::BinaryDir() + "/controller/regen-controller"};
    if (with_config) argv.insert(argv.end(), {"--config", Config()});
    argv.insert(argv.end(), args.begin(), args.end());
    RealCommandRunner runner;
    auto out = runner.Run(argv, milliseconds(60000));
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    if (!out.ok()) return {};
    return {out->exit_code, out->stdout_text, out->stderr_text};
  }
  CommandRun Init() const {
    return Controller({"etcd", "init", "--root-password-file", File("root.pw")});
  }
  CommandRun AddHost(const std::string& host, bool password) const {
    std::vector<std::string> args = {"etcd", "add-host", host, "--root-password-file",
                                     File("root.pw")};
    if (password) args.insert(args.end(), {"--password-file", File("host-a.pw")});
    return Controller(args);
  }
  CommandRun RemoveHost(const std::string& host) const {
    return Controller({"etcd", "remove-host", host, "--root-password-file", File("root.pw")});
  }

  // A client of `user` (empty: none) with the cluster's options.
  std::shared_ptr<EtcdClient> Connect(const std::string& user, const std::string& password) const {
    EtcdOptions options = cluster_.Options();
    options.user = user;
    options.password = password;
    auto client = EtcdClient::Connect(options);
    EXPECT_TRUE(client.ok()) << user << ": " << client.status().ToString();
    return client.ok() ? *client : nullptr;
  }

 private:
  testing::TempDir dir_;
  const EtcdCluster& cluster_;
};

std::string Describe(const CommandRun& r) {
  return "exit " + std::to_string(r.exit_code) + "\nstdout:\n" + r.out + "stderr:\n" + r.err;
}

void ExpectDenied(const Status& s, const std::string& what) {
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << what << ": " << s.ToString();
}

// Events a watch delivered, read from the test thread.
struct Keys {
  Mutex mu;
  std::vector<std::string> seen GUARDED_BY(mu);
  void Add(const etcd::WatchEvent& e) {
    MutexLock lock(mu);
    seen.push_back(e.kv.key);
  }
  bool Has(const std::string& key) {
    MutexLock lock(mu);
    return std::find(seen.begin(), seen.end(), key) != seen.end();
  }
};

// What an agent does with its lease: grant, put its alive key with it, keep it alive (several
// renewals), read it. ADD_FAILUREs name the step.
int64_t KeepAliveKey(const std::shared_ptr<EtcdClient>& host, const std::string& key) {
  auto lease = host->GrantLease(2);
  EXPECT_TRUE(lease.ok()) << "LeaseGrant: " << lease.status().ToString();
  if (!lease.ok()) return 0;
  auto put = host->Put(key, "alive", lease->id);
  EXPECT_TRUE(put.ok()) << "Put with lease: " << put.status().ToString();
  etcd::EtcdKeepAlive keepalive(host, lease->id, lease->ttl_seconds, [](Status) {});
  EXPECT_TRUE(WaitFor([&] { return keepalive.renewals() >= 3; }, milliseconds(10000)))
      << "KeepAlive renewals: " << keepalive.renewals();
  EXPECT_FALSE(keepalive.lost());
  keepalive.Stop();
  auto read = host->Get(key);
  EXPECT_TRUE(read.ok()) << "Get own key: " << read.status().ToString();
  if (read.ok()) {
    EXPECT_EQ(read->kvs.size(), 1u);
    if (!read->kvs.empty()) {
      EXPECT_EQ(read->kvs[0].lease, lease->id);
    }
  }
  return lease->id;
}

// host-a may not touch another host's key nor the controllers' state.
void ExpectConfinedToItsPrefix(EtcdClient& host) {
  ExpectDenied(host.Put("/regen/hosts/host-b/alive", "x").status(), "put host-b's key");
  ExpectDenied(host.Get("/regen/hosts/host-b/alive").status(), "get host-b's key");
  ExpectDenied(host.Put("/regen/state/services/web", "x").status(), "put controller state");
  ExpectDenied(host.Get("/regen/state/services/web").status(), "get controller state");
  ExpectDenied(host.GetPrefix("/regen/").status(), "get the whole prefix");
  ExpectDenied(host.GetPrefix("/regen/hosts/").status(), "get every host's keys");
  ExpectDenied(host.Delete("/regen/election").status(), "delete the election");
  ExpectDenied(host.Put("/regen/hosts/host-a", "x").status(), "a key next to its prefix");
}

// The controllers' user: read, write and watch under the prefix (the agents' keys included).
void ExpectControllerRights(const std::shared_ptr<EtcdClient>& controller,
                            const std::shared_ptr<EtcdClient>& host) {
  ASSERT_TRUE(controller);
  EXPECT_TRUE(controller->Put("/regen/state/services/web", "spec").ok());
  auto read = controller->GetPrefix("/regen/");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_GE(read->kvs.size(), 1u);
  ExpectDenied(controller->Put("/elsewhere", "x").status(), "controller outside its prefix");
  Keys keys;
  auto watch = etcd::EtcdWatch::Start(
      controller, "/regen/hosts/", 0, [&](const etcd::WatchEvent& e) { keys.Add(e); },
      [](Status) {}, milliseconds(5000));
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  auto lease = host->GrantLease(5);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_TRUE(host->Put("/regen/hosts/host-a/alive", "again", lease->id).ok());
  EXPECT_TRUE(WaitFor([&] { return keys.Has("/regen/hosts/host-a/alive"); }, milliseconds(5000)));
  // The agent's revoke (it fences) deletes the key: the controller sees it go.
  ASSERT_TRUE(host->RevokeLease(lease->id).ok());
  EXPECT_TRUE(controller->Get("/regen/hosts/host-a/alive")->kvs.empty());
  (*watch)->Stop();
}

TEST(EtcdSetupTest, PasswordsHostConfinedToItsKeyControllerToThePrefix) {
  REGEN_START_ETCD(cluster, 1);
  EtcdFixture setup(*cluster, false);
  auto open = setup.Connect("", "");
  ASSERT_TRUE(open->Put("/regen/state/services/web", "before auth").ok());

  CommandRun init = setup.Init();
  ASSERT_EQ(init.exit_code, 0) << Describe(init);
  EXPECT_NE(init.out.find("user root: created"), std::string::npos) << init.out;
  EXPECT_NE(init.out.find("user regen-ctl: created"), std::string::npos) << init.out;
  EXPECT_NE(init.out.find("auth: enabled"), std::string::npos) << init.out;
  EXPECT_FALSE(open->Get("/regen/state/services/web").ok());  // auth is on: no user, no read

  // Connected before add-host: its token outlives the change of users.
  auto controller = setup.Connect("regen-ctl", "ctl-secret");
  ASSERT_TRUE(controller);
  ASSERT_TRUE(controller->Put("/regen/state/x", "1").ok());
  CommandRun add = setup.AddHost("host-a", true);
  ASSERT_EQ(add.exit_code, 0) << Describe(add);
  EXPECT_NE(add.out.find("granted read and write on /regen/hosts/host-a/*"), std::string::npos)
      << add.out;
  auto put = controller->Put("/regen/state/x", "2");
  EXPECT_TRUE(put.ok()) << "controller after add-host: " << put.status().ToString();

  auto host = setup.Connect("host-a", "a-secret");
  ASSERT_TRUE(host);
  int64_t lease = KeepAliveKey(host, "/regen/hosts/host-a/alive");
  ASSERT_NE(lease, 0);
  ExpectConfinedToItsPrefix(*host);
  // Revoking its own lease (the agent fences): the key goes.
  ASSERT_TRUE(host->RevokeLease(lease).ok());
  auto gone = host->Get("/regen/hosts/host-a/alive");
  ASSERT_TRUE(gone.ok()) << gone.status().ToString();
  EXPECT_TRUE(gone->kvs.empty());
  ExpectControllerRights(controller, host);
}

TEST(EtcdSetupTest, ClientCertificatesOverTlsWithClientCertAuth) {
  testing::EtcdClusterOptions options;
  options.tls = true;
  REGEN_START_ETCD(cluster, options);
  EtcdFixture setup(*cluster, true);
  CommandRun init = setup.Init();
  ASSERT_EQ(init.exit_code, 0) << Describe(init);
  // controller.crt's CN (gen-certs.sh localhost ...): a user without a password.
  EXPECT_NE(init.out.find("user localhost: created (no password"), std::string::npos) << init.out;
  CommandRun add = setup.AddHost("host-a", false);
  ASSERT_EQ(add.exit_code, 0) << Describe(add);
  EXPECT_NE(add.out.find("user host-a: created (no password"), std::string::npos) << add.out;

  EtcdOptions a = cluster->Options();
  a.tls.cert = cluster->certs_dir() + "/host-a.crt";
  a.tls.key = cluster->certs_dir() + "/host-a.key";
  auto host = EtcdClient::Connect(a);  // no user: etcd takes the certificate's CN, host-a
  ASSERT_TRUE(host.ok()) << host.status().ToString();
  int64_t lease = KeepAliveKey(*host, "/regen/hosts/host-a/alive");
  ASSERT_NE(lease, 0);
  ExpectConfinedToItsPrefix(**host);
  ASSERT_TRUE((*host)->RevokeLease(lease).ok());
  // A certificate-only user has no password to guess.
  a.user = "host-a";
  a.password = "";
  EXPECT_FALSE(EtcdClient::Connect(a).ok());
  // admin.crt's CN (admin@regenctl) is no etcd user.
  auto stranger = EtcdClient::Connect(cluster->Options());
  ASSERT_TRUE(stranger.ok());
  ExpectDenied((*stranger)->Get("/regen/hosts/host-a/alive").status(), "a CN that is no user");

  EtcdOptions c = cluster->Options();
  c.tls.cert = cluster->certs_dir() + "/controller.crt";
  c.tls.key = cluster->certs_dir() + "/controller.key";
  auto controller = EtcdClient::Connect(c);
  ASSERT_TRUE(controller.ok());
  ExpectControllerRights(*controller, *host);
}

TEST(EtcdSetupTest, CommandsRunTwiceRefuseBadNamesAndSayWhatFailed) {
  REGEN_START_ETCD(cluster, 1);
  EtcdFixture setup(*cluster, false);
  CommandRun early = setup.AddHost("host-a", true);
  EXPECT_EQ(early.exit_code, 1) << Describe(early);
  EXPECT_NE(early.err.find("etcd init` first"), std::string::npos) << early.err;

  ASSERT_EQ(setup.Init().exit_code, 0);
  CommandRun again = setup.Init();
  ASSERT_EQ(again.exit_code, 0) << Describe(again);
  EXPECT_NE(again.out.find("auth is on, authenticated as root"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("user regen-ctl: exists, its password is the one given"),
            std::string::npos)
      << again.out;
  EXPECT_NE(again.out.find("auth: on (as before)"), std::string::npos) << again.out;
  EXPECT_EQ(again.out.find("created"), std::string::npos) << again.out;
  ASSERT_EQ(setup.AddHost("host-a", true).exit_code, 0);
  CommandRun add_again = setup.AddHost("host-a", true);
  ASSERT_EQ(add_again.exit_code, 0) << Describe(add_again);
  EXPECT_NE(add_again.out.find("(as before)"), std::string::npos) << add_again.out;
  EXPECT_EQ(add_again.out.find("created"), std::string::npos) << add_again.out;

  auto root = setup.Connect("root", "root-secret");
  ASSERT_TRUE(root);
  for (std::string bad : {"Host_A", "host-a/..", "", "root", "regen-ctl"}) {
    CommandRun refused = setup.AddHost(bad, false);
    EXPECT_EQ(refused.exit_code, 2) << bad << ": " << Describe(refused);
    EXPECT_NE(refused.err.find("HOST"), std::string::npos) << refused.err;
    if (bad != "root" && bad != "regen-ctl" && !bad.empty()) {
      EXPECT_EQ(etcd::UserRoles(*root, bad).status().code(), Code::kNotFound) << bad;
      EXPECT_EQ(etcd::RolePermissions(*root, "regen-host-" + bad).status().code(), Code::kNotFound);
    }
  }
  auto ctl_roles = etcd::UserRoles(*root, "regen-ctl");
  ASSERT_TRUE(ctl_roles.ok());
  EXPECT_EQ(*ctl_roles, std::vector<std::string>{"regen-controller"});

  WriteFileOrDie(setup.File("root.pw"), "wrong\n");
  CommandRun wrong = setup.AddHost("host-b", false);
  EXPECT_EQ(wrong.exit_code, 1) << Describe(wrong);
  EXPECT_NE(wrong.err.find("refused user root"), std::string::npos) << wrong.err;
  CommandRun usage = setup.Controller({"etcd", "add-host"});
  EXPECT_EQ(usage.exit_code, 2) << Describe(usage);
  CommandRun help = setup.Controller({"etcd", "--help"}, false);
  EXPECT_EQ(help.exit_code, 0) << Describe(help);
  EXPECT_NE(help.out.find("add-host"), std::string::npos) << help.out;

  cluster->Stop(0);
  WriteFileOrDie(setup.File("root.pw"), "root-secret\n");
  CommandRun down = setup.AddHost("host-b", false);
  EXPECT_EQ(down.exit_code, 1) << Describe(down);
  EXPECT_NE(down.err.find("cannot reach etcd at 127.0.0.1:"), std::string::npos) << down.err;
}

TEST(EtcdSetupTest, RemoveHostTakesItsRightsAway) {
  REGEN_START_ETCD(cluster, 1);
  EtcdFixture setup(*cluster, false);
  ASSERT_EQ(setup.Init().exit_code, 0);
  ASSERT_EQ(setup.AddHost("host-a", true).exit_code, 0);
  auto host = setup.Connect("host-a", "a-secret");
  ASSERT_TRUE(host);
  ASSERT_TRUE(host->Put("/regen/hosts/host-a/alive", "1").ok());

  CommandRun removed = setup.RemoveHost("host-a");
  ASSERT_EQ(removed.exit_code, 0) << Describe(removed);
  EXPECT_NE(removed.out.find("user host-a: deleted"), std::string::npos) << removed.out;
  EXPECT_NE(removed.out.find("role regen-host-host-a: deleted"), std::string::npos);
  EXPECT_NE(removed.out.find("1 key(s) under /regen/hosts/host-a/ remain"), std::string::npos)
      << removed.out;
  EXPECT_FALSE(host->Put("/regen/hosts/host-a/alive", "2").ok());  // its token is no use now
  EXPECT_FALSE(host->Get("/regen/hosts/host-a/alive").ok());
  EtcdOptions a = setup.Connect("", "")->options();
  a.user = "host-a";
  a.password = "a-secret";
  EXPECT_FALSE(EtcdClient::Connect(a).ok());

  CommandRun again = setup.RemoveHost("host-a");
  ASSERT_EQ(again.exit_code, 0) << Describe(again);
  EXPECT_NE(again.out.find("user host-a: not there"), std::string::npos) << again.out;
  // Added back, it has its rights again.
  ASSERT_EQ(setup.AddHost("host-a", true).exit_code, 0);
  EXPECT_TRUE(setup.Connect("host-a", "a-secret")->Put("/regen/hosts/host-a/alive", "3").ok());
}

// The controllers' watch of the hosts' keys outlives a user change and a member restart: etcd
// refuses to re-create it with the token the restart lost ("invalid auth token"; before the fix
// in etcd_watch.cc it retried with that token forever); it authenticates again and goes on.
TEST(EtcdSetupTest, ControllerWatchComesBackAfterAMemberRestart) {
  REGEN_START_ETCD(cluster, 1);
  EtcdFixture setup(*cluster, false);
  ASSERT_EQ(setup.Init().exit_code, 0);
  auto controller = setup.Connect("regen-ctl", "ctl-secret");
  ASSERT_TRUE(controller);
  Keys keys;
  auto watch = etcd::EtcdWatch::Start(
      controller, "/regen/hosts/", 0, [&](const etcd::WatchEvent& e) { keys.Add(e); },
      [](Status) {}, milliseconds(5000));
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  ASSERT_EQ(setup.AddHost("host-a", true).exit_code, 0);
  ASSERT_TRUE(cluster->Restart(0).ok());
  auto host = setup.Connect("host-a", "a-secret");
  ASSERT_TRUE(host);
  auto put = host->Put("/regen/hosts/host-a/alive", "1", 0, milliseconds(10000));
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_TRUE(WaitFor([&] { return keys.Has("/regen/hosts/host-a/alive"); }, milliseconds(15000)))
      << "the watch did not come back (reconnects: " << (*watch)->reconnects() << ")";
  auto write = controller->Put("/regen/state/x", "1", 0, milliseconds(10000));
  EXPECT_TRUE(write.ok()) << write.status().ToString();
  (*watch)->Stop();
}

// What etcd 3.4 checks for leases (etcd_setup.h's header): LeaseGrant and KeepAlive need no
// permission at all; a Put or a Revoke needs WRITE on every key attached to the lease.
TEST(EtcdSetupTest, WhatEtcdChecksForLeases) {
  REGEN_START_ETCD(cluster, 1);
  EtcdFixture setup(*cluster, false);
  ASSERT_EQ(setup.Init().exit_code, 0);
  ASSERT_EQ(setup.AddHost("host-a", true).exit_code, 0);
  auto anonymous = setup.Connect("", "");
  auto lease = anonymous->GrantLease(5);
  EXPECT_TRUE(lease.ok()) << "anonymous LeaseGrant: " << lease.status().ToString();
  auto renewed = anonymous->KeepAliveOnce(lease.ok() ? lease->id : 1);
  EXPECT_TRUE(renewed.ok() && *renewed > 0)
      << "anonymous KeepAlive: " << renewed.status().ToString();
  EXPECT_FALSE(anonymous->Put("/regen/hosts/host-a/alive", "x").ok());

  auto controller = setup.Connect("regen-ctl", "ctl-secret");
  auto host = setup.Connect("host-a", "a-secret");
  ASSERT_TRUE(controller && host);
  auto other = controller->GrantLease(5);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(controller->Put("/regen/hosts/host-b/alive", "b", other->id).ok());
  ExpectDenied(host->Put("/regen/hosts/host-a/alive", "a", other->id).status(),
               "put with a lease that holds another host's key");
  ExpectDenied(host->RevokeLease(other->id), "revoke a lease that holds another host's key");
  auto kept = host->KeepAliveOnce(other->id);  // renewing it is not checked
  EXPECT_TRUE(kept.ok() && *kept > 0) << kept.status().ToString();
  EXPECT_EQ(controller->Get("/regen/hosts/host-b/alive")->kvs.size(), 1u);
}

}  // namespace
}  // namespace regen
