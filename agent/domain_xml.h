// Builds libvirt domain XML from an instance spec and its allocation. Pure; any thread.
#pragma once

#include <cstddef>
#include <string>

#include "agent/hypervisor.h"
#include "common/model.h"
#include "common/status.h"

namespace regen {

// The longest unix socket path (sizeof(sockaddr_un::sun_path) - 1), e.g. options.events_socket.
inline constexpr size_t kMaxUnixSocketPath = 107;

inline constexpr const char* kRegenMetadataUri = "https://regen.dev/xmlns/instance/1";

struct DomainXmlOptions {
  std::string domain_type = "kvm";  // kvm | qemu | test
  std::string bridge = "br-int";    // OVS bridge; "" = no NIC
  std::string disk_path;            // the instance's qcow2 overlay; "" = no disk
  std::string events_socket;        // unix socket for the org.regen.events.0 channel; "" = none
  std::string emulator;             // "" = libvirt's default
  std::string seed_path;            // the cloud-init NoCloud seed ISO ({{seed}}); "" = none
  // The contents of the file spec.domain_template names (the agent reads it on its host).
  std::string template_text;
};

// Validates names, MAC, IP and resources (errors name the field and value) and returns the XML.
// When spec.domain_template (a path) is set, options.template_text (that file's contents) is used
// instead of the built-in layout, with these
// placeholders replaced: {{name}} {{uuid}} {{vcpus}} {{memory_kib}} {{mac}} {{bridge}} {{disk}}
// {{metadata}} {{events_channel}} {{ip}} (allocation.ip, "" when none) {{generation}}
// {{service}} {{prefix_len}} {{gateway}} (the service subnet's, "" when none) {{seed}} (the
// cloud-init NoCloud seed ISO, agent/nocloud_seed.h; options.seed_path) (all values XML-escaped). A
// template without {{events_channel}} gets the channel before its closing </devices>: every domain
// has its events channel.
Result<std::string> BuildDomainXml(const InstanceSpec& spec, const DomainXmlOptions& options);

// Parses the <regen:instance> element Regen writes into <metadata>. managed=false if absent.
DomainMetadata ParseDomainMetadata(const std::string& metadata_xml);

// The <regen:instance> element alone (as stored with virDomainSetMetadata).
std::string BuildMetadataElement(const InstanceSpec& spec);

std::string XmlEscape(const std::string& text);

}  // namespace regen
