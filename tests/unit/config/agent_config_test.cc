// agent.yaml: defaults, every setting, and a table of bad inputs whose errors must name the field
// path, its line:column and the offending value.
#include "config/agent_config.h"

#include <gtest/gtest.h>

#include "tests/unit/config/config_test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::BadCase;

const std::string kFile = "agent.yaml";

TEST(AgentConfigTest, MinimalFileGivesDefaults) {
  Result<AgentConfig> c = ParseAgentConfig("host_name: kvm-1\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  AgentConfig d;
  EXPECT_EQ(c->host_name, "kvm-1");
  EXPECT_EQ(c->address, d.address);
  EXPECT_EQ(c->controller_address, "");
  EXPECT_EQ(c->libvirt_uri, d.libvirt_uri);
  EXPECT_EQ(c->poll_interval, d.poll_interval);
  EXPECT_EQ(c->libvirt_events, d.libvirt_events);
  EXPECT_EQ(c->ovs_bridge, d.ovs_bridge);
  EXPECT_EQ(c->ovs_db_socket, d.ovs_db_socket);
  EXPECT_FALSE(c->capacity.has_value());
  EXPECT_EQ(c->fencing_lease, d.fencing_lease);
  EXPECT_EQ(d.fencing_lease, milliseconds(3000)) << "the controller's default lease";
  EXPECT_EQ(c->fencing_backstop_after, milliseconds(0)) << "0: min(1s, fencing_lease / 2)";
  EXPECT_EQ(c->watchdog_device, "");
  EXPECT_EQ(c->watchdog_timeout, milliseconds(0));
  EXPECT_EQ(c->state_dir, d.state_dir);
  EXPECT_EQ(c->control_socket, d.control_socket);
  EXPECT_EQ(c->desired_file, "");
  EXPECT_EQ(c->domain_type, d.domain_type);
  EXPECT_EQ(c->parallel_starts, 4);
  EXPECT_FALSE(c->fault_injection);
  EXPECT_EQ(c->log_level, d.log_level);
}

TEST(AgentConfigTest, EverySetting) {
  const char* text = R"(host_name: lab-1
address: 10.0.0.7
controller_address: ctl.lab:7400
libvirt_uri: "qemu:///embed?root=/tmp/x"
poll_interval: 250ms
libvirt_events: false
ovs: {bridge: br_lab-1, db_socket: "tcp:127.0.0.1:6640"}
capacity: {vcpus: 4, memory_mib: 8192, disk_gib: 50, bandwidth_mbps: 1000}
fencing_lease: 1m
fencing_backstop_after: 400ms
watchdog_device: /dev/watchdog0
watchdog_timeout: 20s
state_dir: /srv/regen
control_socket: /run/regen/a.sock
desired_file: /srv/regen/desired.yaml
domain_type: qemu
parallel_starts: 2
fault_injection: true
log_level: trace
tls: {ca: /etc/regen/tls/ca.crt, cert: /etc/regen/tls/lab-1.crt, key: /etc/regen/tls/lab-1.key,
      server_name: regen-ctl.lab}
)";
  Result<AgentConfig> c = ParseAgentConfig(text, kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->address, "10.0.0.7");
  EXPECT_EQ(c->controller_address, "ctl.lab:7400");
  EXPECT_EQ(c->libvirt_uri, "qemu:///embed?root=/tmp/x");
  EXPECT_EQ(c->poll_interval, milliseconds(250));
  EXPECT_FALSE(c->libvirt_events);
  EXPECT_EQ(c->ovs_bridge, "br_lab-1");
  EXPECT_EQ(c->ovs_db_socket, "tcp:127.0.0.1:6640");
  ASSERT_TRUE(c->capacity.has_value());
  EXPECT_EQ(*c->capacity, (Resources{4, 8192, 50, 1000}));
  EXPECT_EQ(c->fencing_lease, milliseconds(60000));
  EXPECT_EQ(c->fencing_backstop_after, milliseconds(400));
  EXPECT_EQ(c->watchdog_device, "/dev/watchdog0");
  EXPECT_EQ(c->watchdog_timeout, milliseconds(20000));
  EXPECT_EQ(c->state_dir, "/srv/regen");
  EXPECT_EQ(c->control_socket, "/run/regen/a.sock");
  EXPECT_EQ(c->desired_file, "/srv/regen/desired.yaml");
  EXPECT_EQ(c->domain_type, "qemu");
  EXPECT_EQ(c->parallel_starts, 2);
  EXPECT_TRUE(c->fault_injection);
  EXPECT_EQ(c->log_level, "trace");
  EXPECT_TRUE(c->tls.enabled());
  EXPECT_EQ(c->tls.ca, "/etc/regen/tls/ca.crt");
  EXPECT_EQ(c->tls.cert, "/etc/regen/tls/lab-1.crt");
  EXPECT_EQ(c->tls.key, "/etc/regen/tls/lab-1.key");
  EXPECT_EQ(c->tls.server_name, "regen-ctl.lab");
  EXPECT_FALSE(c->insecure);
}

TEST(AgentConfigTest, InsecureIsExplicit) {
  Result<AgentConfig> c =
      ParseAgentConfig("host_name: a\ncontroller_address: ctl:7400\ninsecure: true\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->insecure);
  EXPECT_FALSE(c->tls.enabled());
}

TEST(AgentConfigTest, StandaloneNeedsNeitherTlsNorInsecure) {
  Result<AgentConfig> c = ParseAgentConfig("host_name: a\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->insecure);
  EXPECT_FALSE(c->tls.enabled());
}

TEST(AgentConfigTest, LoadRefusesTlsFilesThatCannotBeRead) {
  testing::ConfigTempDir dir;
  testing::WriteWholeFile(dir.File("ca.crt"), "ca");
  testing::WriteWholeFile(dir.File("a.crt"), "cert");
  std::string yaml =
      "host_name: a\ncontroller_address: ctl:7400\ntls:\n  ca: " + dir.File("ca.crt") +
      "\n  cert: " + dir.File("a.crt") + "\n  key: " + dir.File("a.key") + "\n";
  testing::WriteWholeFile(dir.File("agent.yaml"), yaml);
  Result<AgentConfig> c = LoadAgentConfig(dir.File("agent.yaml"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(c.status().message().rfind(dir.File("agent.yaml") + ": tls.key: cannot read \"" +
                                           dir.File("a.key") + "\": No such file or directory",
                                       0),
            0u)
      << c.status().message();
  testing::WriteWholeFile(dir.File("a.key"), "key");
  EXPECT_TRUE(LoadAgentConfig(dir.File("agent.yaml")).ok());
}

TEST(AgentConfigTest, NetworkIsOffByDefaultAndTunnelIpDefaultsToTheAddress) {
  Result<AgentConfig> c = ParseAgentConfig("host_name: kvm-1\naddress: 10.1.2.3\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  AgentNetworkConfig d;
  EXPECT_FALSE(c->network.enabled);
  EXPECT_EQ(c->network.bridge, "br-int");
  EXPECT_EQ(c->network.tunnel_ip, "10.1.2.3");
  EXPECT_EQ(c->network.db_socket, d.db_socket);
  EXPECT_EQ(c->network.run_dir, d.run_dir);
  EXPECT_EQ(c->network.resync_interval, d.resync_interval);
}

TEST(AgentConfigTest, NetworkBlock) {
  const char* text = R"(host_name: kvm-1
network:
  enabled: true
  bridge: br-lab
  tunnel_ip: 192.168.50.2
  db_socket: /tmp/ovs/db.sock
  run_dir: /tmp/ovs
  resync_interval: 750ms
)";
  Result<AgentConfig> c = ParseAgentConfig(text, kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->network.enabled);
  EXPECT_EQ(c->network.bridge, "br-lab");
  EXPECT_EQ(c->network.tunnel_ip, "192.168.50.2");
  EXPECT_EQ(c->network.db_socket, "/tmp/ovs/db.sock");
  EXPECT_EQ(c->network.run_dir, "/tmp/ovs");
  EXPECT_EQ(c->network.resync_interval, milliseconds(750));
}

TEST(AgentConfigTest, EmptyBridgeAndEmptyControllerAreAllowed) {
  Result<AgentConfig> c =
      ParseAgentConfig("host_name: a\ncontroller_address:\novs:\n  bridge: \"\"\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ovs_bridge, "");
  EXPECT_EQ(c->controller_address, "");
}

// HA controllers: a comma-separated list or a YAML list; one address stays a list of one.
TEST(AgentConfigTest, SeveralControllerAddresses) {
  Result<AgentConfig> c = ParseAgentConfig(
      "host_name: a\ncontroller_address: \"ctl-1:7400, ctl-2:7400,10.0.0.3:7400\"\ninsecure: "
      "true\n",
      kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->controller_addresses,
            (std::vector<std::string>{"ctl-1:7400", "ctl-2:7400", "10.0.0.3:7400"}));
  EXPECT_EQ(c->controller_address, "ctl-1:7400,ctl-2:7400,10.0.0.3:7400");
  c = ParseAgentConfig(
      "host_name: a\ncontroller_address:\n  - ctl-1:7400\n  - \"[::1]:7400\"\ninsecure: true\n",
      kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->controller_addresses, (std::vector<std::string>{"ctl-1:7400", "[::1]:7400"}));
  c = ParseAgentConfig("host_name: a\ncontroller_address: ctl:7400\ninsecure: true\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->controller_addresses, std::vector<std::string>{"ctl:7400"});
  c = ParseAgentConfig("host_name: a\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->controller_addresses.empty());
}

TEST(AgentConfigTest, FaultInjectionOnTestDriver) {
  Result<AgentConfig> c = ParseAgentConfig(
      "host_name: a\nlibvirt_uri: test:///default\nfault_injection: true\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->fault_injection);
}

TEST(AgentConfigTest, DnsWatch) {
  Result<AgentConfig> c = ParseAgentConfig(
      "host_name: a\ndns:\n  server: 127.0.0.1:5353\n  zone: lab.example.\n"
      "  poll_interval: 250ms\n",
      kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->dns_server, "127.0.0.1:5353");
  EXPECT_EQ(c->dns_zone, "lab.example.");
  EXPECT_EQ(c->dns_poll_interval, std::chrono::milliseconds(250));
  Result<AgentConfig> off = ParseAgentConfig("host_name: a\n", kFile);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->dns_server, "");
  EXPECT_EQ(off->dns_poll_interval, std::chrono::milliseconds(5000));
}

// The host's lease in etcd: the block the lab writes, defaults, the text form of endpoints.
TEST(AgentConfigTest, EtcdBlock) {
  const char* text = R"(host_name: host-1
controller_address: ["127.0.0.1:7400", "127.0.0.1:7401"]
insecure: true
fencing_lease: 3s
etcd:
  endpoints: ["127.0.0.1:2379", "127.0.0.1:2381"]
  prefix: /lab/
  tls: {ca: /etc/regen/etcd/ca.crt, cert: /etc/regen/etcd/host-1.crt, key: /etc/regen/etcd/host-1.key, server_name: etcd.lab}
  user: host-1
  password_file: /etc/regen/etcd-password
  lease_ttl: 6s
  renew_interval: 500ms
)";
  Result<AgentConfig> c = ParseAgentConfig(text, kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->etcd.has_value());
  EXPECT_EQ(c->etcd->endpoints, (std::vector<std::string>{"127.0.0.1:2379", "127.0.0.1:2381"}));
  EXPECT_EQ(c->etcd->prefix, "/lab/");
  EXPECT_EQ(c->etcd->tls.ca, "/etc/regen/etcd/ca.crt");
  EXPECT_EQ(c->etcd->tls.cert, "/etc/regen/etcd/host-1.crt");
  EXPECT_EQ(c->etcd->tls.key, "/etc/regen/etcd/host-1.key");
  EXPECT_EQ(c->etcd->tls.server_name, "etcd.lab");
  EXPECT_EQ(c->etcd->user, "host-1");
  EXPECT_EQ(c->etcd->password_file, "/etc/regen/etcd-password");
  EXPECT_EQ(c->etcd->lease_ttl, milliseconds(6000));
  EXPECT_EQ(c->etcd->renew_interval, milliseconds(500));
}

TEST(AgentConfigTest, EtcdDefaults) {
  Result<AgentConfig> none = ParseAgentConfig("host_name: a\n", kFile);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->etcd.has_value()) << "no etcd block: the controller's acks renew the lease";
  Result<AgentConfig> c = ParseAgentConfig(
      "host_name: a\ncontroller_address: c:1\ninsecure: true\netcd: {endpoints: \"a:1, b:2\"}\n",
      kFile);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->etcd.has_value());
  EXPECT_EQ(c->etcd->endpoints, (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_EQ(c->etcd->prefix, "/regen/");
  EXPECT_TRUE(c->etcd->tls.ca.empty());
  EXPECT_TRUE(c->etcd->user.empty());
  EXPECT_EQ(c->etcd->lease_ttl, milliseconds(5000));
  EXPECT_EQ(c->etcd->renew_interval, milliseconds(750)) << "fencing_lease (3s) / 4";
  Result<AgentConfig> small = ParseAgentConfig(
      "host_name: a\ncontroller_address: c:1\ninsecure: true\nfencing_lease: 150ms\n"
      "etcd: {endpoints: [\"a:1\"], lease_ttl: 2s}\n",
      kFile);
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  EXPECT_EQ(small->etcd->renew_interval, milliseconds(50)) << "never under 50ms by default";
}

TEST(AgentConfigTest, LoadRefusesEtcdFilesThatCannotBeRead) {
  testing::ConfigTempDir dir;
  testing::WriteWholeFile(dir.File("agent.yaml"),
                          "host_name: a\ncontroller_address: c:1\ninsecure: true\n"
                          "etcd: {endpoints: [\"a:1\"], user: u, password_file: " +
                              dir.File("pw") + "}\n");
  Result<AgentConfig> c = LoadAgentConfig(dir.File("agent.yaml"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("etcd.password_file: cannot read \"" + dir.File("pw") + "\""),
            std::string::npos)
      << c.status().message();
}

#define REGEN_ETCD_AGENT "host_name: a\ncontroller_address: c:1\ninsecure: true\n"

const BadCase kBadAgent[] = {
    {"etcd without controller_address", "host_name: a\netcd: {endpoints: [\"a:1\"]}\n", "2:7",
     "etcd", "needs a controller_address"},
    {"etcd without endpoints", REGEN_ETCD_AGENT "etcd: {prefix: /r/}\n", "4:7", "etcd.endpoints",
     "required field is missing"},
    {"etcd endpoint without port", REGEN_ETCD_AGENT "etcd: {endpoints: \"a:1,b\"}\n", "4:19",
     "etcd.endpoints", "entry 2 must be \"host:port\" with a port from 1 to 65535, got \"b\""},
    {"etcd list endpoint without port", REGEN_ETCD_AGENT "etcd: {endpoints: [\"a\"]}\n", "4:20",
     "etcd.endpoints[0]", "got \"a\""},
    {"etcd prefix without slash", REGEN_ETCD_AGENT "etcd: {endpoints: [\"a:1\"], prefix: /r}\n",
     "4:36", "etcd.prefix", "must start and end with '/'"},
    {"etcd user without password_file", REGEN_ETCD_AGENT "etcd: {endpoints: [\"a:1\"], user: u}\n",
     "4:7", "etcd.password_file", "go together"},
    {"etcd tls cert without key",
     REGEN_ETCD_AGENT "etcd: {endpoints: [\"a:1\"], tls: {ca: /c, cert: /d}}\n", "4:33",
     "etcd.tls.key", "must be given with cert"},
    {"etcd unknown key", REGEN_ETCD_AGENT "etcd: {endpoints: [\"a:1\"], ttl: 5s}\n", "4:28",
     "etcd.ttl", "unknown key \"ttl\""},
    {"etcd lease_ttl not whole seconds",
     REGEN_ETCD_AGENT "etcd: {endpoints: [\"a:1\"], lease_ttl: 5500ms}\n", "4:39", "etcd.lease_ttl",
     "must be whole seconds (etcd leases have a TTL in seconds), got \"5500ms\""},
    {"etcd lease_ttl under 2s", REGEN_ETCD_AGENT "etcd: {endpoints: [\"a:1\"], lease_ttl: 1s}\n",
     "4:39", "etcd.lease_ttl", "got \"1s\""},
    {"etcd lease_ttl within fencing_lease + backstop + 500ms",
     REGEN_ETCD_AGENT "etcd: {endpoints: [\"a:1\"], lease_ttl: 4s}\n", "4:39", "etcd.lease_ttl",
     "4s must exceed fencing_lease + fencing_backstop_after + 500ms (3s + 1s + 500ms = 4500ms): "
     "this host must have fenced, and its fencing backstop tripped, before etcd can delete its key "
     "and a controller heals its instances elsewhere (set etcd.lease_ttl: 5s"},
    {"etcd default lease_ttl with a long fencing_lease",
     REGEN_ETCD_AGENT
     "fencing_lease: 4s\nfencing_backstop_after: 2s\netcd: {endpoints: [\"a:1\"]}\n",
     "6:7", "etcd.lease_ttl",
     "5s (the default) must exceed fencing_lease + fencing_backstop_after "
     "+ 500ms (4s + 2s + 500ms = 6500ms)"},
    {"etcd renew_interval half the lease",
     REGEN_ETCD_AGENT "etcd: {endpoints: [\"a:1\"], renew_interval: 1500ms}\n", "4:44",
     "etcd.renew_interval",
     "must be shorter than half of fencing_lease (3s), got \"1500ms\" (one lost renewal must not "
     "fence this host"},

    {"metrics address without port", "host_name: a\nmetrics_address: 127.0.0.1\n", "2:18",
     "metrics_address", "must be \"host:port\""},
    {"controller without tls or insecure", "host_name: a\ncontroller_address: ctl:7400\n", "1:1",
     "tls", "required field is missing: set tls: {ca, cert, key} or insecure: true"},
    {"tls and insecure",
     "host_name: a\ncontroller_address: ctl:7400\ninsecure: true\n"
     "tls: {ca: /c, cert: /d, key: /e}\n",
     "3:11", "insecure", "true cannot go with a tls: block"},
    {"tls without key", "host_name: a\ncontroller_address: ctl:7400\ntls: {ca: /c, cert: /d}\n",
     "3:6", "tls.key", "required field is missing"},
    {"tls relative ca",
     "host_name: a\ncontroller_address: c:1\ntls: {ca: c.pem, cert: /d, key: /e}\n", "3:11",
     "tls.ca", "must be an absolute path"},
    {"tls bad server name",
     "host_name: a\ncontroller_address: c:1\ntls: {ca: /c, cert: /d, key: /e, server_name: "
     "'A B'}\n",
     "3:47", "tls.server_name", "must be a lower-case DNS name, got \"A B\""},
    {"tls unknown key", "host_name: a\ncontroller_address: c:1\ntls: {ca: /c, crt: /d}\n", "3:15",
     "tls.crt", "unknown key \"crt\""},
    {"insecure not a bool", "host_name: a\ninsecure: please\n", "2:11", "insecure",
     "must be true or false"},
    {"dns without zone", "host_name: a\ndns: {server: \"127.0.0.1:5353\"}\n", "2:6", "dns.zone",
     "required field is missing"},
    {"dns zone without dot", "host_name: a\ndns: {server: \"127.0.0.1:53\", zone: lab.example}\n",
     "2:37", "dns.zone", "must be a lower-case DNS zone ending with '.', got \"lab.example\""},
    {"dns server name", "host_name: a\ndns: {server: \"ns.lab:53\", zone: lab.}\n", "2:15",
     "dns.server", "\"ns.lab:53\""},

    {"unknown key", "host_name: a\nhost_nmae: b\n", "2:1", "host_nmae",
     "unknown key \"host_nmae\" (did you mean \"host_name\"? allowed keys at the top level: "
     "host_name, address"},
    {"bad name", "host_name: Web_1\n", "1:12", "host_name", "invalid name \"Web_1\""},
    {"missing host_name", "# agent\naddress: 10.0.0.1\n", "2:1", "host_name",
     "required field is missing"},
    {"plain number duration", "host_name: a\npoll_interval: 5\n", "2:16", "poll_interval",
     "got \"5\" (a plain number has no unit: write \"5s\" or \"5ms\""},
    {"duration with bad unit", "host_name: a\npoll_interval: 5 sec\n", "2:16", "poll_interval",
     "\"5 sec\""},
    {"duration too long", "host_name: a\npoll_interval: 2h\n", "2:16", "poll_interval",
     "must be a duration between 10ms and 1h, got \"2h\""},
    {"lease too short", "host_name: a\nfencing_lease: 50ms\n", "2:16", "fencing_lease",
     "between 100ms and 10m, got \"50ms\""},
    {"backstop too short", "host_name: a\nfencing_backstop_after: 5ms\n", "2:25",
     "fencing_backstop_after", "between 10ms and 10m, got \"5ms\""},
    {"relative watchdog device", "host_name: a\nwatchdog_device: dev/watchdog\n", "2:18",
     "watchdog_device", "dev/watchdog"},
    {"watchdog timeout not whole seconds",
     "host_name: a\nwatchdog_device: /dev/watchdog\nwatchdog_timeout: 1500ms\n", "3:19",
     "watchdog_timeout",
     "must be whole seconds (a watchdog device counts in seconds), got \"1500ms\""},
    {"watchdog timeout too short",
     "host_name: a\nwatchdog_device: /dev/watchdog\nwatchdog_timeout: 500ms\n", "3:19",
     "watchdog_timeout", "between 1s and 1h, got \"500ms\""},
    {"watchdog timeout without a device", "host_name: a\nwatchdog_timeout: 10s\n", "2:19",
     "watchdog_timeout", "needs watchdog_device (the device it is the timeout of), got \"10s\""},
    {"list for a bool", "host_name: a\nlibvirt_events: [true]\n", "2:17", "libvirt_events",
     "must be true or false, got a list"},
    {"yes for a bool", "host_name: a\nlibvirt_events: yes\n", "2:17", "libvirt_events",
     "must be true or false, got \"yes\""},
    {"fault injection on qemu:///system",
     "host_name: a\nlibvirt_uri: qemu:///system\nfault_injection: true\n", "3:18",
     "fault_injection", "true is not allowed with libvirt_uri \"qemu:///system\""},
    {"fault injection with default uri", "host_name: a\nfault_injection: true\n", "2:18",
     "fault_injection", "\"qemu:///system\""},
    {"bad address", "host_name: a\naddress: 10.0.0.300\n", "2:10", "address",
     "must be an IPv4 address like \"10.0.0.5\", got \"10.0.0.300\""},
    {"controller without port", "host_name: a\ncontroller_address: ctl.lab\n", "2:21",
     "controller_address", "got \"ctl.lab\""},
    {"controller port 0", "host_name: a\ncontroller_address: ctl.lab:0\n", "2:21",
     "controller_address", "\"ctl.lab:0\""},
    {"controller list entry without port",
     "host_name: a\ncontroller_address: a:7400,ctl.lab,c:7400\n", "2:21", "controller_address",
     "entry 2 of 3 \"ctl.lab\" must be \"host:port\" with a port from 1 to 65535"},
    {"controller list twice", "host_name: a\ncontroller_address: a:7400, b:7400,a:7400\n", "2:21",
     "controller_address", "entry 3 of 3 \"a:7400\" is listed twice"},
    {"controller list empty entry", "host_name: a\ncontroller_address: a:7400,\n", "2:21",
     "controller_address", "entry 2 of 2 is empty"},
    {"controller yaml list bad entry", "host_name: a\ncontroller_address: [a:7400, b:0]\n", "2:21",
     "controller_address", "entry 2 of 2 \"b:0\" must be \"host:port\""},
    {"controller yaml list with a map", "host_name: a\ncontroller_address:\n  - {x: 1}\n", "3:3",
     "controller_address", "entry 1 must be \"host:port\", got a map"},
    {"empty libvirt_uri", "host_name: a\nlibvirt_uri: \"\"\n", "2:14", "libvirt_uri",
     "must not be empty, got \"\""},
    {"bridge too long", "host_name: a\novs:\n  bridge: this-name-is-too-long\n", "3:11",
     "ovs.bridge", "invalid OVS bridge name \"this-name-is-too-long\""},
    {"bridge with a space", "host_name: a\novs: {bridge: 'br 0'}\n", "2:15", "ovs.bridge",
     "\"br 0\""},
    {"bad db socket", "host_name: a\novs: {db_socket: /run/db.sock}\n", "2:18", "ovs.db_socket",
     "\"/run/db.sock\""},
    {"ovs as a list", "host_name: a\novs: [br-int]\n", "2:6", "ovs",
     "must be a map of \"key: value\" settings, got a list"},
    {"unknown ovs key", "host_name: a\novs:\n  brige: br0\n", "3:3", "ovs.brige",
     "unknown key \"brige\" (did you mean \"bridge\"? allowed keys in ovs: bridge, db_socket)"},
    {"capacity zero",
     "host_name: a\ncapacity:\n  vcpus: 0\n  memory_mib: 2\n  disk_gib: 3\n  bandwidth_mbps: 4\n",
     "3:10", "capacity.vcpus", "got \"0\""},
    {"capacity not a number",
     "host_name: a\ncapacity:\n  vcpus: 1\n  memory_mib: lots\n  disk_gib: 3\n"
     "  bandwidth_mbps: 4\n",
     "4:15", "capacity.memory_mib", "must be an integer between 1 and 1099511627776, got \"lots\""},
    {"relative state_dir", "host_name: a\nstate_dir: var/lib/regen\n", "2:12", "state_dir",
     "must be an absolute path (starting with '/', no control characters), got "
     "\"var/lib/regen\""},
    {"socket path too long",
     "host_name: a\ncontrol_socket: /run/regen/"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaa.sock\n",
     "2:17", "control_socket", "must be at most 107 bytes long"},
    {"relative desired_file", "host_name: a\ndesired_file: desired.yaml\n", "2:15", "desired_file",
     "\"desired.yaml\""},
    {"domain type xen", "host_name: a\ndomain_type: xen\n", "2:14", "domain_type",
     "must be one of auto, kvm, qemu, test, got \"xen\""},
    {"parallel starts 0", "host_name: a\nparallel_starts: 0\n", "2:18", "parallel_starts",
     "an integer between 1 and 32"},
    {"log level verbose", "host_name: a\nlog_level: verbose\n", "2:12", "log_level",
     "must be one of trace, debug, info, warn, error, got \"verbose\""},
    {"duplicate key", "host_name: a\naddress: 10.0.0.1\nhost_name: b\n", "3:1", "host_name",
     "duplicate key \"host_name\" (first set at line 1, column 1"},
    {"empty file", "", "1:1", "", "the file is empty"},
    {"comments only", "# nothing here\n", "1:1", "", "the file is empty"},
    {"a list document", "- host_name: a\n", "1:1", "",
     "the file must hold the agent configuration as a map of \"key: value\" lines, got a list"},
    {"a scalar document", "kvm-1\n", "1:1", "", "got \"kvm-1\""},
    {"host_name as a map", "host_name: {a: 1}\n", "1:12", "host_name", "got a map"},
    {"empty host_name", "host_name:\n", "1:1", "host_name", "invalid name \"\""},
    {"network bridge too long", "host_name: a\nnetwork: {bridge: br-int-much-too-long}\n", "2:19",
     "network.bridge", "\"br-int-much-too-long\""},
    {"network tunnel_ip not an address", "host_name: a\nnetwork:\n  tunnel_ip: 10.0.0\n", "3:14",
     "network.tunnel_ip", "\"10.0.0\""},
    {"network unknown key", "host_name: a\nnetwork: {enable: true}\n", "2:11", "network.enable",
     "enable"},
};

class AgentConfigBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(AgentConfigBadTest, IsRefusedWithFieldPositionAndValue) {
  const BadCase& c = GetParam();
  testing::ExpectBad(ParseAgentConfig(c.yaml, kFile).status(), kFile, c);
}

INSTANTIATE_TEST_SUITE_P(Table, AgentConfigBadTest, ::testing::ValuesIn(kBadAgent));

TEST(AgentConfigTest, LoadNamesThePathAndTheSystemError) {
  testing::ConfigTempDir dir;
  Result<AgentConfig> c = LoadAgentConfig(dir.File("missing.yaml"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "cannot read " + dir.File("missing.yaml") + ": No such file or directory");
  c = LoadAgentConfig(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cannot read " + dir.path() + ": Is a directory");
}

TEST(AgentConfigTest, LoadUsesThePathInErrors) {
  testing::ConfigTempDir dir;
  testing::WriteWholeFile(dir.File("agent.yaml"), "host_name: Bad_Host\nlibvirt_uri: x\n");
  Result<AgentConfig> c = LoadAgentConfig(dir.File("agent.yaml"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message().rfind(dir.File("agent.yaml") + ":1:12: host_name: ", 0), 0u)
      << c.status().message();
  testing::WriteWholeFile(dir.File("agent.yaml"), "host_name: good\n");
  EXPECT_TRUE(LoadAgentConfig(dir.File("agent.yaml")).ok());
}

}  // namespace
}  // namespace regen

namespace regen {
namespace {

// image_dirs (issue 15 finding 7): the directories whose files the controller may name.
TEST(AgentConfigTest, ImageDirs) {
  Result<AgentConfig> c = ParseAgentConfig("host_name: a\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_TRUE(c->image_dirs.empty());
  EXPECT_EQ(DefaultImageDirs("/var/lib/regen"),
            (std::vector<std::string>{"/var/lib/regen/images", "/etc/regen/templates"}));
  c = ParseAgentConfig("host_name: a\nimage_dirs: [/srv/images, /etc/regen/templates]\n", kFile);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->image_dirs, (std::vector<std::string>{"/srv/images", "/etc/regen/templates"}));
  for (const char* bad : {"image_dirs: [images]\n", "image_dirs: [/srv/../etc]\n",
                          "image_dirs: /srv/images\n", "image_dirs: [{a: b}]\n"}) {
    c = ParseAgentConfig(std::string("host_name: a\n") + bad, kFile);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("image_dirs"), std::string::npos) << c.status().message();
  }
}

}  // namespace
}  // namespace regen
