// Unit tests of agent/domain_xml: golden files (REGEN_UPDATE_GOLDEN=1 rewrites them), validation
// errors, metadata round trip, escaping and UUIDs.
#include "agent/domain_xml.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "common/subprocess.h"
#include "tests/fakes/test_util.h"

namespace regen {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

InstanceSpec WebSpec() {
  InstanceSpec spec;
  spec.name = "web-0";
  spec.service = "web";
  spec.update_domain = 1;
  spec.version = "v2";
  spec.generation = 3;
  spec.metadata = {{"image", "web-2.0.qcow2"}, {"tier", "front"}};
  spec.allocation.host = "host-a";
  spec.allocation.resources = Resources{2, 512, 10, 100};
  spec.allocation.ip = "10.0.0.5";
  spec.allocation.mac = "52:54:00:12:34:56";
  return spec;
}

DomainXmlOptions FullOptions() {
  DomainXmlOptions options;
  options.domain_type = "kvm";
  options.bridge = "br-int";
  options.disk_path = "/var/lib/regen/disks/web-0-g3.qcow2";
  options.events_socket = "/var/lib/regen/channels/web-0.events.sock";
  options.emulator = "/usr/bin/qemu-system-x86_64";
  return options;
}

DomainXmlOptions BareOptions(const std::string& type) {
  DomainXmlOptions options;
  options.domain_type = type;
  options.bridge = "";
  return options;
}

std::string GoldenPath(const std::string& name) {
  return testing::SourceDir() + "/tests/golden/agent/" + name;
}

// Compares `actual` with the golden file byte for byte; REGEN_UPDATE_GOLDEN=1 rewrites the file.
void ExpectGolden(const std::string& name, const std::string& actual) {
  const std::string path = GoldenPath(name);
  const char* update = std::getenv("REGEN_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    testing::WriteFileOrDie(path, actual);
    std::cout << "rewrote golden file " << path << "\n";
    return;
  }
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << "golden file " << path
                  << " is missing; run with REGEN_UPDATE_GOLDEN=1 to create it, then review it";
    return;
  }
  const std::string expected = testing::ReadFileOrDie(path);
  if (expected == actual) return;
  std::istringstream e(expected);
  std::istringstream a(actual);
  std::string el;
  std::string al;
  int line = 0;
  while (true) {
    ++line;
    bool he = static_cast<bool>(std::getline(e, el));
    bool ha = static_cast<bool>(std::getline(a, al));
    if (!he && !ha) break;
    if (he != ha || el != al) {
      ADD_FAILURE() << "output differs from golden file " << path << " at line " << line
                    << "\n  expected: " << (he ? el : "<end of file>")
                    << "\n  actual:   " << (ha ? al : "<end of output>") << "\nfull output:\n"
                    << actual
                    << "\nIf the change is intended, run with REGEN_UPDATE_GOLDEN=1 and review "
                       "the diff of tests/golden/agent/.";
      return;
    }
  }
  ADD_FAILURE() << "output differs from golden file " << path
                << " only in the final newline; run with REGEN_UPDATE_GOLDEN=1 to rewrite it";
}

// Checks the XML against libvirt's RelaxNG schema (virt-xml-validate, libvirt-clients).
void ExpectValidAgainstSchema(const std::string& xml) {
  if (!testing::HaveProgram("virt-xml-validate")) {
    REGEN_REQUIRE_COMPONENT("virt-xml-validate", "apt-get install libvirt-clients");
  }
  testing::TempDir dir("regen-domain-xml");
  const std::string file = dir.File("domain.xml");
  testing::WriteFileOrDie(file, xml);
  RealCommandRunner runner;
  auto out = runner.Run({"virt-xml-validate", file, "domain"}, std::chrono::seconds(30));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->exit_code, 0) << "virt-xml-validate rejected:\n"
                               << xml << "\n"
                               << out->stdout_text << out->stderr_text;
}

std::string BuildOrDie(const InstanceSpec& spec, const DomainXmlOptions& options) {
  auto xml = BuildDomainXml(spec, options);
  EXPECT_TRUE(xml.ok()) << xml.status().ToString();
  return xml.ok() ? *xml : std::string();
}

TEST(DomainXmlGoldenTest, KvmWithNicDiskAndChannel) {
  std::string xml = BuildOrDie(WebSpec(), FullOptions());
  ExpectGolden("kvm_nic_disk_channel.xml", xml);
  ExpectValidAgainstSchema(xml);
}

TEST(DomainXmlGoldenTest, QemuWithoutNicOrDisk) {
  std::string xml = BuildOrDie(WebSpec(), BareOptions("qemu"));
  ExpectGolden("qemu_bare.xml", xml);
  ExpectValidAgainstSchema(xml);
}

TEST(DomainXmlGoldenTest, TestDriverWithNic) {
  DomainXmlOptions options = BareOptions("test");
  options.bridge = "br-int";
  options.events_socket = "/var/lib/regen/channels/web-0.events.sock";  // as the agent sets it
  std::string xml = BuildOrDie(WebSpec(), options);
  ExpectGolden("test_nic.xml", xml);
  ExpectValidAgainstSchema(xml);
}

constexpr const char* kTemplate = R"(<domain type='kvm'>
  <name>{{name}}</name>
  <uuid>{{uuid}}</uuid>
  <metadata>
{{metadata}}
  </metadata>
  <memory unit='KiB'>{{memory_kib}}</memory>
  <vcpu>{{vcpus}}</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <boot dev='hd'/>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='{{disk}}'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <interface type='bridge'>
      <mac address='{{mac}}'/>
      <source bridge='{{bridge}}'/>
      <virtualport type='openvswitch'/>
      <model type='e1000'/>
    </interface>
  </devices>
</domain>
)";

TEST(DomainXmlGoldenTest, Template) {
  InstanceSpec spec = WebSpec();
  spec.domain_template = "/etc/regen/web.xml";  // read by the agent into template_text
  DomainXmlOptions opts = FullOptions();
  opts.template_text = kTemplate;
  std::string xml = BuildOrDie(spec, opts);
  ExpectGolden("template.xml", xml);
  ExpectValidAgainstSchema(xml);
}

TEST(DomainXmlGoldenTest, MetadataElement) {
  ExpectGolden("metadata_element.xml", BuildMetadataElement(WebSpec()) + "\n");
}

TEST(DomainXmlTest, TemplateUnknownPlaceholderIsNamed) {
  InstanceSpec spec = WebSpec();
  spec.domain_template = "/etc/regen/web.xml";  // read by the agent into template_text
  DomainXmlOptions opts = FullOptions();
  opts.template_text = "<domain><name>{{name}}</name>{{metadata}}<x>{{cpu_model}}</x></domain>";
  auto xml = BuildDomainXml(spec, opts);
  ASSERT_FALSE(xml.ok());
  EXPECT_EQ(xml.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(xml.status().message(), HasSubstr("instance web-0: domain_template"));
  EXPECT_THAT(xml.status().message(), HasSubstr("unknown placeholder \"{{cpu_model}}\""));
}

// {{ip}} {{generation}} {{service}} (issue 16): what a guest needs on its kernel command line to
// configure its NIC and say who it is.
TEST(DomainXmlTest, TemplateIpGenerationAndService) {
  InstanceSpec spec = WebSpec();
  spec.domain_template = "/etc/regen/web.xml";
  spec.generation = 7;
  DomainXmlOptions opts = FullOptions();
  opts.template_text =
      "<domain><name>{{name}}</name>{{metadata}}<cmdline>regen.ip={{ip}}/24 "
      "regen.generation={{generation}} regen.service={{service}}</cmdline></domain>";
  std::string xml = BuildOrDie(spec, opts);
  EXPECT_THAT(xml, HasSubstr("<cmdline>regen.ip=" + spec.allocation.ip +
                             "/24 regen.generation=7 regen.service=web</cmdline>"));
  spec.allocation.ip = "";  // a service without a network: {{ip}} is empty
  xml = BuildOrDie(spec, opts);
  EXPECT_THAT(xml, HasSubstr("<cmdline>regen.ip=/24 regen.generation=7"));
}

// Issue 16: a real cloud image gets its address from the NoCloud seed the template attaches.
TEST(DomainXmlTest, TemplateSeedPrefixAndGateway) {
  InstanceSpec spec = WebSpec();
  spec.domain_template = "/etc/regen/cloud.xml";
  spec.prefix_len = 24;
  spec.gateway = "10.0.0.1";
  DomainXmlOptions opts = FullOptions();
  opts.seed_path = "/var/lib/regen/seeds/web-0-g1.iso";
  opts.template_text =
      "<domain><name>{{name}}</name>{{metadata}}<devices><disk type='file' device='cdrom'>"
      "<source file='{{seed}}'/></disk></devices><x>{{ip}}/{{prefix_len}} via {{gateway}}</x>"
      "</domain>";
  std::string xml = BuildOrDie(spec, opts);
  EXPECT_THAT(xml, HasSubstr("<source file='/var/lib/regen/seeds/web-0-g1.iso'/>"));
  EXPECT_THAT(xml, HasSubstr("<x>" + spec.allocation.ip + "/24 via 10.0.0.1</x>"));
  spec.prefix_len = 0;  // a service without a subnet
  spec.gateway = "";
  EXPECT_THAT(BuildOrDie(spec, opts), HasSubstr("/ via </x>"));
  spec.gateway = "10.0.0.999";
  auto bad = BuildDomainXml(spec, opts);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("gateway: invalid IPv4 address \"10.0.0.999\""));
}

// config/examples/cloud-image.xml fills into XML with the seed as a cdrom and the NIC.
TEST(DomainXmlTest, ExampleCloudImageTemplate) {
  InstanceSpec spec = WebSpec();
  spec.domain_template = "/etc/regen/templates/cloud-image.xml";
  DomainXmlOptions opts = FullOptions();
  opts.seed_path = "/var/lib/regen/seeds/web-0-g1.iso";
  opts.template_text =
      testing::ReadFileOrDie(testing::SourceDir() + "/config/examples/cloud-image.xml");
  std::string xml = BuildOrDie(spec, opts);
  EXPECT_THAT(xml, HasSubstr("<source file='/var/lib/regen/seeds/web-0-g1.iso'/>"));
  EXPECT_THAT(xml, HasSubstr("<mac address='" + spec.allocation.mac + "'/>"));
  EXPECT_THAT(xml, HasSubstr("<source file='" + opts.disk_path + "'/>"));
  EXPECT_EQ(xml.find("{{"), std::string::npos) << xml;
}

TEST(DomainXmlTest, TemplateUnknownPlaceholderListsEveryKnownOne) {
  InstanceSpec spec = WebSpec();
  spec.domain_template = "/etc/regen/web.xml";
  DomainXmlOptions opts = FullOptions();
  opts.template_text = "<domain><name>{{name}}</name>{{metadata}}{{nope}}</domain>";
  auto xml = BuildDomainXml(spec, opts);
  ASSERT_FALSE(xml.ok());
  for (const char* known :
       {"{{name}}", "{{uuid}}", "{{vcpus}}", "{{memory_kib}}", "{{mac}}", "{{bridge}}", "{{disk}}",
        "{{metadata}}", "{{events_channel}}", "{{ip}}", "{{generation}}", "{{service}}",
        "{{prefix_len}}", "{{gateway}}", "{{seed}}"}) {
    EXPECT_THAT(xml.status().message(), HasSubstr(known));
    // Every placeholder the message names is accepted.
    opts.template_text =
        std::string("<domain><name>{{name}}</name>{{metadata}}") + known + "</domain>";
    EXPECT_TRUE(BuildDomainXml(spec, opts).ok()) << known;
    opts.template_text = "<domain><name>{{name}}</name>{{metadata}}{{nope}}</domain>";
  }
}

TEST(DomainXmlTest, TemplateMustHaveNameAndMetadata) {
  InstanceSpec spec = WebSpec();
  spec.domain_template = "/etc/regen/web.xml";  // read by the agent into template_text
  DomainXmlOptions opts = FullOptions();
  opts.template_text = "<domain><name>{{name}}</name></domain>";
  auto xml = BuildDomainXml(spec, opts);
  ASSERT_FALSE(xml.ok());
  EXPECT_THAT(xml.status().message(), HasSubstr("{{metadata}}"));

  opts.template_text = "<domain><metadata>{{metadata}}</metadata></domain>";
  xml = BuildDomainXml(spec, opts);
  ASSERT_FALSE(xml.ok());
  EXPECT_THAT(xml.status().message(), HasSubstr("{{name}}"));
}

TEST(DomainXmlTest, TemplateUnterminatedPlaceholder) {
  InstanceSpec spec = WebSpec();
  spec.domain_template = "/etc/regen/web.xml";  // read by the agent into template_text
  DomainXmlOptions opts = FullOptions();
  opts.template_text = "<domain><name>{{name}}</name>{{metadata}}<x>{{vcpus</x></domain>";
  auto xml = BuildDomainXml(spec, opts);
  ASSERT_FALSE(xml.ok());
  EXPECT_THAT(xml.status().message(), HasSubstr("unterminated placeholder"));
}

TEST(DomainXmlTest, TemplateValuesAreEscaped) {
  InstanceSpec spec = WebSpec();
  spec.domain_template = "/etc/regen/web.xml";  // read by the agent into template_text
  DomainXmlOptions opts = FullOptions();
  spec.version = "v<2>&'\"";
  opts.template_text = "<domain><name>{{name}}</name><metadata>{{metadata}}</metadata></domain>";
  std::string xml = BuildOrDie(spec, opts);
  EXPECT_THAT(xml, HasSubstr("<regen:version>v&lt;2&gt;&amp;&apos;&quot;</regen:version>"));
}

struct BadSpecCase {
  std::string label;
  std::function<void(InstanceSpec&, DomainXmlOptions&)> mutate;
  std::vector<std::string> expected;  // substrings of the message
};

TEST(DomainXmlTest, ValidationErrorsNameFieldAndValue) {
  const std::vector<BadSpecCase> cases = {
      {"name",
       [](InstanceSpec& s, DomainXmlOptions&) { s.name = "Web_0"; },
       {"instance spec: name: invalid name \"Web_0\""}},
      {"name with markup",
       [](InstanceSpec& s, DomainXmlOptions&) { s.name = "a<b>"; },
       {"name: invalid name \"a<b>\""}},
      {"service",
       [](InstanceSpec& s, DomainXmlOptions&) { s.service = ""; },
       {"instance web-0: service: invalid name \"\""}},
      {"mac",
       [](InstanceSpec& s, DomainXmlOptions&) { s.allocation.mac = "zz"; },
       {"instance web-0: allocation.mac: invalid MAC \"zz\""}},
      {"multicast mac",
       [](InstanceSpec& s, DomainXmlOptions&) { s.allocation.mac = "01:00:5e:00:00:01"; },
       {"allocation.mac: invalid MAC \"01:00:5e:00:00:01\""}},
      {"missing mac with bridge",
       [](InstanceSpec& s, DomainXmlOptions&) { s.allocation.mac = ""; },
       {"instance web-0: allocation.mac: missing", "\"br-int\""}},
      {"ip",
       [](InstanceSpec& s, DomainXmlOptions&) { s.allocation.ip = "10.0.0.300"; },
       {"instance web-0: allocation.ip: invalid IPv4 address \"10.0.0.300\""}},
      {"vcpus zero",
       [](InstanceSpec& s, DomainXmlOptions&) { s.allocation.resources.vcpus = 0; },
       {"allocation.resources.vcpus: 0 is out of range (1 to 1024)"}},
      {"vcpus too many",
       [](InstanceSpec& s, DomainXmlOptions&) { s.allocation.resources.vcpus = 1025; },
       {"allocation.resources.vcpus: 1025 is out of range"}},
      {"memory",
       [](InstanceSpec& s, DomainXmlOptions&) { s.allocation.resources.memory_mib = 8; },
       {"allocation.resources.memory_mib: 8 is out of range (16 to"}},
      {"generation",
       [](InstanceSpec& s, DomainXmlOptions&) { s.generation = -1; },
       {"instance web-0: generation: -1 is negative"}},
      {"update domain",
       [](InstanceSpec& s, DomainXmlOptions&) { s.update_domain = -2; },
       {"instance web-0: update_domain: -2 is negative"}},
      {"domain type",
       [](InstanceSpec&, DomainXmlOptions& o) { o.domain_type = "xen"; },
       {"instance web-0: options.domain_type: invalid domain type \"xen\""}},
      {"bridge",
       [](InstanceSpec&, DomainXmlOptions& o) { o.bridge = "br int'"; },
       {"instance web-0: options.bridge: invalid bridge name \"br int'\""}},
      {"disk path",
       [](InstanceSpec&, DomainXmlOptions& o) { o.disk_path = "disk.qcow2"; },
       {"options.disk_path: \"disk.qcow2\" is not an absolute path"}},
      {"socket path",
       [](InstanceSpec&, DomainXmlOptions& o) { o.events_socket = "/" + std::string(200, 's'); },
       {"options.events_socket:", "longer than 107"}},
      {"version control char",
       [](InstanceSpec& s, DomainXmlOptions&) { s.version = "v\x01"; },
       {"instance web-0: version: control character at offset 1 in \"v\\x01\""}},
      {"metadata invalid utf8",
       [](InstanceSpec& s, DomainXmlOptions&) { s.metadata["k"] = "\xff"; },
       {"metadata[\"k\"]: invalid UTF-8", "\"\\xff\""}},
      {"metadata empty key",
       [](InstanceSpec& s, DomainXmlOptions&) { s.metadata[""] = "x"; },
       {"metadata: empty key"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    InstanceSpec spec = WebSpec();
    DomainXmlOptions options = FullOptions();
    c.mutate(spec, options);
    auto xml = BuildDomainXml(spec, options);
    ASSERT_FALSE(xml.ok());
    EXPECT_EQ(xml.status().code(), Code::kInvalidArgument);
    for (const auto& s : c.expected) EXPECT_THAT(xml.status().message(), HasSubstr(s));
  }
}

TEST(DomainXmlTest, MacOptionalWithoutBridgeButCheckedWhenSet) {
  InstanceSpec spec = WebSpec();
  spec.allocation.mac = "";
  EXPECT_TRUE(BuildDomainXml(spec, BareOptions("qemu")).ok());
  spec.allocation.mac = "52:54:00:zz:00:00";
  EXPECT_FALSE(BuildDomainXml(spec, BareOptions("qemu")).ok());
}

TEST(DomainXmlTest, MetadataRoundTrip) {
  InstanceSpec spec = WebSpec();
  DomainMetadata md = ParseDomainMetadata(BuildMetadataElement(spec));
  EXPECT_TRUE(md.managed);
  EXPECT_EQ(md.service, "web");
  EXPECT_EQ(md.instance, "web-0");
  EXPECT_EQ(md.update_domain, 1);
  EXPECT_EQ(md.version, "v2");
  EXPECT_EQ(md.generation, 3);
}

TEST(DomainXmlTest, MetadataFromWholeDomainXml) {
  DomainMetadata md = ParseDomainMetadata(BuildOrDie(WebSpec(), FullOptions()));
  EXPECT_TRUE(md.managed);
  EXPECT_EQ(md.instance, "web-0");
  EXPECT_EQ(md.generation, 3);
}

TEST(DomainXmlTest, MetadataAsLibvirtReturnsIt) {
  // virDomainGetMetadata(VIR_DOMAIN_METADATA_ELEMENT) re-serializes the element without its
  // namespace prefix (measured with libvirt 9.0, test driver and qemu driver alike).
  const std::string from_libvirt =
      "<instance>\n"
      "  <service>web</service>\n"
      "  <update-domain>4</update-domain>\n"
      "  <version>v&lt;3&gt; \"x\" 'y' &amp;</version>\n"
      "  <generation>12</generation>\n"
      "  <meta key=\"a&amp;b\">x &lt; y</meta>\n"
      "  <instance>web-7</instance>\n"
      "</instance>\n";
  DomainMetadata md = ParseDomainMetadata(from_libvirt);
  EXPECT_TRUE(md.managed);
  EXPECT_EQ(md.service, "web");
  EXPECT_EQ(md.instance, "web-7");
  EXPECT_EQ(md.update_domain, 4);
  EXPECT_EQ(md.version, "v<3> \"x\" 'y' &");
  EXPECT_EQ(md.generation, 12);
}

TEST(DomainXmlTest, MetadataWithOtherPrefixAndOrder) {
  const std::string xml =
      "<?xml version=\"1.0\"?><!-- c --><ns0:instance "
      "xmlns:ns0='https://regen.dev/xmlns/instance/1'><ns0:instance>db-1</ns0:instance>"
      "<ns0:generation> 7 </ns0:generation><ns0:service><![CDATA[d<b]]></ns0:service>"
      "<ns0:version/></ns0:instance>";
  DomainMetadata md = ParseDomainMetadata(xml);
  EXPECT_TRUE(md.managed);
  EXPECT_EQ(md.instance, "db-1");
  EXPECT_EQ(md.generation, 7);
  EXPECT_EQ(md.service, "d<b");
  EXPECT_EQ(md.version, "");
}

TEST(DomainXmlTest, MetadataCharacterReferencesGiveValidUtf8) {
  // Found by tests/fuzz/domain_metadata_fuzz: "&#xD800;" (a surrogate) became the bytes ED A0 80,
  // invalid UTF-8 that then broke the agent's DomainStatus (a proto3 string field); "&#0;" became
  // a NUL. References to what XML 1.0 does not allow are kept as text; the others are decoded.
  const std::string xml =
      "<instance><service>a&#xD800;b</service><version>&#0;&#1;&#xFFFE;</version>"
      "<instance>w&#x1F600;&#233;&#9;</instance></instance>";
  DomainMetadata md = ParseDomainMetadata(xml);
  EXPECT_EQ(md.service, "a&#xD800;b");
  EXPECT_EQ(md.version, "&#0;&#1;&#xFFFE;");
  EXPECT_EQ(md.instance, "w\xf0\x9f\x98\x80\xc3\xa9\t");
}

TEST(DomainXmlTest, MetadataCutAtFirstInstanceEndTag) {
  // A reader that cuts at the first "</regen:instance>" (tests/fakes does) still sees all fields.
  std::string element = BuildMetadataElement(WebSpec());
  std::string cut = element.substr(0, element.find("</regen:instance>") + 17);
  DomainMetadata md = ParseDomainMetadata(cut);
  EXPECT_TRUE(md.managed);
  EXPECT_EQ(md.service, "web");
  EXPECT_EQ(md.instance, "web-0");
  EXPECT_EQ(md.version, "v2");
  EXPECT_EQ(md.generation, 3);
  EXPECT_EQ(md.update_domain, 1);
}

TEST(DomainXmlTest, MetadataAbsentOrGarbage) {
  EXPECT_FALSE(ParseDomainMetadata("").managed);
  EXPECT_FALSE(ParseDomainMetadata("<other:thing xmlns:other='urn:x'/>").managed);
  EXPECT_FALSE(ParseDomainMetadata("not xml at all <<<").managed);
  DomainMetadata md = ParseDomainMetadata("<instance><generation>x1</generation><service>s");
  EXPECT_TRUE(md.managed);
  EXPECT_EQ(md.generation, 0);
  EXPECT_EQ(md.service, "s");
  EXPECT_TRUE(ParseDomainMetadata("<regen:instance/>").managed);
}

TEST(DomainXmlTest, HostileValuesAreEscaped) {
  InstanceSpec spec = WebSpec();
  spec.version = "</regen:version><evil/>";
  spec.metadata = {{"k\"'<&>", "</regen:meta><script>&amp;\"'</script>"},
                   {"multi", "line1\nline2\ttab"}};
  std::string xml = BuildOrDie(spec, FullOptions());
  EXPECT_THAT(xml, Not(HasSubstr("<evil/>")));
  EXPECT_THAT(xml, Not(HasSubstr("<script>")));
  EXPECT_THAT(xml, HasSubstr("<regen:version>&lt;/regen:version&gt;&lt;evil/&gt;</regen:version>"));
  EXPECT_THAT(xml, HasSubstr("<regen:meta key=\"k&quot;&apos;&lt;&amp;&gt;\">&lt;/regen:meta&gt;"
                             "&lt;script&gt;&amp;amp;&quot;&apos;&lt;/script&gt;</regen:meta>"));
  EXPECT_THAT(xml, HasSubstr("line1&#10;line2&#9;tab"));
  DomainMetadata md = ParseDomainMetadata(xml);
  EXPECT_EQ(md.version, "</regen:version><evil/>");
  EXPECT_EQ(md.instance, "web-0");
  ExpectValidAgainstSchema(xml);
}

TEST(DomainXmlTest, XmlEscape) {
  EXPECT_EQ(XmlEscape("a<b>&\"'c"), "a&lt;b&gt;&amp;&quot;&apos;c");
  EXPECT_EQ(XmlEscape("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(XmlEscape(std::string("x\x01y", 3)), "x\xef\xbf\xbdy");
}

TEST(DomainXmlTest, UuidStableAndChangesWithGeneration) {
  InstanceSpec spec = WebSpec();
  auto uuid_of = [](const std::string& xml) {
    auto b = xml.find("<uuid>");
    auto e = xml.find("</uuid>");
    return xml.substr(b + 6, e - b - 6);
  };
  std::string a = uuid_of(BuildOrDie(spec, FullOptions()));
  std::string b = uuid_of(BuildOrDie(spec, FullOptions()));
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '4');                                          // version 4 layout
  EXPECT_NE(std::string("89ab").find(a[19]), std::string::npos);  // RFC 4122 variant
  // The UUID depends on name and generation only, not on placement or version.
  InstanceSpec moved = spec;
  moved.allocation.host = "host-b";
  moved.version = "v3";
  EXPECT_EQ(uuid_of(BuildOrDie(moved, BareOptions("test"))), a);
  std::vector<std::string> seen{a};
  for (int64_t g : {0, 1, 2, 4, 100}) {
    spec.generation = g;
    std::string u = uuid_of(BuildOrDie(spec, FullOptions()));
    for (const auto& s : seen) EXPECT_NE(u, s) << "generation " << g;
    seen.push_back(u);
  }
  spec.generation = 3;
  spec.name = "web-1";
  EXPECT_NE(uuid_of(BuildOrDie(spec, FullOptions())), a);
}

}  // namespace
}  // namespace regen
