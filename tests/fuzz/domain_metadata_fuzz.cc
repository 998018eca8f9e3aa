// libFuzzer target: the reader of the <regen:instance> domain metadata (ParseDomainMetadata,
// agent/domain_metadata.cc), and the domain XML builder on what it read. What the reader returns
// goes into protobuf string fields (DomainStatus): from valid UTF-8 it must return valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <string>

#include "agent/domain_xml.h"
#include "tests/fuzz/fuzz_util.h"

using regen::fuzz::Check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string xml(reinterpret_cast<const char*>(data), size);
  regen::DomainMetadata m = regen::ParseDomainMetadata(xml);
  if (regen::fuzz::IsValidUtf8(xml)) {
    Check(regen::fuzz::IsValidUtf8(m.service), "metadata: service is not valid UTF-8");
    Check(regen::fuzz::IsValidUtf8(m.instance), "metadata: instance is not valid UTF-8");
    Check(regen::fuzz::IsValidUtf8(m.version), "metadata: version is not valid UTF-8");
  }
  // Raw control characters are not XML (libvirt never hands them over); the writer replaces them.
  auto has_controls = [](const std::string& v) {
    for (char c : v) {
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') return true;
    }
    return false;
  };
  if (!m.managed || has_controls(m.service) || has_controls(m.instance) ||
      has_controls(m.version)) {
    return 0;
  }
  // Written back and read again, the element gives the same fields.
  regen::InstanceSpec spec;
  spec.service = m.service;
  spec.name = m.instance;
  spec.update_domain = m.update_domain;
  spec.version = m.version;
  spec.generation = m.generation;
  regen::DomainMetadata again = regen::ParseDomainMetadata(regen::BuildMetadataElement(spec));
  auto show = [](const regen::DomainMetadata& d) {
    return "service=[" + d.service + "] instance=[" + d.instance +
           "] ud=" + std::to_string(d.update_domain) + " version=[" + d.version +
           "] generation=" + std::to_string(d.generation);
  };
  Check(again.managed && again.service == m.service && again.instance == m.instance &&
            again.version == m.version && again.update_domain == m.update_domain &&
            again.generation == m.generation,
        "metadata: rebuilt element reads back differently: " + show(m) + " -> " + show(again));
  (void)regen::BuildDomainXml(spec, regen::DomainXmlOptions{});
  return 0;
}
