// controller.yaml: defaults, every setting, the fencing rule between host_down_after and the
// lease, the HA settings (store: etcd), and a table of bad inputs.
#include "config/controller_config.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/unit/config/config_test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::BadCase;

const std::string kFile = "controller.yaml";

TEST(ControllerConfigTest, EmptyMapGivesDefaults) {
  Result<ControllerConfig> c = ParseControllerConfig("insecure: true\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ControllerConfig d;
  EXPECT_EQ(c->listen_address, d.listen_address);
  EXPECT_EQ(c->database, d.database);
  EXPECT_EQ(c->heartbeat_interval, d.heartbeat_interval);
  EXPECT_EQ(c->host_down_after, d.host_down_after);
  EXPECT_EQ(c->fencing_lease, d.fencing_lease);
  EXPECT_EQ(c->dns.server, "");
  EXPECT_EQ(c->dns.ttl, 30);
  EXPECT_EQ(c->manual_upgrade_policy, "block");
  EXPECT_FALSE(c->auto_rollback);
  EXPECT_EQ(c->max_failed_health_checks, 3);
  EXPECT_EQ(c->log_level, "info");
  EXPECT_EQ(c->metrics_address, "") << "metrics are off unless configured";
  EXPECT_TRUE(c->insecure);
  EXPECT_FALSE(c->tls.enabled());
  EXPECT_FALSE(c->auth.configured);
  EXPECT_EQ(c->store, "sqlite");
  EXPECT_EQ(c->advertise_address, c->listen_address) << "advertise_address defaults to listen";
  EXPECT_FALSE(c->allow_loopback_hosts) << "loopback hosts only where a lab asks for them";
  EXPECT_EQ(c->max_topology_bytes, kMaxTopologyBytes);
}

TEST(ControllerConfigTest, AllowLoopbackHosts) {
  Result<ControllerConfig> c =
      ParseControllerConfig("insecure: true\nallow_loopback_hosts: true\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->allow_loopback_hosts);
}

TEST(ControllerConfigTest, EtcdWithTheDefaultLeaseIsAccepted) {
  // In HA mode the agents keep their leases in etcd: a failover, however long, costs none, so
  // election_ttl no longer has to fit in the controller's fencing_lease.
  Result<ControllerConfig> c = ParseControllerConfig(
      "insecure: true\nstore: etcd\netcd: {endpoints: [\"127.0.0.1:2379\"], election_ttl: 10s}\n",
      kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->fencing_lease, milliseconds(3000));
  EXPECT_EQ(c->etcd.election_ttl, milliseconds(10000));
}

TEST(ControllerConfigTest, EtcdSettings) {
  const char* text = R"(insecure: true
listen_address: "0.0.0.0:7400"
advertise_address: "ctl-2.lab:7400"
store: etcd
fencing_lease: 7s
host_down_after: 8s
etcd:
  endpoints: ["127.0.0.1:2379", "etcd-2.lab:2379", "[::1]:2379"]
  prefix: /lab-1/
  tls: {ca: /etc/regen/etcd/ca.crt, cert: /etc/regen/etcd/ctl.crt, key: /etc/regen/etcd/ctl.key}
  user: regen
  password_file: /etc/regen/etcd/password
  election_ttl: 3s
)";
  Result<ControllerConfig> c = ParseControllerConfig(text, kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->store, "etcd");
  EXPECT_EQ(c->advertise_address, "ctl-2.lab:7400");
  EXPECT_EQ(c->etcd.endpoints,
            (std::vector<std::string>{"127.0.0.1:2379", "etcd-2.lab:2379", "[::1]:2379"}));
  EXPECT_EQ(c->etcd.prefix, "/lab-1/");
  EXPECT_EQ(c->etcd.tls.ca, "/etc/regen/etcd/ca.crt");
  EXPECT_EQ(c->etcd.tls.cert, "/etc/regen/etcd/ctl.crt");
  EXPECT_EQ(c->etcd.tls.key, "/etc/regen/etcd/ctl.key");
  EXPECT_EQ(c->etcd.user, "regen");
  EXPECT_EQ(c->etcd.password_file, "/etc/regen/etcd/password");
  EXPECT_EQ(c->etcd.election_ttl, milliseconds(3000));

  // The smallest HA file: defaults for the rest (prefix /regen/, election_ttl 2s, no TLS, no
  // user), advertise_address = listen_address; the lease covers 500ms + 1s + 2s.
  c = ParseControllerConfig(
      "insecure: true\nstore: etcd\nfencing_lease: 3500ms\nhost_down_after: 4100ms\n"
      "etcd: {endpoints: [\"127.0.0.1:2379\"]}\n",
      kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->etcd.prefix, "/regen/");
  EXPECT_EQ(c->etcd.election_ttl, milliseconds(2000));
  EXPECT_TRUE(c->etcd.tls.ca.empty());
  EXPECT_TRUE(c->etcd.user.empty());
  EXPECT_EQ(c->advertise_address, "127.0.0.1:7400");
}

TEST(ControllerConfigTest, LoadRefusesEtcdFilesThatCannotBeRead) {
  testing::ConfigTempDir dir;
  testing::WriteWholeFile(dir.File("ca.crt"), "x");
  testing::WriteWholeFile(
      dir.File("c.yaml"),
      "insecure: true\nstore: etcd\nfencing_lease: 4s\nhost_down_after: 5s\netcd:\n"
      "  endpoints: [\"127.0.0.1:2379\"]\n  tls: {ca: " +
          dir.File("ca.crt") + "}\n  user: regen\n  password_file: " + dir.File("pw") + "\n");
  Result<ControllerConfig> c = LoadControllerConfig(dir.File("c.yaml"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("etcd.password_file: cannot read \"" + dir.File("pw") + "\""),
            std::string::npos)
      << c.status().message();
  testing::WriteWholeFile(dir.File("pw"), "secret\n");
  c = LoadControllerConfig(dir.File("c.yaml"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::filesystem::remove(dir.File("ca.crt"));
  c = LoadControllerConfig(dir.File("c.yaml"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("etcd.tls.ca: cannot read"), std::string::npos)
      << c.status().message();
}

TEST(ControllerConfigTest, EverySetting) {
  const char* text = R"(listen_address: "[::]:7401"
database: ":memory:"
heartbeat_interval: 100ms
host_down_after: 1s
fencing_lease: 500ms
restart_allowance: 300ms
maintenance_max: 2h
dns:
  server: "[::1]:5353"
  zone: lab.example.
  tsig: {key_name: regen-key., algorithm: hmac-sha512, secret_file: /etc/regen/k}
  ttl: 5
upgrade: {manual_policy: allow, auto_rollback: true, max_failed: 7}
log_level: warn
metrics_address: "127.0.0.1:9464"
tls: {ca: /etc/regen/tls/ca.crt, cert: /etc/regen/tls/ctl.crt, key: /etc/regen/tls/ctl.key}
auth:
  certs:
  - {name: admin@regenctl, role: admin}
  - {name: readonly@regenctl, role: read-only}
  tokens:
  - {file: /etc/regen/tokens/ops, role: admin}
  hosts: [kvm-1, "rack1-*"]
)";
  Result<ControllerConfig> c = ParseControllerConfig(text, kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->listen_address, "[::]:7401");
  EXPECT_EQ(c->database, ":memory:");
  EXPECT_EQ(c->heartbeat_interval, milliseconds(100));
  EXPECT_EQ(c->host_down_after, milliseconds(1000));
  EXPECT_EQ(c->fencing_lease, milliseconds(500));
  EXPECT_EQ(c->restart_allowance, milliseconds(300));
  EXPECT_EQ(c->maintenance_max, std::chrono::hours(2));
  EXPECT_EQ(c->dns.server, "[::1]:5353");
  EXPECT_EQ(c->dns.zone, "lab.example.");
  EXPECT_EQ(c->dns.tsig_key_name, "regen-key.");
  EXPECT_EQ(c->dns.tsig_algorithm, "hmac-sha512");
  EXPECT_EQ(c->dns.tsig_secret_file, "/etc/regen/k");
  EXPECT_EQ(c->dns.ttl, 5);
  EXPECT_EQ(c->metrics_address, "127.0.0.1:9464");
  EXPECT_EQ(c->manual_upgrade_policy, "allow");
  EXPECT_TRUE(c->auto_rollback);
  EXPECT_EQ(c->max_failed_health_checks, 7);
  EXPECT_EQ(c->log_level, "warn");
  EXPECT_FALSE(c->insecure);
  EXPECT_EQ(c->tls.ca, "/etc/regen/tls/ca.crt");
  EXPECT_EQ(c->tls.cert, "/etc/regen/tls/ctl.crt");
  EXPECT_EQ(c->tls.key, "/etc/regen/tls/ctl.key");
  ASSERT_TRUE(c->auth.configured);
  ASSERT_EQ(c->auth.certs.size(), 2u);
  EXPECT_EQ(c->auth.certs[0].name, "admin@regenctl");
  EXPECT_EQ(c->auth.certs[0].role, "admin");
  EXPECT_EQ(c->auth.certs[1].name, "readonly@regenctl");
  EXPECT_EQ(c->auth.certs[1].role, "read-only");
  ASSERT_EQ(c->auth.tokens.size(), 1u);
  EXPECT_EQ(c->auth.tokens[0].file, "/etc/regen/tokens/ops");
  EXPECT_EQ(c->auth.tokens[0].role, "admin");
  EXPECT_EQ(c->auth.hosts, (std::vector<std::string>{"kvm-1", "rack1-*"}));
}

TEST(ControllerConfigTest, LoadRefusesTlsAndTokenFilesThatCannotBeRead) {
  testing::ConfigTempDir dir;
  for (const char* f : {"ca.crt", "ctl.crt", "ctl.key"}) testing::WriteWholeFile(dir.File(f), "x");
  std::string tls = "tls: {ca: " + dir.File("ca.crt") + ", cert: " + dir.File("ctl.crt") +
                    ", key: " + dir.File("ctl.key") + "}\n";
  testing::WriteWholeFile(dir.File("c.yaml"), tls + "auth:\n  tokens:\n  - {file: " +
                                                  dir.File("tok") + ", role: read-only}\n");
  Result<ControllerConfig> c = LoadControllerConfig(dir.File("c.yaml"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(
      c.status().message().rfind(dir.File("c.yaml") + ": auth.tokens[0].file: cannot read \"" +
                                     dir.File("tok") + "\": No such file or directory",
                                 0),
      0u)
      << c.status().message();
  testing::WriteWholeFile(dir.File("tok"), "secret\n");
  EXPECT_TRUE(LoadControllerConfig(dir.File("c.yaml")).ok());
  std::filesystem::remove(dir.File("ca.crt"));
  c = LoadControllerConfig(dir.File("c.yaml"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("tls.ca: cannot read \"" + dir.File("ca.crt") + "\""),
            std::string::npos)
      << c.status().message();
}

const BadCase kBadController[] = {
    {"neither tls nor insecure", "log_level: info\n", "1:1", "tls",
     "required field is missing: set tls: {ca, cert, key} or insecure: true"},
    {"empty map: neither tls nor insecure", "{}\n", "1:1", "tls", "or insecure: true"},
    {"insecure false without tls", "insecure: false\n", "1:1", "tls", "or insecure: true"},
    {"tls and insecure", "tls: {ca: /a, cert: /b, key: /c}\ninsecure: true\n", "2:11", "insecure",
     "true cannot go with a tls: block"},
    {"tls server_name is for agents", "tls: {ca: /a, cert: /b, key: /c, server_name: x}\n", "1:34",
     "tls.server_name", "unknown key \"server_name\""},
    {"auth role unknown", "insecure: true\nauth:\n  certs:\n  - {name: a, role: root}\n", "4:21",
     "auth.certs[0].role", "must be one of admin, read-only, got \"root\""},
    {"auth role missing", "insecure: true\nauth:\n  tokens:\n  - {file: /t}\n", "4:5",
     "auth.tokens[0].role", "required field is missing"},
    {"auth token relative file", "insecure: true\nauth:\n  tokens:\n  - {file: t, role: admin}\n",
     "4:12", "auth.tokens[0].file", "must be an absolute path"},
    {"auth cert listed twice",
     "insecure: true\nauth:\n  certs:\n  - {name: a, role: admin}\n  - {name: a, role: "
     "read-only}\n",
     "5:12", "auth.certs[1].name", "names a certificate listed before"},
    {"auth unknown key", "insecure: true\nauth: {users: []}\n", "2:8", "auth.users",
     "unknown key \"users\""},
    {"auth host pattern with a dot", "insecure: true\nauth:\n  hosts: [host-1, kvm.lab]\n", "3:19",
     "auth.hosts[1]",
     "must be a host name or a pattern with * (e.g. \"host-1\" or \"rack1-*\"), "
     "got \"kvm.lab\""},
    {"auth host empty", "insecure: true\nauth:\n  hosts: [\"\"]\n", "3:11", "auth.hosts[0]",
     "must be a host name or a pattern"},
    {"host_down_after equal to lease + heartbeat", "host_down_after: 3500ms\n", "1:18",
     "host_down_after",
     "must be longer than fencing_lease + heartbeat_interval (3s + 500ms = 3500ms), got "
     "\"3500ms\""},
    {"lease shorter than two heartbeats",
     "fencing_lease: 1s\nheartbeat_interval: 600ms\nrestart_allowance: 100ms\n", "1:16",
     "fencing_lease", "must be at least two heartbeat_intervals (2 x 600ms)"},
    {"lease shorter than a controller restart", "fencing_lease: 1s\nhost_down_after: 2s\n", "1:16",
     "fencing_lease",
     "must cover heartbeat_interval + restart_allowance (500ms + 1s): a controller restart would "
     "make every agent fence"},
    {"maintenance_max too short", "maintenance_max: 10s\n", "1:18", "maintenance_max",
     "got \"10s\""},
    {"host_down_after below lease", "fencing_lease: 2s\nhost_down_after: 1s\n", "2:18",
     "host_down_after", "(2s + 500ms = 2500ms), got \"1s\""},
    {"lease too long for the default host_down_after", "fencing_lease: 5s\n", "1:16",
     "fencing_lease", "reach host_down_after (4500ms, the default), got \"5s\""},
    {"heartbeat too long for the default host_down_after", "heartbeat_interval: 1500ms\n", "1:21",
     "heartbeat_interval", "(3s + 1500ms = 4500ms)"},
    {"plain number heartbeat", "heartbeat_interval: 500\n", "1:21", "heartbeat_interval",
     "got \"500\" (a plain number has no unit"},
    {"listen without port", "listen_address: \"7400\"\n", "1:17", "listen_address",
     "must be \"host:port\" with a port from 1 to 65535, got \"7400\""},
    {"empty listen", "listen_address: \"\"\n", "1:17", "listen_address", "got \"\""},
    {"metrics without port", "metrics_address: \"localhost\"\n", "1:18", "metrics_address",
     "got \"localhost\""},
    {"relative database", "database: regen.db\n", "1:11", "database",
     "must be an absolute path to the SQLite file, got \"regen.db\""},
    {"zone without final dot", "dns:\n  server: 127.0.0.1:53\n  zone: lab.example\n", "3:9",
     "dns.zone", "must be a lower-case DNS zone ending with '.', got \"lab.example\""},
    {"server set, zone missing", "dns:\n  server: 127.0.0.1:53\n", "2:3", "dns.zone",
     "required field is missing"},
    {"server is a host name", "dns: {server: \"ns.lab:53\", zone: lab.}\n", "1:15", "dns.server",
     "must be \"ip:port\" with an IP address and a port from 1 to 65535, got \"ns.lab:53\""},
    {"ttl zero", "dns: {ttl: 0}\n", "1:12", "dns.ttl",
     "must be an integer between 1 and 86400, got \"0\""},
    {"tsig algorithm md5",
     "dns:\n  server: 127.0.0.1:53\n  zone: lab.\n  tsig:\n    key_name: k\n"
     "    algorithm: hmac-md5\n    secret_file: /etc/k\n",
     "6:16", "dns.tsig.algorithm",
     "must be one of hmac-sha256, hmac-sha512, hmac-sha1, got \"hmac-md5\""},
    {"tsig without secret_file", "dns:\n  tsig:\n    key_name: k\n", "3:5", "dns.tsig.secret_file",
     "required field is missing"},
    {"tsig key name with a space", "dns:\n  tsig: {key_name: 'a b', secret_file: /k}\n", "2:20",
     "dns.tsig.key_name", "\"a b\""},
    {"dns unknown key", "dns:\n  servers: 127.0.0.1:53\n", "2:3", "dns.servers",
     "unknown key \"servers\" (did you mean \"server\"? allowed keys in dns: server, zone, tsig, "
     "ttl)"},
    {"manual policy maybe", "upgrade: {manual_policy: maybe}\n", "1:26", "upgrade.manual_policy",
     "must be one of block, allow, got \"maybe\""},
    {"max_failed too big", "upgrade:\n  max_failed: 101\n", "2:15", "upgrade.max_failed",
     "must be an integer between 1 and 100, got \"101\""},
    {"auto_rollback not bool", "upgrade:\n  auto_rollback: sometimes\n", "2:18",
     "upgrade.auto_rollback", "\"sometimes\""},
    {"upgrade as scalar", "upgrade: block\n", "1:10", "upgrade",
     "must be a map of \"key: value\" settings, got \"block\""},
    {"duplicate key in dns", "dns:\n  ttl: 5\n  ttl: 6\n", "3:3", "dns.ttl",
     "duplicate key \"ttl\""},
    {"log level", "log_level: INFO\n", "1:12", "log_level", "got \"INFO\""},
    {"top-level typo", "listen_adress: 1.2.3.4:5\n", "1:1", "listen_adress",
     "did you mean \"listen_address\"?"},
    {"store unknown", "store: mysql\n", "1:8", "store",
     "must be one of sqlite, etcd, got \"mysql\""},
    {"store etcd without etcd block", "insecure: true\nstore: etcd\n", "1:1", "etcd",
     "required field is missing"},
    {"etcd block without store etcd", "insecure: true\netcd: {endpoints: [\"a:1\"]}\n", "2:7",
     "etcd", "is used only with store: etcd, got an etcd block with store: sqlite"},
    {"etcd without endpoints", "store: etcd\netcd: {prefix: /r/}\n", "2:7", "etcd.endpoints",
     "required field is missing"},
    {"etcd empty endpoints", "store: etcd\netcd: {endpoints: []}\n", "2:19", "etcd.endpoints",
     "must list at least one etcd member's client address"},
    {"etcd endpoint without port", "store: etcd\netcd:\n  endpoints: [\"127.0.0.1\"]\n", "3:15",
     "etcd.endpoints[0]", "must be \"host:port\" with a port from 1 to 65535, got \"127.0.0.1\""},
    {"etcd endpoints as text", "store: etcd\netcd: {endpoints: \"a:1,b:2\"}\n", "2:19",
     "etcd.endpoints", "must be a list"},
    {"etcd prefix without slashes", "store: etcd\netcd: {endpoints: [\"a:1\"], prefix: regen}\n",
     "2:36", "etcd.prefix", "must start and end with '/'"},
    {"etcd election_ttl not whole seconds",
     "store: etcd\netcd: {endpoints: [\"a:1\"], election_ttl: 1500ms}\n", "2:42",
     "etcd.election_ttl", "must be whole seconds"},
    {"etcd election_ttl under 1s",
     "store: etcd\netcd: {endpoints: [\"a:1\"], election_ttl: 500ms}\n", "2:42",
     "etcd.election_ttl", "got \"500ms\""},
    {"etcd user without password_file", "store: etcd\netcd: {endpoints: [\"a:1\"], user: regen}\n",
     "2:7", "etcd.password_file", "etcd.user and etcd.password_file go together"},
    {"etcd client cert without key",
     "store: etcd\netcd:\n  endpoints: [\"a:1\"]\n  tls: {ca: /ca, cert: /c}\n", "4:8",
     "etcd.tls.key", "must be given with cert"},
    {"etcd tls without ca",
     "store: etcd\netcd:\n  endpoints: [\"a:1\"]\n  tls: {cert: /c, key: /k}\n", "4:8",
     "etcd.tls.ca", "required field is missing"},
    {"etcd unknown key", "store: etcd\netcd: {endpoints: [\"a:1\"], ttl: 2s}\n", "2:28", "etcd.ttl",
     "unknown key \"ttl\""},
    {"etcd on a wildcard listen address without advertise_address",
     "listen_address: \"0.0.0.0:7400\"\nstore: etcd\netcd: {endpoints: [\"a:1\"]}\n", "1:17",
     "listen_address", "set advertise_address"},
    {"advertise_address without port", "advertise_address: ctl\n", "1:20", "advertise_address",
     "got \"ctl\""},
    {"allow_loopback_hosts not a boolean", "allow_loopback_hosts: lab\n", "1:23",
     "allow_loopback_hosts", "got \"lab\""},
};

class ControllerConfigBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ControllerConfigBadTest, IsRefusedWithFieldPositionAndValue) {
  const BadCase& c = GetParam();
  testing::ExpectBad(ParseControllerConfig(c.yaml, kFile).status(), kFile, c);
}

INSTANTIATE_TEST_SUITE_P(Table, ControllerConfigBadTest, ::testing::ValuesIn(kBadController));

TEST(ControllerConfigTest, LoadNamesThePathAndTheSystemError) {
  testing::ConfigTempDir dir;
  Result<ControllerConfig> c = LoadControllerConfig(dir.File("nope.yaml"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "cannot read " + dir.File("nope.yaml") + ": No such file or directory");
}

}  // namespace
}  // namespace regen
