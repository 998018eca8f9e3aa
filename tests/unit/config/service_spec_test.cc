// Service specs and the agent's desired-instances file: full parses, defaults, and tables of bad
// inputs whose errors must name the field path, its line:column and the offending value.
#include "config/service_spec.h"

#include <gtest/gtest.h>

#include "tests/unit/config/config_test_util.h"

namespace regen {
namespace {

using std::chrono::milliseconds;
using testing::BadCase;

const std::string kSvc = "svc.yaml";
const std::string kDesired = "desired.yaml";

// A valid spec; the bad cases below are variations of it.
constexpr char kMinimalSpec[] = R"(name: web
flavor: {vcpus: 1, memory_mib: 64}
versions: {v1: {}}
version: v1
)";

TEST(ServiceSpecTest, MinimalSpecGivesDefaults) {
  Result<ServiceSpec> s = ParseServiceSpec(kMinimalSpec, kSvc);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->name, "web");
  EXPECT_EQ(s->instances, 1);
  EXPECT_EQ(s->update_domains, 1);
  EXPECT_EQ(s->flavor, (Resources{1, 64, 0, 0}));
  EXPECT_EQ(s->subnet, "");
  EXPECT_EQ(s->dns_name, "");
  EXPECT_EQ(s->ip_policy, "keep");
  ASSERT_EQ(s->versions.size(), 1u);
  EXPECT_EQ(s->versions.at("v1").image, "");
  EXPECT_EQ(s->versions.at("v1").domain_template, "");
  EXPECT_EQ(s->version, "v1");
  EXPECT_EQ(s->health_check.type, "none");
  EXPECT_EQ(s->placement, "spread");
}

TEST(ServiceSpecTest, EverySetting) {
  const char* text = R"(name: db
instances: 253
update_domains: 5
flavor:
  vcpus: 1024
  memory_mib: 4194304
  disk_gib: 65536
  bandwidth_mbps: 400000
network:
  subnet: 10.20.0.0/24
  dns_name: db-1.lab.example
  ip_policy: new
versions:
  v1:
  "2.0-rc_1":
    image: /img/db.qcow2
    domain_template: /etc/regen/db.xml
    metadata: {release: "2.0", empty: }
version: 2.0-rc_1
health_check:
  type: http
  port: 8080
  interval: 5s
  timeout: 1500ms
  max_failed: 2
placement: pack
)";
  Result<ServiceSpec> s = ParseServiceSpec(text, kSvc);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->instances, 253);
  EXPECT_EQ(s->update_domains, 5);
  EXPECT_EQ(s->flavor, (Resources{1024, 4194304, 65536, 400000}));
  EXPECT_EQ(s->subnet, "10.20.0.0/24");
  EXPECT_EQ(s->dns_name, "db-1.lab.example");
  EXPECT_EQ(s->ip_policy, "new");
  ASSERT_EQ(s->versions.size(), 2u);
  const VersionSpec& v2 = s->versions.at("2.0-rc_1");
  EXPECT_EQ(v2.image, "/img/db.qcow2");
  EXPECT_EQ(v2.domain_template, "/etc/regen/db.xml");
  EXPECT_EQ(v2.metadata, (std::map<std::string, std::string>{{"release", "2.0"}, {"empty", ""}}));
  EXPECT_EQ(s->version, "2.0-rc_1");
  EXPECT_EQ(s->health_check.type, "http");
  EXPECT_EQ(s->health_check.port, 8080);
  EXPECT_EQ(s->health_check.path, "/");  // the default for http
  EXPECT_EQ(s->health_check.interval, milliseconds(5000));
  EXPECT_EQ(s->health_check.timeout, milliseconds(1500));
  EXPECT_EQ(s->health_check.max_failed, 2);
  EXPECT_EQ(s->placement, "pack");
}

TEST(ServiceSpecTest, SubnetSizeBoundary) {
  // A /29 has 8 addresses: 5 for instances once network, gateway and broadcast are set aside.
  std::string spec = std::string(kMinimalSpec) + "instances: 5\nnetwork: {subnet: 10.0.0.8/29}\n";
  EXPECT_TRUE(ParseServiceSpec(spec, kSvc).ok());
  spec = std::string(kMinimalSpec) + "instances: 6\nnetwork: {subnet: 10.0.0.8/29}\n";
  Result<ServiceSpec> s = ParseServiceSpec(spec, kSvc);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("is too small for 6 instances, got \"10.0.0.8/29\" (a /29 "
                                      "has 5 addresses"),
            std::string::npos)
      << s.status().message();
  EXPECT_NE(s.status().message().find("use /28"), std::string::npos) << s.status().message();
}

#define FLAVOR_HEAD "flavor: {vcpus: 1, memory_mib: 64}\n"
#define SPEC_HEAD "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversions: {v1: {}}\n"

const BadCase kBadSpecs[] = {
    {"vcpus not a number", "name: web\nversions: {v1: {}}\nversion: v1\nflavor:\n  vcpus: many\n",
     "5:10", "flavor.vcpus", "must be an integer between 1 and 1024, got \"many\""},
    {"flavor typo", SPEC_HEAD "version: v1\nflavor2: 1\n", "5:1", "flavor2",
     "did you mean \"flavor\"?"},
    {"bad name", "name: Web_1\n", "1:7", "name", "invalid name \"Web_1\""},
    {"name missing", "instances: 2\n", "1:1", "name", "required field is missing"},
    {"flavor missing", "name: web\nversions: {v1: {}}\nversion: v1\n", "1:1", "flavor",
     "required field is missing"},
    {"memory missing", "name: web\nflavor:\n  vcpus: 1\n", "3:3", "flavor.memory_mib",
     "required field is missing"},
    {"memory too small", "name: web\nflavor: {vcpus: 1, memory_mib: 8}\n", "2:32",
     "flavor.memory_mib", "must be an integer between 16 and 4194304, got \"8\""},
    {"negative disk", "name: web\nflavor: {vcpus: 1, memory_mib: 64, disk_gib: -1}\n", "2:46",
     "flavor.disk_gib", "got \"-1\""},
    {"flavor as a list", "name: web\nflavor: [1, 64]\n", "2:9", "flavor", "got a list"},
    {"instances zero", "name: web\ninstances: 0\n", "2:12", "instances",
     "must be an integer between 1 and 10000, got \"0\""},
    {"update domains above instances", "name: web\ninstances: 4\nupdate_domains: 5\n", "3:17",
     "update_domains", "must be an integer between 1 and 4, got \"5\""},
    {"versions typo", SPEC_HEAD "versions2: 1\n", "4:1", "versions2", "unknown key"},
    {"version unknown",
     "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversions:\n  v1: {}\n  v2: {}\n"
     "version: v3\n",
     "6:10", "version", "got \"v3\" (known versions: v1, v2)"},
    {"version missing", SPEC_HEAD, "1:1", "version", "required field is missing"},
    {"versions missing", "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversion: v1\n", "1:1",
     "versions", "required field is missing"},
    {"versions empty", "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversions: {}\n", "3:11",
     "versions", "must name at least one version, got a map"},
    {"versions as a list", "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversions: [v1]\n",
     "3:11", "versions", "got a list"},
    {"bad version name", "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversions:\n  V1: {}\n",
     "4:3", "versions.V1", "invalid version name \"V1\""},
    {"version name with a leading dot",
     "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversions:\n  .v1: {}\n", "4:3", "versions..v1",
     "invalid version name \".v1\""},
    {"relative image",
     "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversions:\n  v1:\n    image: web.qcow2\n",
     "5:12", "versions.v1.image", "got \"web.qcow2\""},
    {"version typo",
     "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversions:\n  v1:\n    imgae: /a\n", "5:5",
     "versions.v1.imgae", "did you mean \"image\"?"},
    {"duplicate version",
     "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversions:\n  v1: {}\n  v1: {}\n", "5:3",
     "versions.v1", "duplicate key \"v1\" (first set at line 4, column 3"},
    {"metadata value is a list",
     "name: web\nflavor: {vcpus: 1, memory_mib: 64}\nversions:\n  v1:\n    metadata:\n"
     "      tags: [a, b]\n",
     "6:13", "versions.v1.metadata.tags", "must be text, got a list"},
    {"subnet too small", FLAVOR_HEAD "name: web\ninstances: 6\nnetwork:\n  subnet: 10.10.0.0/30\n",
     "5:11", "network.subnet", "is too small for 6 instances, got \"10.10.0.0/30\""},
    {"subnet host bits", FLAVOR_HEAD "name: web\nnetwork: {subnet: 10.10.0.5/24}\n", "3:19",
     "network.subnet", "has host bits set, got \"10.10.0.5/24\" (did you mean \"10.10.0.0/24\"?)"},
    {"subnet /31", FLAVOR_HEAD "name: web\nnetwork: {subnet: 10.10.0.0/31}\n", "3:19",
     "network.subnet", "with a prefix length from 8 to 30, got \"10.10.0.0/31\""},
    {"subnet without length", FLAVOR_HEAD "name: web\nnetwork: {subnet: 10.10.0.0}\n", "3:19",
     "network.subnet", "got \"10.10.0.0\""},
    {"subnet missing", FLAVOR_HEAD "name: web\nnetwork: {dns_name: web.lab}\n", "3:10",
     "network.subnet", "required field is missing"},
    {"dns name upper case",
     FLAVOR_HEAD "name: web\nnetwork: {subnet: 10.0.0.0/24, dns_name: Web.lab}\n", "3:42",
     "network.dns_name", "must be a lower-case DNS name, got \"Web.lab\""},
    {"dns label ends with '-'",
     FLAVOR_HEAD "name: web\nnetwork: {subnet: 10.0.0.0/24, dns_name: web-.lab}\n", "3:42",
     "network.dns_name", "\"web-.lab\""},
    {"ip policy", FLAVOR_HEAD "name: web\nnetwork: {subnet: 10.0.0.0/24, ip_policy: fresh}\n",
     "3:43", "network.ip_policy", "must be one of keep, new, got \"fresh\""},
    {"network as scalar", FLAVOR_HEAD "name: web\nnetwork: 10.0.0.0/24\n", "3:10", "network",
     "got \"10.0.0.0/24\""},
    {"tcp check without port", SPEC_HEAD "version: v1\nhealth_check:\n  type: tcp\n", "6:3",
     "health_check.port", "required field is missing"},
    {"port out of range", SPEC_HEAD "version: v1\nhealth_check: {type: tcp, port: 70000}\n", "5:33",
     "health_check.port", "between 1 and 65535, got \"70000\""},
    {"path without slash",
     SPEC_HEAD "version: v1\nhealth_check: {type: http, port: 80, path: healthz}\n", "5:44",
     "health_check.path", "must start with '/', got \"healthz\""},
    {"timeout not below interval",
     SPEC_HEAD "version: v1\nhealth_check: {type: tcp, port: 80, interval: 1s, timeout: 1s}\n",
     "5:60", "health_check.timeout", "must be shorter than interval (1s), got \"1s\""},
    {"check type", SPEC_HEAD "version: v1\nhealth_check: {type: ping}\n", "5:22",
     "health_check.type", "must be one of none, tcp, http, got \"ping\""},
    {"placement", SPEC_HEAD "version: v1\nplacement: random\n", "5:12", "placement",
     "must be one of spread, pack, got \"random\""},
    {"duplicate top-level key", SPEC_HEAD "version: v1\nname: web2\n", "5:1", "name",
     "duplicate key \"name\" (first set at line 1, column 1"},
};

#undef SPEC_HEAD
#undef FLAVOR_HEAD

class ServiceSpecBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ServiceSpecBadTest, IsRefusedWithFieldPositionAndValue) {
  const BadCase& c = GetParam();
  testing::ExpectBad(ParseServiceSpec(c.yaml, kSvc).status(), kSvc, c);
}

INSTANTIATE_TEST_SUITE_P(Table, ServiceSpecBadTest, ::testing::ValuesIn(kBadSpecs));

TEST(DesiredInstancesTest, ParsesEveryField) {
  const char* text = R"(instances:
  - name: web-0
    service: web
    update_domain: 2
    version: v1.1
    generation: 7
    image: /img/web.qcow2
    domain_template: /etc/regen/web.xml
    resources: {vcpus: 2, memory_mib: 128, disk_gib: 3, bandwidth_mbps: 40}
    ip: 10.10.0.2
    mac: "52:54:00:00:00:02"
    metadata: {release: "1.1"}
  - name: web-1
    service: web
    version: v1
    resources: {vcpus: 1, memory_mib: 64}
)";
  Result<std::vector<InstanceSpec>> r = ParseDesiredInstances(text, kDesired);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  const InstanceSpec& a = (*r)[0];
  EXPECT_EQ(a.name, "web-0");
  EXPECT_EQ(a.service, "web");
  EXPECT_EQ(a.update_domain, 2);
  EXPECT_EQ(a.version, "v1.1");
  EXPECT_EQ(a.generation, 7);
  EXPECT_EQ(a.image, "/img/web.qcow2");
  EXPECT_EQ(a.domain_template, "/etc/regen/web.xml");
  EXPECT_EQ(a.allocation.resources, (Resources{2, 128, 3, 40}));
  EXPECT_EQ(a.allocation.ip, "10.10.0.2");
  EXPECT_EQ(a.allocation.mac, "52:54:00:00:00:02");
  EXPECT_EQ(a.metadata, (std::map<std::string, std::string>{{"release", "1.1"}}));
  const InstanceSpec& b = (*r)[1];
  EXPECT_EQ(b.update_domain, 0);
  EXPECT_EQ(b.generation, 0);
  EXPECT_EQ(b.allocation.resources, (Resources{1, 64, 0, 0}));
  EXPECT_EQ(b.allocation.ip, "");
  EXPECT_EQ(b.allocation.mac, "");
}

TEST(DesiredInstancesTest, EmptyListsAreValid) {
  for (const char* text : {"instances: []\n", "instances:\n", "# none yet\ninstances: []\n"}) {
    Result<std::vector<InstanceSpec>> r = ParseDesiredInstances(text, kDesired);
    ASSERT_TRUE(r.ok()) << text << ": " << r.status().ToString();
    EXPECT_TRUE(r->empty());
  }
}

#define ONE "instances:\n  - name: web-0\n    service: web\n    version: v1\n"
#define RES "    resources: {vcpus: 1, memory_mib: 64}\n"

const BadCase kBadDesired[] = {
    {"duplicate instance name",
     ONE RES "  - name: web-1\n    service: web\n    version: v1\n" RES
             "  - name: web-0\n    service: web\n    version: v1\n" RES,
     "10:11", "instances[2].name",
     "duplicate instance name \"web-0\" (already used at line 2, column 11"},
    {"bad name", "instances:\n  - name: Web_0\n", "2:11", "instances[0].name",
     "invalid name \"Web_0\""},
    {"bad mac", ONE RES "    mac: \"52:54:00:00:00\"\n", "6:10", "instances[0].mac",
     "must be a unicast MAC address like \"52:54:00:12:34:56\", got \"52:54:00:00:00\""},
    {"multicast mac", ONE RES "    mac: \"01:00:5e:00:00:01\"\n", "6:10", "instances[0].mac",
     "got \"01:00:5e:00:00:01\""},
    {"duplicate mac",
     ONE RES "    mac: 52:54:00:00:00:02\n  - name: web-1\n    service: web\n    version: v1\n" RES
             "    mac: 52:54:00:00:00:02\n",
     "11:10", "instances[1].mac",
     "duplicate MAC address \"52:54:00:00:00:02\" (already used at line 6, column 10"},
    {"bad ip", ONE RES "    ip: 10.10.0\n", "6:9", "instances[0].ip", "got \"10.10.0\""},
    {"negative generation", ONE RES "    generation: -1\n", "6:17", "instances[0].generation",
     "must be an integer of at least 0, got \"-1\""},
    {"resources missing", ONE, "2:5", "instances[0].resources", "required field is missing"},
    {"memory missing", ONE "    resources: {vcpus: 1}\n", "5:16",
     "instances[0].resources.memory_mib", "required field is missing"},
    {"service missing", "instances:\n  - name: web-0\n", "2:5", "instances[0].service",
     "required field is missing"},
    {"bad version", "instances:\n  - name: web-0\n    service: web\n    version: V 1\n", "4:14",
     "instances[0].version", "invalid version name \"V 1\""},
    {"relative image", ONE RES "    image: web.qcow2\n", "6:12", "instances[0].image",
     "\"web.qcow2\""},
    {"unknown key", ONE RES "    hostname: h\n", "6:5", "instances[0].hostname",
     "unknown key \"hostname\""},
    {"item not a map", "instances:\n  - web-0\n", "2:5", "instances[0]",
     "must be a map describing one instance, got \"web-0\""},
    {"instances a map", "instances: {web-0: {}}\n", "1:12", "instances",
     "must be a list (\"- item\" lines, or [] for none), got a map"},
    {"instances missing", "{}\n", "1:1", "instances", "required field is missing"},
    {"top-level list", "- name: web-0\n", "1:1", "",
     "the file must hold the desired instances as a map"},
};

#undef ONE
#undef RES

class DesiredInstancesBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(DesiredInstancesBadTest, IsRefusedWithFieldPositionAndValue) {
  const BadCase& c = GetParam();
  testing::ExpectBad(ParseDesiredInstances(c.yaml, kDesired).status(), kDesired, c);
}

INSTANTIATE_TEST_SUITE_P(Table, DesiredInstancesBadTest, ::testing::ValuesIn(kBadDesired));

TEST(ServiceSpecTest, LoadNamesThePathAndTheSystemError) {
  testing::ConfigTempDir dir;
  Result<ServiceSpec> s = LoadServiceSpec(dir.File("svc.yaml"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(),
            "cannot read " + dir.File("svc.yaml") + ": No such file or directory");
  Result<std::vector<InstanceSpec>> d = LoadDesiredInstances(dir.File("d.yaml"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().message(),
            "cannot read " + dir.File("d.yaml") + ": No such file or directory");
}

}  // namespace
}  // namespace regen
