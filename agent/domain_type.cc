#include "agent/domain_type.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/log.h"

namespace regen {
namespace {

std::string OneLine(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  size_t newline = text.find('\n');
  if (newline != std::string::npos) text = text.substr(0, newline) + " ...";
  return text.size() > 300 ? text.substr(0, 300) + "..." : text;
}

// A qemu option value: commas are doubled.
std::string QemuValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

// "" when /dev/kvm can be opened for reading and writing; otherwise why not.
std::string DevKvmProblem(const std::string& dev_kvm) {
  struct stat st {};
  if (stat(dev_kvm.c_str(), &st) != 0) {
    return dev_kvm + " does not exist (no KVM module, or the machine has no virtualization)";
  }
  if (access(dev_kvm.c_str(), R_OK | W_OK) != 0) {
    return dev_kvm + " is not readable and writable by uid " + std::to_string(geteuid()) +
           " (mode " + std::to_string((st.st_mode >> 6) & 7) +
           std::to_string((st.st_mode >> 3) & 7) + std::to_string(st.st_mode & 7) + ", owner uid " +
           std::to_string(st.st_uid) + "): " + std::strerror(errno);
  }
  return "";
}

// Boots the test guest under KVM: "" when it printed the marker, otherwise what happened.
std::string RunKvmProbe(const std::string& emulator, CommandRunner& runner,
                        const KvmProbeOptions& options, std::chrono::milliseconds& took) {
  const std::string image = options.work_dir + "/kvm-probe.img";
  {
    std::ofstream out(image, std::ios::binary | std::ios::trunc);
    out << KvmProbeBootSector();
    if (!out.flush()) return "cannot write the test guest " + image + ": " + std::strerror(errno);
  }
  const std::vector<std::string> argv = {emulator,
                                         "-accel",
                                         "kvm",
                                         "-machine",
                                         "pc",
                                         "-nodefaults",
                                         "-no-user-config",
                                         "-display",
                                         "none",
                                         "-m",
                                         "16",
                                         "-no-reboot",
                                         "-serial",
                                         "stdio",
                                         "-device",
                                         "isa-debug-exit,iobase=0xf4,iosize=1",
                                         "-drive",
                                         "if=floppy,format=raw,file=" + QemuValue(image)};
  const auto start = std::chrono::steady_clock::now();
  auto run = runner.Run(argv, options.timeout);
  took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
  ::unlink(image.c_str());
  if (!run.ok()) {
    if (run.status().code() == Code::kDeadlineExceeded) {
      return "a test guest under KVM printed nothing in " +
             std::to_string(options.timeout.count()) +
             " ms (a /dev/kvm that cannot run guests, e.g. nested virtualization without "
             "support)";
    }
    return "cannot run the test guest: " + run.status().message();
  }
  if (run->stdout_text.find(kKvmProbeMarker) != std::string::npos) return "";
  return "a test guest under KVM ended (exit code " + std::to_string(run->exit_code) +
         ") without its marker: " + OneLine(run->stderr_text);
}

// The cache: one JSON object {boot_id, dev_kvm, emulator, type, reason}. Anything unreadable or
// not matching is no cache (the probe runs); a failed write is only logged.
std::optional<DomainTypeChoice> ReadProbeCache(const KvmProbeOptions& options,
                                               const std::string& emulator) {
  if (options.cache_file.empty() || options.boot_id.empty()) return std::nullopt;
  std::ifstream in(options.cache_file);
  if (!in) return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  auto str = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const std::string type = str("type");
  if (str("boot_id") != options.boot_id || str("dev_kvm") != options.dev_kvm ||
      str("emulator") != emulator || (type != "kvm" && type != "qemu")) {
    return std::nullopt;
  }
  return DomainTypeChoice{
      type, str("reason") + " (probed earlier this boot, cached in " + options.cache_file + ")"};
}

void WriteProbeCache(const KvmProbeOptions& options, const std::string& emulator,
                     const DomainTypeChoice& choice) {
  if (options.cache_file.empty() || options.boot_id.empty()) return;
  nlohmann::json j = {{"boot_id", options.boot_id},
                      {"dev_kvm", options.dev_kvm},
                      {"emulator", emulator},
                      {"type", choice.type},
                      {"reason", choice.reason}};
  const std::string tmp = options.cache_file + ".tmp";
  bool ok = false;
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump() << "\n";
    ok = out.good();
  }
  if (!ok || ::rename(tmp.c_str(), options.cache_file.c_str()) != 0) {
    ::unlink(tmp.c_str());
    spdlog::warn("cannot keep the KVM probe's verdict in {}: {} (the next start probes again)",
                 options.cache_file, std::strerror(errno));
  }
}

}  // namespace

std::string KvmProbeBootSector() {
  // xor ax,ax; mov ds,ax; cld; mov si,msg; mov dx,0x3f8
  // loop: lodsb; test al,al; jz done; out dx,al; jmp loop
  // done: mov dx,0xf4; xor al,al; out dx,al (isa-debug-exit); hlt; jmp $
  // msg (at 0x7c1c): the marker, NUL-terminated.
  const unsigned char code[] = {0x31, 0xc0, 0x8e, 0xd8, 0xfc, 0xbe, 0x1c, 0x7c, 0xba, 0xf8,
                                0x03, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xba,
                                0xf4, 0x00, 0x30, 0xc0, 0xee, 0xf4, 0xeb, 0xfe};
  std::string sector(reinterpret_cast<const char*>(code), sizeof(code));
  sector += kKvmProbeMarker;
  sector += "\r\n";
  sector.resize(510, '\0');
  sector += "\x55\xaa";
  return sector;
}

std::string EmulatorOf(const std::string& xml) {
  size_t open = xml.find("<path>");
  if (open == std::string::npos) return "";
  open += 6;
  size_t close = xml.find("</path>", open);
  if (close == std::string::npos) return "";
  return xml.substr(open, close - open);
}

DomainTypeChoice ResolveDomainType(const std::string& configured, Hypervisor& hypervisor,
                                   CommandRunner& runner, const KvmProbeOptions& options) {
  if (configured != "auto") return {configured, "set in agent.yaml (domain_type)"};
  auto driver = hypervisor.DriverName();
  if (!driver.ok()) return {"qemu", "auto: cannot ask libvirt: " + driver.status().message()};
  if (*driver == "TEST" || *driver == "Test") return {"test", "auto: libvirt's test driver"};
  if (std::string problem = DevKvmProblem(options.dev_kvm); !problem.empty()) {
    return {"qemu", "auto: TCG, " + problem};
  }
  auto caps = hypervisor.DomainCapabilities("kvm");
  if (!caps.ok()) {
    return {"qemu", "auto: TCG, libvirt cannot run type kvm: " + caps.status().message()};
  }
  const std::string emulator = EmulatorOf(*caps);
  if (emulator.empty()) {
    return {"qemu", "auto: TCG, libvirt's domain capabilities for kvm name no emulator"};
  }
  if (auto cached = ReadProbeCache(options, emulator)) return *cached;
  std::chrono::milliseconds took{0};
  DomainTypeChoice choice;
  if (std::string problem = RunKvmProbe(emulator, runner, options, took); !problem.empty()) {
    choice = {"qemu", "auto: TCG, " + emulator + ": " + problem};
  } else {
    choice = {"kvm", "auto: libvirt offers kvm and a test guest ran under KVM (" + emulator + ", " +
                         std::to_string(took.count()) + " ms)"};
  }
  WriteProbeCache(options, emulator, choice);
  return choice;
}

}  // namespace regen
