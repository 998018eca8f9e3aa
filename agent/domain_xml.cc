#include "agent/domain_xml.h"

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string_view>
#include <vector>

#include "common/names.h"

namespace regen {

namespace {

constexpr int64_t kMaxVcpus = 1024;
constexpr int64_t kMinMemoryMib = 16;
constexpr int64_t kMaxMemoryMib = int64_t{1} << 24;  // 16 TiB: keeps KiB far from overflow
constexpr size_t kMaxInterfaceName = 15;             // Linux IFNAMSIZ - 1

// Returns the length of the UTF-8 sequence starting at text[i], or 0 if it is not valid UTF-8.
size_t Utf8SequenceLength(std::string_view text, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t len = 0;
  uint32_t cp = 0;
  if ((c & 0xe0) == 0xc0) {
    len = 2;
    cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3;
    cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinForLength[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  if (cp == 0xfffe || cp == 0xffff) return 0;  // not XML characters
  return len;
}

// Characters XML 1.0 allows (escaped or not): tab, LF, CR and everything from 0x20 up.
bool IsXmlControlAllowed(unsigned char c) {
  return c >= 0x20 || c == '\t' || c == '\n' || c == '\r';
}

// OK when `value` is UTF-8 text XML can carry; else INVALID_ARGUMENT naming the field.
Status ValidateText(const std::string& field, std::string_view value) {
  for (size_t i = 0; i < value.size();) {
    unsigned char c = static_cast<unsigned char>(value[i]);
    if (c < 0x80 && !IsXmlControlAllowed(c)) {
      return InvalidArgument(field + ": control character at offset " + std::to_string(i) + " in " +
                             QuoteValue(value) +
                             " (XML cannot carry it; remove it from the value)");
    }
    size_t len = Utf8SequenceLength(value, i);
    if (len == 0) {
      return InvalidArgument(field + ": invalid UTF-8 at offset " + std::to_string(i) + " in " +
                             QuoteValue(value) + " (values must be UTF-8 text)");
    }
    i += len;
  }
  return Status::Ok();
}

Status ValidateAbsolutePath(const std::string& field, const std::string& path, size_t max_len) {
  if (path.empty() || path[0] != '/') {
    return InvalidArgument(field + ": " + QuoteValue(path) + " is not an absolute path");
  }
  if (path.size() > max_len) {
    return InvalidArgument(field + ": " + QuoteValue(path) + " is longer than " +
                           std::to_string(max_len) + " characters");
  }
  return ValidateText(field, path);
}

Status ValidateBridge(const std::string& bridge) {
  bool ok = !bridge.empty() && bridge.size() <= kMaxInterfaceName;
  for (char c : bridge) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.');
  }
  if (ok) return Status::Ok();
  return InvalidArgument("options.bridge: invalid bridge name " + QuoteValue(bridge) +
                         " (1 to 15 characters of letters, digits, '-', '_' or '.'; \"\" for no "
                         "NIC)");
}

// The org.regen.events.0 virtio-serial channel ("" when there is no events socket), each line
// indented by `indent`.
std::string EventsChannel(const DomainXmlOptions& options, const std::string& indent) {
  if (options.events_socket.empty()) return "";
  std::string x;
  x += indent + "<channel type='unix'>\n";
  x += indent + "  <source mode='bind' path='" + XmlEscape(options.events_socket) + "'/>\n";
  x += indent + "  <target type='virtio' name='org.regen.events.0'/>\n";
  x += indent + "</channel>\n";
  return x;
}

Status ValidateSpec(const InstanceSpec& spec, const DomainXmlOptions& options) {
  if (Status s = ValidateName("name", spec.name); !s.ok()) {
    return s.WithContext("instance spec");
  }
  const std::string context = "instance " + spec.name;
  auto fail = [&](const std::string& message) { return InvalidArgument(context + ": " + message); };

  if (Status s = ValidateName("service", spec.service); !s.ok()) return s.WithContext(context);

  const Allocation& alloc = spec.allocation;
  if (!alloc.mac.empty() && !IsValidMac(alloc.mac)) {
    return fail("allocation.mac: invalid MAC " + QuoteValue(alloc.mac) +
                " (expected six hex pairs like 52:54:00:ab:cd:ef, unicast)");
  }
  if (!options.bridge.empty()) {
    RETURN_IF_ERROR(ValidateBridge(options.bridge).WithContext(context));
    if (alloc.mac.empty()) {
      return fail("allocation.mac: missing; a NIC on bridge " + QuoteValue(options.bridge) +
                  " needs the MAC the controller allocated");
    }
  }
  if (!alloc.ip.empty() && !IsValidIpv4(alloc.ip)) {
    return fail("allocation.ip: invalid IPv4 address " + QuoteValue(alloc.ip) +
                " (expected dotted quad like 10.0.0.5)");
  }
  if (!spec.gateway.empty() && !IsValidIpv4(spec.gateway)) {
    return fail("gateway: invalid IPv4 address " + QuoteValue(spec.gateway) +
                " (expected dotted quad like 10.0.0.1)");
  }
  const Resources& res = alloc.resources;
  if (res.vcpus < 1 || res.vcpus > kMaxVcpus) {
    return fail("allocation.resources.vcpus: " + std::to_string(res.vcpus) +
                " is out of range (1 to " + std::to_string(kMaxVcpus) + ")");
  }
  if (res.memory_mib < kMinMemoryMib || res.memory_mib > kMaxMemoryMib) {
    return fail("allocation.resources.memory_mib: " + std::to_string(res.memory_mib) +
                " is out of range (" + std::to_string(kMinMemoryMib) + " to " +
                std::to_string(kMaxMemoryMib) + " MiB)");
  }
  if (spec.generation < 0) {
    return fail("generation: " + std::to_string(spec.generation) + " is negative");
  }
  if (spec.update_domain < 0) {
    return fail("update_domain: " + std::to_string(spec.update_domain) + " is negative");
  }
  RETURN_IF_ERROR(ValidateText("version", spec.version).WithContext(context));
  for (const auto& [key, value] : spec.metadata) {
    if (key.empty()) return fail("metadata: empty key (every entry needs a name)");
    RETURN_IF_ERROR(ValidateText("metadata key", key).WithContext(context));
    RETURN_IF_ERROR(ValidateText("metadata[" + QuoteValue(key) + "]", value).WithContext(context));
  }
  const std::string& type = options.domain_type;
  if (type != "kvm" && type != "qemu" && type != "test") {
    return fail("options.domain_type: invalid domain type " + QuoteValue(type) +
                " (expected kvm, qemu or test)");
  }
  if (!options.disk_path.empty()) {
    RETURN_IF_ERROR(
        ValidateAbsolutePath("options.disk_path", options.disk_path, 4096).WithContext(context));
  }
  if (!options.events_socket.empty()) {
    RETURN_IF_ERROR(
        ValidateAbsolutePath("options.events_socket", options.events_socket, kMaxUnixSocketPath)
            .WithContext(context));
  }
  if (!options.emulator.empty()) {
    RETURN_IF_ERROR(
        ValidateAbsolutePath("options.emulator", options.emulator, 4096).WithContext(context));
  }
  return Status::Ok();
}

// 64-bit FNV-1a over `data`, starting from `seed`, then the splitmix64 finalizer so that every
// input bit reaches every output bit.
uint64_t Hash64(std::string_view data, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

// A UUID (formatted as version 4, RFC 4122 variant) that depends only on the instance name and
// generation: the same spec always gives the same domain, a re-instantiation a new one.
std::string DomainUuid(const InstanceSpec& spec) {
  std::string key = "regen-domain";
  key += '\0';
  key += spec.name;
  key += '\0';
  key += std::to_string(spec.generation);
  uint64_t hi = Hash64(key, 0xcbf29ce484222325ULL);
  uint64_t lo = Hash64(key, 0x84222325cbf29ce4ULL ^ hi);
  unsigned char bytes[16];
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<unsigned char>(hi >> (56 - 8 * i));
    bytes[8 + i] = static_cast<unsigned char>(lo >> (56 - 8 * i));
  }
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);
  std::string out;
  char buf[3];
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    std::snprintf(buf, sizeof buf, "%02x", bytes[i]);
    out += buf;
  }
  return out;
}

// The <regen:instance> element, every line after the first indented by `indent`.
//
// <instance> (the instance name) is written last on purpose: a reader that cuts the element at
// the first "</regen:instance>" (that child's end tag) still sees every other field.
std::string MetadataElement(const InstanceSpec& spec, const std::string& indent) {
  std::string out;
  out += "<regen:instance xmlns:regen=\"";
  out += kRegenMetadataUri;
  out += "\">\n";
  auto child = [&](const std::string& tag, const std::string& value) {
    out += indent + "  <regen:" + tag + ">" + XmlEscape(value) + "</regen:" + tag + ">\n";
  };
  child("service", spec.service);
  child("update-domain", std::to_string(spec.update_domain));
  child("version", spec.version);
  child("generation", std::to_string(spec.generation));
  for (const auto& [key, value] : spec.metadata) {
    out += indent + "  <regen:meta key=\"" + XmlEscape(key) + "\">" + XmlEscape(value) +
           "</regen:meta>\n";
  }
  child("instance", spec.name);
  out += indent + "</regen:instance>";
  return out;
}

std::string BuiltInLayout(const InstanceSpec& spec, const DomainXmlOptions& options,
                          const std::string& uuid) {
  const Allocation& alloc = spec.allocation;
  std::string x;
  x += "<domain type='" + XmlEscape(options.domain_type) + "'>\n";
  x += "  <name>" + XmlEscape(spec.name) + "</name>\n";
  x += "  <uuid>" + uuid + "</uuid>\n";
  x += "  <metadata>\n";
  x += "    " + MetadataElement(spec, "    ") + "\n";
  x += "  </metadata>\n";
  x += "  <memory unit='KiB'>" + std::to_string(alloc.resources.memory_mib * 1024) + "</memory>\n";
  x += "  <vcpu>" + std::to_string(alloc.resources.vcpus) + "</vcpu>\n";
  x += "  <os>\n";
  x += "    <type arch='x86_64' machine='pc'>hvm</type>\n";
  x += "  </os>\n";
  x += "  <on_crash>destroy</on_crash>\n";
  x += "  <devices>\n";
  if (!options.emulator.empty()) {
    x += "    <emulator>" + XmlEscape(options.emulator) + "</emulator>\n";
  }
  if (!options.disk_path.empty()) {
    x += "    <disk type='file' device='disk'>\n";
    x += "      <driver name='qemu' type='qcow2'/>\n";
    x += "      <source file='" + XmlEscape(options.disk_path) + "'/>\n";
    x += "      <target dev='vda' bus='virtio'/>\n";
    x += "    </disk>\n";
  }
  if (!options.bridge.empty()) {
    x += "    <interface type='bridge'>\n";
    x += "      <mac address='" + XmlEscape(alloc.mac) + "'/>\n";
    x += "      <source bridge='" + XmlEscape(options.bridge) + "'/>\n";
    x += "      <virtualport type='openvswitch'>\n";
    x += "        <parameters interfaceid='" + uuid + "'/>\n";
    x += "      </virtualport>\n";
    x += "      <model type='virtio'/>\n";
    x += "    </interface>\n";
  }
  x += EventsChannel(options, "    ");
  // No <serial>, <console> or <graphics>: no pty and no display. No balloon either.
  x += "    <memballoon model='none'/>\n";
  x += "  </devices>\n";
  x += "</domain>\n";
  return x;
}

Result<std::string> FillTemplate(const InstanceSpec& spec, const DomainXmlOptions& options,
                                 const std::string& uuid) {
  const std::string context = "instance " + spec.name + ": domain_template " + spec.domain_template;
  const std::string& text = options.template_text;
  if (text.find("{{name}}") == std::string::npos ||
      text.find("{{metadata}}") == std::string::npos) {
    return InvalidArgument(context +
                           ": must contain {{name}} and {{metadata}} (Regen finds its domains "
                           "by name and recognizes them by the metadata)");
  }
  const std::pair<std::string_view, std::string> values[] = {
      {"name", XmlEscape(spec.name)},
      {"uuid", uuid},
      {"vcpus", std::to_string(spec.allocation.resources.vcpus)},
      {"memory_kib", std::to_string(spec.allocation.resources.memory_mib * 1024)},
      {"mac", XmlEscape(spec.allocation.mac)},
      {"bridge", XmlEscape(options.bridge)},
      {"disk", XmlEscape(options.disk_path)},
      {"metadata", MetadataElement(spec, "")},
      {"events_channel", EventsChannel(options, "    ")},
      {"ip", XmlEscape(spec.allocation.ip)},
      {"generation", std::to_string(spec.generation)},
      {"service", XmlEscape(spec.service)},
      {"prefix_len", spec.prefix_len > 0 ? std::to_string(spec.prefix_len) : ""},
      {"gateway", XmlEscape(spec.gateway)},
      {"seed", XmlEscape(options.seed_path)},
  };
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t open = text.find("{{", pos);
    if (open == std::string::npos) {
      out.append(text, pos, std::string::npos);
      break;
    }
    size_t close = text.find("}}", open + 2);
    if (close == std::string::npos) {
      return InvalidArgument(context + ": unterminated placeholder at offset " +
                             std::to_string(open) + ": " +
                             QuoteValue(std::string_view(text).substr(open, 20)));
    }
    std::string_view key = std::string_view(text).substr(open + 2, close - open - 2);
    const std::string* value = nullptr;
    for (const auto& [k, v] : values) {
      if (k == key) value = &v;
    }
    if (value == nullptr) {
      return InvalidArgument(context + ": unknown placeholder " +
                             QuoteValue("{{" + std::string(key) + "}}") +
                             " (known: {{name}} {{uuid}} {{vcpus}} {{memory_kib}} {{mac}} "
                             "{{bridge}} {{disk}} {{metadata}} {{events_channel}} {{ip}} "
                             "{{generation}} {{service}} {{prefix_len}} {{gateway}} {{seed}})");
    }
    out.append(text, pos, open - pos);
    out += *value;
    pos = close + 2;
  }
  // Every domain gets the events channel: a template without {{events_channel}} gets it as the
  // last device.
  if (!options.events_socket.empty() && text.find("{{events_channel}}") == std::string::npos) {
    size_t end = out.rfind("</devices>");
    if (end != std::string::npos) {
      size_t line = out.rfind('\n', end);
      line = line == std::string::npos ? end : line + 1;
      out.insert(line, EventsChannel(options, "    "));
    }
  }
  return out;
}

}  // namespace

std::string XmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '\t':
        out += "&#9;";
        break;
      case '\n':
        out += "&#10;";
        break;
      case '\r':
        out += "&#13;";
        break;
      default:
        // Other control characters cannot appear in XML 1.0 at all, not even as references.
        if (c < 0x20) {
          out += "\xef\xbf\xbd";  // U+FFFD REPLACEMENT CHARACTER
        } else {
          out += ch;
        }
    }
  }
  return out;
}

std::string BuildMetadataElement(const InstanceSpec& spec) { return MetadataElement(spec, ""); }

Result<std::string> BuildDomainXml(const InstanceSpec& spec, const DomainXmlOptions& options) {
  RETURN_IF_ERROR(ValidateSpec(spec, options));
  std::string uuid = DomainUuid(spec);
  if (!spec.domain_template.empty()) return FillTemplate(spec, options, uuid);
  return BuiltInLayout(spec, options, uuid);
}

}  // namespace regen
